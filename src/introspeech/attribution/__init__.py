"""Local introspection of any PyTorch model made of standard layers (REFERENCES §2)."""

from .api import attribute
from .composites import COMPOSITES, Composite, preset
from .definitions import LOCAL_METHODS, METHODS, Method, Option, method
from .outputs import Scores
from .rules import AlphaBeta, DeconvReLU, Epsilon, Flat, Gamma, GuidedReLU, Pass, WSquare, ZBox, ZPlus

__all__ = [
    "attribute", "Scores", "METHODS", "LOCAL_METHODS", "Method", "Option", "method", "Composite", "preset", "COMPOSITES",
    "Epsilon", "Gamma", "AlphaBeta", "ZPlus", "ZBox", "WSquare", "Flat", "Pass", "GuidedReLU", "DeconvReLU",
]
