"""DeepLog windows: the one definition used by training and by detection.

Each key of a session is predicted from the h keys before it. The window before the first key
is padded with START, and the session is closed by END, so every session, however short, yields
one window per key plus one for its end.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

import numpy as np

from export.contract.vocab import END, START


def session_windows(
    keys: Sequence[int], h: int, end_marker: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """All (window, next key) pairs of one complete session: int64 arrays [n, h] and [n]."""
    padded = [START] * h + list(keys) + ([END] if end_marker else [])
    n = len(padded) - h
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(padded, dtype=np.int64), h)
    return np.ascontiguousarray(windows[:n]), np.asarray(padded[h:], dtype=np.int64)


def windows_of_sessions(
    sessions: Iterable[Sequence[int]], h: int, end_marker: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Windows of many sessions stacked: int64 arrays [N, h] and [N]."""
    parts = [session_windows(s, h, end_marker) for s in sessions]
    if not parts:
        return np.zeros((0, h), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class WindowStream:
    """The same windows, built one key at a time as a session's lines arrive."""

    def __init__(self, h: int, history: Sequence[int] = (), position: int = 0) -> None:
        """``history`` and ``position`` continue a session from where ``history`` (its last
        keys, as ``last_keys`` gave them) left it, e.g. after a restart."""
        self._history: deque[int] = deque([START] * h, maxlen=h)
        self._history.extend(history)
        self.position = position

    @property
    def last_keys(self) -> list[int]:
        """The h keys (START where the session is younger) the next window is made of."""
        return list(self._history)

    def push(self, key: int) -> tuple[tuple[int, ...], int]:
        """Window that predicts ``key`` and its 0-based position in the session."""
        window = tuple(self._history)
        position = self.position
        self._history.append(key)
        self.position += 1
        return window, position

    def close(self) -> tuple[tuple[int, ...], int]:
        """Window that predicts the session's END."""
        return tuple(self._history), self.position
