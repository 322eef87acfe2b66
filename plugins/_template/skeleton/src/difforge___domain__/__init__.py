"""difforge-__domain__: the __domain__ domain for difforge."""

__version__ = "0.1.0"
