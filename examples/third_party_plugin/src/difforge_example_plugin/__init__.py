"""An example third-party difforge plugin."""
