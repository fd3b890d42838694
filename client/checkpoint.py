"""How far a detection run has safely got, so a killed run resumes without losing or repeating.

The checkpoint names a byte offset from which reading again loses nothing: the start of the
oldest open session (or session part), or the next unread line when none is open. Reading from
there rebuilds every open session from its first line; lines of sessions that were already
finished are skipped (``finished``: session -> its last line); sessions checked in parts
continue from where their current part began (``carried``). Alerts found again are recognised
by id: those of the open sessions are listed here, those written after the checkpoint are read
back from the alerts file (from ``alerts_bytes`` on). The file is replaced in one rename.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from client.sources import FileIdentity, Position

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that does not belong to this run (another file or format) or is damaged."""


@dataclass(frozen=True)
class Checkpoint:
    source: str  # the file read, as given
    log_format: str
    position: Position  # where to read from
    clock: float  # the stream's clock just before the line at ``position``
    finished: dict[str, int] = field(default_factory=dict)
    carried: dict[str, dict[str, Any]] = field(default_factory=dict)
    emitted: list[str] = field(default_factory=list)
    alerts_bytes: int | None = None
    verdicts_bytes: int | None = None

    def save(self, path: Path) -> None:
        data = asdict(self)
        data["version"] = FORMAT_VERSION
        data["clock"] = self.clock if math.isfinite(self.clock) else None
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        with open(staging, "w", encoding="utf-8") as out:
            json.dump(data, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, path)

    @classmethod
    def load(cls, path: Path, source: str, log_format: str) -> Checkpoint:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.pop("version") != FORMAT_VERSION:
                raise CheckpointError(f"{path} was written by another version of the client")
            position = data.pop("position")
            identity = position.pop("identity")
            checkpoint = cls(
                **{**data, "clock": -math.inf if data["clock"] is None else data["clock"]},
                position=Position(
                    **position, identity=FileIdentity(**identity) if identity else None
                ),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"{path} is not a readable checkpoint ({exc})") from None
        if (checkpoint.source, checkpoint.log_format) != (source, log_format):
            raise CheckpointError(
                f"{path} is the checkpoint of {checkpoint.source} ({checkpoint.log_format}), "
                f"not of {source} ({log_format}): name another --checkpoint file"
            )
        return checkpoint
