"""difforge-zoo: the shapes world and its analytic scorer."""

from . import scorer, shapes
from .models import load
from .scorer import detect, score
from .shapes import generate

__all__ = ["detect", "generate", "load", "score", "scorer", "shapes"]
