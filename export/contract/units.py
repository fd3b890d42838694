"""What ASGNet reads of a unit (a session or a window of lines): its text and its key counts.

Torch-free, so the client builds requests with the very functions training used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NORMAL = "normal"  # class 0 of every ASGNet model


def unit_text(templates: Sequence[str]) -> str:
    """A unit's log text: its templates in order, one per line."""
    return "\n".join(templates)


def count_vectors(units: Sequence[Sequence[int]], size: int) -> np.ndarray:
    """[n, size] float32 log1p(key counts) of each unit; keys outside [0, size) are dropped."""
    out = np.zeros((len(units), size), dtype=np.float32)
    for row, unit in enumerate(units):
        keys = np.asarray([k for k in unit if 0 <= k < size], dtype=np.int64)
        out[row] = np.bincount(keys, minlength=size)[:size]
    return np.log1p(out)
