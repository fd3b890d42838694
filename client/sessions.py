"""Open sessions while the stream goes on: when each one closes, and the stream's clock.

A session closes when its format says it ended (an end rule), when it has been idle for
``idle_s`` on the stream's clock, or when the table holds more than ``max_open`` sessions (the
least recently active is closed early, and counted). A session that reaches ``max_keys`` keys
is checked in parts: that part closes and the session goes on from where it was.

The stream's clock is event time, the largest timestamp read so far (so a line that is a little
out of order does not turn it back). While a file is followed, a quiet stream's clock also
advances with the wall clock, so a session ends ``idle_s`` after its last line even when no
later line comes to say that time has passed.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum


class CloseCause(str, Enum):
    """Why a session (or a part of one) was closed and checked."""

    END_RULE = "end_rule"  # its format's end template
    IDLE = "idle"  # nothing for --session-idle seconds
    MAX_LENGTH = "max_length"  # --max-session-keys keys: checked in parts
    EVICTED = "evicted"  # --max-open-sessions reached: the least recently active closes early
    STREAM_END = "stream_end"  # the input ended
    WINDOW_END = "window_end"  # a fixed window of lines or time: the next one began


@dataclass(slots=True)
class OpenSession:
    """What the table knows of one open session (its keys live in the detectors)."""

    id: str
    part: int  # parts checked before this one (0 unless it outgrew --max-session-keys)
    first_offset: int  # where the current part's first line starts: re-reading from here...
    first_line: int  # ...rebuilds it, with this line number
    clock_at_start: float  # the stream's clock just before that line
    last_seen: float  # the stream's clock at its latest line
    last_line: int
    keys: int = 0  # keys in the current part


class StreamClock:
    """Seconds on the stream's clock: event time, and with ``follow`` the wall clock while
    the stream is quiet."""

    def __init__(self, follow: bool = False, start: float = float("-inf")) -> None:
        self.follow = follow
        self._event = start
        self._wall = time.monotonic()

    def observe(self, event_time: float | None) -> None:
        """A line arrived (with its timestamp, where the format has one)."""
        if event_time is not None and event_time > self._event:
            self._event = event_time
        self._wall = time.monotonic()

    def now(self) -> float:
        if not self.follow:
            return self._event
        return self._event + (time.monotonic() - self._wall)

    @property
    def event_time(self) -> float:
        return self._event


class SessionTable:
    """Open sessions, least recently active first."""

    def __init__(self, idle_s: float, max_open: int, max_keys: int) -> None:
        if idle_s <= 0 or max_open < 1 or max_keys < 1:
            raise ValueError("idle time, open sessions and session keys must be above zero")
        self.idle_s, self.max_open, self.max_keys = idle_s, max_open, max_keys
        self._open: OrderedDict[str, OpenSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, session: str) -> bool:
        return session in self._open

    def get(self, session: str) -> OpenSession | None:
        return self._open.get(session)

    def touch(
        self, session: str, offset: int, line: int, clock_before: float, now: float, part: int = 0
    ) -> tuple[OpenSession, bool]:
        """Count one key of ``session`` at this line; (its entry, whether it is new)."""
        entry = self._open.get(session)
        new = entry is None
        if entry is None:
            entry = OpenSession(session, part, offset, line, clock_before, now, line)
            self._open[session] = entry
        else:
            self._open.move_to_end(session)
            entry.last_seen, entry.last_line = now, line
            if entry.keys == 0:  # the first line of a new part
                entry.first_offset, entry.first_line = offset, line
                entry.clock_at_start = clock_before
        entry.keys += 1
        return entry, new

    def full(self, entry: OpenSession) -> bool:
        return entry.keys >= self.max_keys

    def next_part(self, entry: OpenSession, offset: int, line: int, clock: float) -> None:
        """The session goes on in a new part. Until its next line comes, reading again from
        ``offset`` (line ``line``, the stream's next) is all a restart needs of it."""
        entry.part += 1
        entry.first_offset, entry.first_line, entry.clock_at_start = offset, line, clock
        entry.keys = 0

    def pop(self, session: str) -> OpenSession:
        return self._open.pop(session)

    def any_idle(self, now: float) -> bool:
        """Whether ``idle(now)`` would close any (a look at the least recently active)."""
        if not self._open:
            return False
        return now - next(iter(self._open.values())).last_seen > self.idle_s

    def idle(self, now: float) -> Iterator[OpenSession]:
        """Sessions idle for longer than ``idle_s``, removed as they are handed out. Entries
        are in order of last activity, and ``last_seen`` is the (never decreasing) clock, so
        the first one that is not idle ends the search."""
        while self._open:
            entry = next(iter(self._open.values()))
            if now - entry.last_seen <= self.idle_s:
                return
            yield self._open.pop(entry.id)

    def over_capacity(self) -> Iterator[OpenSession]:
        """The least recently active sessions beyond ``max_open``, removed."""
        while len(self._open) > self.max_open:
            yield self._open.popitem(last=False)[1]

    def sessions(self) -> list[OpenSession]:
        return list(self._open.values())

    def oldest_part(self) -> OpenSession | None:
        """The open session whose current part starts earliest in the stream."""
        return min(self._open.values(), key=lambda s: s.first_offset, default=None)
