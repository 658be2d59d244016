"""The seed's claims measured across models and corpora, each value with its interval (`introspeech findings`)."""

from .claims import CLAIMS, verdicts
from .run import STAGES, FindingsSettings, run_findings

__all__ = ["CLAIMS", "STAGES", "FindingsSettings", "run_findings", "verdicts"]
