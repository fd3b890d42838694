"""Where a stream's time goes: parse, sessions, Triton, decisions.

Stages nest (a detector's flush runs inside the push of the line that filled its batch, and
the Triton request inside the flush); each second is counted once, in the innermost stage open
at that moment, so the stages add up to the time spent inside any of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

PARSE, SESSIONS, TRITON, DECISIONS, PARAMS = "parse", "sessions", "triton", "decisions", "params"


@dataclass
class StageClock:
    seconds: dict[str, float] = field(default_factory=dict)
    _open: list[str] = field(default_factory=list)
    _since: float = 0.0

    def stage(self, name: str) -> _Stage:
        """``with clock.stage(name):`` counts the block's time (less nested stages) to name."""
        return _Stage(self, name)

    def _switch(self, leaving: str | None) -> None:
        """Count the time since the last switch to ``leaving`` (the stage that was running)."""
        now = time.perf_counter()
        if leaving is not None:
            self.seconds[leaving] = self.seconds.get(leaving, 0.0) + now - self._since
        self._since = now

    def split(self) -> dict[str, float]:
        return dict(self.seconds)


class _Stage:
    """A plain class, not @contextmanager: it runs twice per log line, so it must be cheap."""

    __slots__ = ("clock", "name")

    def __init__(self, clock: StageClock, name: str) -> None:
        self.clock, self.name = clock, name

    def __enter__(self) -> None:
        opened = self.clock._open
        self.clock._switch(opened[-1] if opened else None)
        opened.append(self.name)

    def __exit__(self, *exc: object) -> None:
        self.clock._switch(self.clock._open.pop())
