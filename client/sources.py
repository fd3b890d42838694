"""Where lines come from: a file read once, standard input, or a file followed as it grows.

Every line arrives as a ``Record`` with its byte offset and line number, so a checkpoint can
name a place to resume from. A line longer than the limit is never held whole: it is read in
bounded pieces, dropped, and handed on as a ``too_long`` record (counted by the parser like any
other malformed line). Following works as ``tail -F``: it waits for new lines, reads a rotated
file to its end before moving to the new one, and starts again from the top of a truncated one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import BinaryIO

MAX_LINE_BYTES = 64 * 1024
READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class FileIdentity:
    """Which file an offset belongs to: a rotated file is another file under the same name."""

    device: int
    inode: int

    @classmethod
    def of(cls, stat: os.stat_result) -> FileIdentity:
        return cls(stat.st_dev, stat.st_ino)


@dataclass(slots=True)
class Record:
    """One raw line (without its newline) and where it was."""

    raw: bytes
    line_no: int  # 1-based, counted across rotations
    offset: int  # byte offset of the line's start in its file
    end: int  # byte offset just after the line (where the next one starts)
    too_long: bool = False  # the line was over the limit; ``raw`` is empty
    file: FileIdentity | None = None  # which file ``offset`` is in (None: a stream)


@dataclass(frozen=True)
class Position:
    """Where a source is: the next byte and line to read, in which file."""

    offset: int = 0
    line_no: int = 0  # lines read before ``offset``
    identity: FileIdentity | None = None


class LineReader:
    """Lines of one binary stream, each at most ``max_bytes`` long, from ``position`` on.

    A last piece without a newline is held back until the rest arrives, so a line being
    written is never read in halves; ``flush_partial`` hands it on at the very end.
    """

    def __init__(self, stream: BinaryIO, position: Position, max_bytes: int) -> None:
        self.stream, self.max_bytes = stream, max_bytes
        self.offset, self.line_no = position.offset, position.line_no
        self.identity = position.identity
        self._partial = b""  # the start of a line whose newline has not been written yet
        self._dropped: int | None = None  # bytes of an over-long line skipped so far

    def lines(self) -> Iterator[Record]:
        """Every complete line available now; returns at the end of what is written."""
        readline, limit = self.stream.readline, self.max_bytes + 1
        while piece := readline(limit):
            complete = piece.endswith(b"\n")
            if self._dropped is not None:
                self._dropped += len(piece)
                if complete:
                    yield self._record(b"", self._dropped, too_long=True)
                    self._dropped = None
                continue
            line = self._partial + piece
            if not complete:
                if len(line) > self.max_bytes:
                    self._partial, self._dropped = b"", len(line)
                else:
                    self._partial = line
                continue
            self._partial = b""
            if len(line) > limit:
                yield self._record(b"", len(line), too_long=True)
            else:
                yield self._record(line[:-1], len(line))

    def flush_partial(self) -> Iterator[Record]:
        """The last line of a stream that ends without a newline."""
        if self._dropped is not None:
            yield self._record(b"", self._dropped, too_long=True)
            self._dropped = None
        elif self._partial:
            line, self._partial = self._partial, b""
            yield self._record(line, len(line))

    def _record(self, raw: bytes, size: int, too_long: bool = False) -> Record:
        """The line that starts at ``self.offset`` and takes ``size`` bytes, newline included."""
        start = self.offset
        self.offset += size
        self.line_no += 1
        return Record(raw, self.line_no, start, self.offset, too_long, self.identity)


class LogFile:
    """A file read once, from ``position`` to its end (a last line without newline too)."""

    def __init__(
        self, path: Path, position: Position = Position(), max_bytes: int = MAX_LINE_BYTES
    ) -> None:
        self.path, self.max_bytes = Path(path), max_bytes
        self.position = position

    def records(self, stop: threading.Event) -> Iterator[Record]:
        with open(self.path, "rb") as stream:
            identity = FileIdentity.of(os.fstat(stream.fileno()))
            start = self.position
            if start.identity not in (None, identity):
                start = Position(0, start.line_no, identity)  # another file under the name
            start = Position(start.offset, start.line_no, identity)
            stream.seek(start.offset)
            reader = LineReader(stream, start, self.max_bytes)
            for record in chain(reader.lines(), reader.flush_partial()):
                self.position = Position(record.end, record.line_no, identity)
                yield record
                if stop.is_set():
                    return

    def lag_bytes(self) -> int:
        try:
            return max(self.path.stat().st_size - self.position.offset, 0)
        except FileNotFoundError:
            return 0


class StandardInput:
    """Lines of a stream that cannot seek (standard input), until it closes."""

    def __init__(self, stream: BinaryIO, max_bytes: int = MAX_LINE_BYTES) -> None:
        self.stream, self.max_bytes = stream, max_bytes
        self.position = Position()

    def records(self, stop: threading.Event) -> Iterator[Record]:
        reader = LineReader(self.stream, Position(), self.max_bytes)
        for record in chain(reader.lines(), reader.flush_partial()):
            self.position = Position(record.end, record.line_no)
            yield record
            if stop.is_set():
                return

    def lag_bytes(self) -> int:
        return 0  # unknown: a pipe does not say how much is waiting


def read_file(
    path: Path, position: Position = Position(), max_bytes: int = MAX_LINE_BYTES
) -> Iterator[Record]:
    """The lines of a file from ``position`` to its end."""
    return LogFile(path, position, max_bytes).records(threading.Event())


def read_stream(stream: BinaryIO, max_bytes: int = MAX_LINE_BYTES) -> Iterator[Record]:
    """The lines of a stream that cannot seek, until it closes."""
    return StandardInput(stream, max_bytes).records(threading.Event())


class FollowedFile:
    """A file followed as it grows, as ``tail -F`` does.

    ``records(stop)`` yields each new line as it is completed, and ``None`` whenever it has
    waited ``poll_s`` with nothing new (the caller's chance to act on time passing). It
    returns when ``stop`` is set, or, once ``finished`` is set, at the end of what was written.
    Rotation (the name now points at another file) reads the old file to its end first, then
    the new one from its start; truncation (the file shrank below the offset) starts again at
    the top. A missing file is waited for.
    """

    def __init__(
        self,
        path: Path,
        position: Position = Position(),
        poll_s: float = 0.05,
        max_bytes: int = MAX_LINE_BYTES,
        finished: threading.Event | None = None,
    ) -> None:
        self.path, self.poll_s, self.max_bytes = Path(path), poll_s, max_bytes
        self.finished = finished or threading.Event()
        self._start = position
        self._stream: BinaryIO | None = None
        self._reader: LineReader | None = None
        self.identity: FileIdentity | None = None
        self.rotations = 0
        self.truncations = 0

    @property
    def position(self) -> Position:
        """Where the next line starts (the last complete line read ends there)."""
        if self._reader is None:
            return self._start
        return Position(self._reader.offset, self._reader.line_no, self.identity)

    def lag_bytes(self) -> int:
        """How far behind the end of the file this reader is."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return 0
        position = self.position
        if position.identity not in (None, FileIdentity.of(stat)):
            return stat.st_size  # rotated: all of the new file is unread
        return max(stat.st_size - position.offset, 0)

    def records(self, stop: threading.Event) -> Iterator[Record | None]:
        try:
            while not stop.is_set():
                if self._reader is None and not self._open():
                    if self.finished.is_set():
                        return
                    yield None
                    stop.wait(self.poll_s)
                    continue
                got = False
                for record in self._reader.lines():
                    got = True
                    yield record
                    if stop.is_set():
                        return
                if got or self._truncated():
                    continue
                if self._rotated():
                    # The old file's last line may lack its newline: it is still a line.
                    yield from self._reader.flush_partial()
                    self.rotations += 1
                    line_no = self._reader.line_no
                    self.close()
                    self._start = Position(0, line_no, None)
                    continue
                if self.finished.is_set():
                    yield from self._reader.flush_partial()
                    return
                yield None
                stop.wait(self.poll_s)
        finally:
            self.close()

    def _open(self) -> bool:
        """Open the file at the start position, or at its top if it is not the file the
        position was taken in or is shorter than it. False while there is no file."""
        try:
            stream = open(self.path, "rb")  # noqa: SIM115 - held open while followed
        except FileNotFoundError:
            return False
        stat = os.fstat(stream.fileno())
        identity = FileIdentity.of(stat)
        start = self._start
        same = start.identity in (None, identity) and stat.st_size >= start.offset
        position = Position(start.offset if same else 0, start.line_no, identity)
        stream.seek(position.offset)
        self._stream, self.identity = stream, identity
        self._reader = LineReader(stream, position, self.max_bytes)
        return True

    def _truncated(self) -> bool:
        """The open file shrank below what was read (copytruncate): read it from the top."""
        assert self._stream is not None and self._reader is not None
        if os.fstat(self._stream.fileno()).st_size >= self._reader.offset:
            return False
        self.truncations += 1
        self._stream.seek(0)
        position = Position(0, self._reader.line_no, self.identity)
        self._reader = LineReader(self._stream, position, self.max_bytes)
        return True

    def _rotated(self) -> bool:
        """The name now points at another file (the open one was renamed or removed and a
        new one created). While no new file exists, the old one is still followed."""
        try:
            return FileIdentity.of(self.path.stat()) != self.identity
        except FileNotFoundError:
            return False

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream = None
        if self._reader is not None:
            self._start = self.position
        self._reader = None
