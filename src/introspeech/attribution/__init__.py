"""Local introspection of any PyTorch model made of standard layers (REFERENCES §2)."""

from .api import LOCAL_METHODS, METHODS, attribute
from .composites import COMPOSITES, Composite, preset
from .rules import AlphaBeta, DeconvReLU, Epsilon, Flat, Gamma, GuidedReLU, Pass, WSquare, ZBox, ZPlus

__all__ = [
    "attribute", "METHODS", "LOCAL_METHODS", "Composite", "preset", "COMPOSITES",
    "Epsilon", "Gamma", "AlphaBeta", "ZPlus", "ZBox", "WSquare", "Flat", "Pass", "GuidedReLU", "DeconvReLU",
]
