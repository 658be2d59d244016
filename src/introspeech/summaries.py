"""Summaries as strict JSON: a score that does not apply (NaN) is written as null."""

from __future__ import annotations

import numpy as np


def json_ready(obj):
    """``obj`` with NaN as None and numpy floats as floats, through dicts and lists."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if obj != obj else float(obj)
    return obj
