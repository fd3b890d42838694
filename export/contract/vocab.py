"""The log-key vocabulary: which template each key id stands for.

Ids 0-2 are reserved so that every model version agrees on them:
START pads the window before a session's first key (so sessions shorter than h+1 keys are
checked like any other), UNKNOWN stands for a line whose template was never seen in training,
END closes a session (so a session that stops early is itself a checkable event).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

START = 0
UNKNOWN = 1
END = 2
FIRST_KEY = 3
RESERVED_NAMES = ("<start>", "<unknown>", "<end>")


@dataclass(frozen=True)
class KeyVocabulary:
    """Names and templates of the learnt keys; key id ``FIRST_KEY + i`` is entry ``i``."""

    names: tuple[str, ...]
    templates: tuple[str, ...]
    # The text of the log format file the templates were learnt with (client/formats.py):
    # lines read with another format would map to other keys. Empty: not recorded.
    log_format: str = ""

    def __post_init__(self) -> None:
        if len(self.names) != len(self.templates):
            raise ValueError("a vocabulary needs exactly one template per key name")
        if len(set(self.names)) != len(self.names):
            raise ValueError("key names in a vocabulary must be unique")

    @property
    def size(self) -> int:
        """Number of key ids the model scores, reserved ids included."""
        return FIRST_KEY + len(self.names)

    def name(self, key: int) -> str:
        return RESERVED_NAMES[key] if key < FIRST_KEY else self.names[key - FIRST_KEY]

    def template(self, key: int) -> str:
        return RESERVED_NAMES[key] if key < FIRST_KEY else self.templates[key - FIRST_KEY]

    def key_of_name(self, name: str) -> int:
        """Key id of a learnt key name; UNKNOWN if training never saw it."""
        return self._index().get(name, UNKNOWN)

    def _index(self) -> dict[str, int]:
        index = self.__dict__.get("_name_index")
        if index is None:
            index = {n: FIRST_KEY + i for i, n in enumerate(self.names)}
            object.__setattr__(self, "_name_index", index)
        return index

    def extends(self, other: KeyVocabulary) -> bool:
        """Every key of ``other`` has the same id here (templates learnt since are appended),
        read with the same format: requests built with ``other`` mean the same here."""
        n = len(other.names)
        return (
            self.log_format == other.log_format
            and self.names[:n] == other.names
            and self.templates[:n] == other.templates
        )

    def grown(self, templates: tuple[str, ...]) -> KeyVocabulary:
        """This vocabulary with new templates appended (old keys keep their ids); each gets
        the next free name ``T<n>``."""
        taken, names, n = set(self.names), [], len(self.names)
        for _ in templates:
            n += 1
            while f"T{n}" in taken:
                n += 1
            names.append(f"T{n}")
        return KeyVocabulary(
            self.names + tuple(names), self.templates + tuple(templates), self.log_format
        )

    @property
    def fingerprint(self) -> str:
        """Content hash: two vocabularies with the same fingerprint map keys identically."""
        parts = [self.names, self.templates, *([self.log_format] if self.log_format else [])]
        blob = json.dumps(parts, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"names": list(self.names), "templates": list(self.templates)}
        if self.log_format:
            data["log_format"] = self.log_format
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyVocabulary:
        return cls(
            names=tuple(data["names"]),
            templates=tuple(data["templates"]),
            log_format=data.get("log_format", ""),
        )
