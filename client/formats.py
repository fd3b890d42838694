"""Log formats, described in files: header layout, clock, sessions, template rules.

A format is a small TOML file (the built-in ones are in ``client/format_files/``, one per loghub
system); ``--format NAME|FILE`` reads either. Every field is checked when the file is read, and a
bad one is a ``FormatError`` naming the file, the field and what is wrong. The file's text
travels with each model version trained on it (``LogFormat.source``), and detection refuses a
format whose text differs from the version's (``LogFormat.digest``).

    name = "mylog"
    [header]                       # layout (logpai's) or regex (named groups, one "Content")
    layout = "<Date> <Time> <Level> <Component>: <Content>"
    [time]                         # kind: strptime (default), epoch, none (arrival order)
    fields = ["Date", "Time"]      # joined with one space
    layouts = ["%Y-%m-%d %H:%M:%S,%f"]
    resolution = 0.001             # seconds per tick of the clock
    [sessions]                     # ids: regexes (group 1, else the match), each one a session
    ids = ['blk_-?\\d+']
    otherwise = "{Component}"      # lines without an id: a session named from header fields
    window_lines = 0               # or fixed windows of lines (or window_seconds) for logs
    idle_seconds = 600             #    with no ids at all
    end = '^Deleting block'        # optional: a template that ends its session
    [templates]
    masks = ['(\\d+\\.){3}\\d+']   # a token a regex matches in is a variable
    line_masks = ['"[^"]*"']       # regex -> <*> over the whole content first (may span tokens)
    delimiters = ",="              # split tokens there too, besides whitespace
    branch_limit = 6               # distinct words at a position before it is a variable
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from client.parsing import ParsedLine, TemplateRules

CONTENT = "Content"
BUILTIN_FOLDER = "format_files"


class FormatError(ValueError):
    """A format file that cannot be used; the message is one line naming the field."""


class TimeKind(str, Enum):
    STRPTIME = "strptime"  # header fields read with strptime layouts (UTC unless one has %z)
    EPOCH = "epoch"  # a header field holding seconds since 1970
    NONE = "none"  # no timestamp: arrival order (the wall clock when read), no time gaps


LINE_WINDOW, TIME_WINDOW = "lines:", "time:"  # session ids of fixed windows, then the index


@dataclass(frozen=True)
class SessionRule:
    """Which sessions a parsed line belongs to (each id once, in order of appearance)."""

    ids: tuple[re.Pattern[str], ...] = ()
    otherwise: str = ""  # "{Field}" or "{Field:regex}" pieces filled from the header
    window_lines: int = 0
    window_seconds: float = 0.0

    def __call__(self, line: ParsedLine, when: float | None = None) -> list[str]:
        found: list[str] = []
        for pattern in self.ids:
            for match in pattern.finditer(line.content):
                found.append(match.group(1) if pattern.groups else match.group(0))
        if found:
            return list(dict.fromkeys(found))
        if self.otherwise:
            return [_fill(self.otherwise, line.header)]
        if self.window_lines:
            return [f"{LINE_WINDOW}{(line.line_no - 1) // self.window_lines}"]
        if self.window_seconds and when is not None:
            return [f"{TIME_WINDOW}{int(when // self.window_seconds)}"]
        return []

    def window_index(self, session: str) -> int | None:
        """Which window a session id names (windows follow each other in this order), or
        None for a session of ids or header fields."""
        if (self.window_lines and session.startswith(LINE_WINDOW)) or (
            self.window_seconds and session.startswith(TIME_WINDOW)
        ):
            return int(session.partition(":")[2])
        return None


_PLACEHOLDER = re.compile(r"\{(\w+)(?::([^}]*))?\}")


def _fill(text: str, header: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        value = header.get(match.group(1), "")
        if match.group(2):
            part = re.search(match.group(2), value)
            value = part.group(0) if part else value
        return value

    return _PLACEHOLDER.sub(one, text)


@dataclass(frozen=True)
class Clock:
    """Seconds since the epoch from a line's header; raises ValueError on a time that does not
    exist. Consecutive lines mostly share a timestamp, so the last one read is remembered."""

    kind: TimeKind
    fields: tuple[str, ...] = ()
    layouts: tuple[str, ...] = ()
    _last: list = field(default_factory=lambda: [None, 0.0], compare=False, repr=False)

    def __call__(self, header: dict[str, str]) -> float | None:
        if self.kind is TimeKind.NONE:
            return time.time()
        text = " ".join(header[f] for f in self.fields)
        if text == self._last[0]:
            return self._last[1]
        when = float(text) if self.kind is TimeKind.EPOCH else self._strptime(text)
        self._last[0], self._last[1] = text, when
        return when

    def _strptime(self, text: str) -> float:
        for layout in self.layouts:
            try:
                when = datetime.strptime(text, layout)
            except ValueError:
                continue
            # A time with its zone (%z) is read in it; one without is UTC.
            return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
        raise ValueError(f"time {text!r} matches none of {list(self.layouts)}")

    @property
    def timed(self) -> bool:
        """Whether gaps between lines mean anything (the parameter model measures them)."""
        return self.kind is not TimeKind.NONE


@dataclass(frozen=True)
class LogFormat:
    """How to read one system's lines: header fields and content, the clock, the sessions, and
    how templates are mined from the content."""

    name: str
    pattern: re.Pattern[str]  # named groups: the header fields and CONTENT
    clock: Clock
    sessions: SessionRule
    clock_resolution: float  # seconds per clock tick: a measured gap is off by up to one tick
    # How long a session may stay quiet and still be open (event seconds): long enough for the
    # system's slowest normal step (HDFS deletes a block hours after writing it).
    session_idle_s: float = 600.0
    # A template (matched against the learnt template text) that ends a session, if any.
    end_rule: re.Pattern[str] | None = None
    templates: TemplateRules = field(default_factory=TemplateRules)
    source: str = ""  # the format file's text

    @property
    def fields(self) -> tuple[str, ...]:
        """Header field names in the order the layout has them."""
        order = sorted(self.pattern.groupindex.items(), key=lambda kv: kv[1])
        return tuple(name for name, _ in order if name != CONTENT)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]

    def split(self, text: str) -> tuple[dict[str, str], str] | None:
        """Header fields and content of one line; None when the header does not match."""
        match = self.pattern.match(text)
        if match is None:
            return None
        header = match.groupdict()
        content = header.pop(CONTENT) or ""
        return header, content.strip()


# ---- reading format files ------------------------------------------------------------------

_TABLES: dict[str, set[str]] = {
    "": {"name", "about", "header", "time", "sessions", "templates"},
    "header": {"layout", "regex"},
    "time": {"kind", "fields", "layouts", "resolution"},
    "sessions": {"ids", "otherwise", "window_lines", "window_seconds", "idle_seconds", "end"},
    "templates": {
        "masks",
        "line_masks",
        "delimiters",
        "branch_limit",
        "numbers_branch",
        "similarity",
    },
}


@cache
def builtin(name: str) -> LogFormat:
    """A built-in format, read once."""
    return load_format(name)


def builtin_names() -> list[str]:
    folder = resources.files("client") / BUILTIN_FOLDER
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_format(name_or_path: str | Path) -> LogFormat:
    """A built-in format by name (``hdfs``), or a format file by path."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix == ".toml" or path.exists():
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as e:
            raise FormatError(f"format file {path}: cannot read it ({e.strerror})") from None
        return parse_format(source, str(path), default_name=path.stem)
    resource = resources.files("client") / BUILTIN_FOLDER / f"{text}.toml"
    if not resource.is_file():
        raise FormatError(
            f"unknown format {text!r}: name a built-in one ({', '.join(builtin_names())}) "
            "or a .toml format file"
        )
    return parse_format(resource.read_text(encoding="utf-8"), f"built-in format {text}", text)


def parse_format(source: str, where: str, default_name: str = "") -> LogFormat:
    """A format from a format file's text; ``where`` names it in errors."""
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as e:
        raise FormatError(f"{where}: not valid TOML ({e})") from None
    reader = _Reader(where, data)
    return reader.read(source, default_name)


class _Reader:
    def __init__(self, where: str, data: dict[str, Any]) -> None:
        self.where, self.data = where, data

    def fail(self, table: str, key: str, problem: str) -> FormatError:
        name = f"[{table}] {key}" if table else key
        return FormatError(f"{self.where}: {name}: {problem}")

    def table(self, name: str) -> dict[str, Any]:
        table = self.data if not name else self.data.get(name, {})
        if not isinstance(table, dict):
            raise self.fail("", name, "must be a table")
        unknown = sorted(set(table) - _TABLES[name])
        if unknown:
            known = ", ".join(sorted(_TABLES[name]))
            raise self.fail(name, unknown[0], f"unknown field (known: {known})")
        return table

    def get(self, table: str, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        values = self.table(table)
        if key not in values:
            return default
        value = values[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise self.fail(table, key, f"must be {names}, not {type(value).__name__}")
        return value

    def regex(self, table: str, key: str, text: str) -> re.Pattern[str]:
        try:
            return re.compile(text)
        except re.error as e:
            raise self.fail(table, key, f"bad regular expression {text!r} ({e})") from None

    def strings(self, table: str, key: str) -> list[str]:
        values = self.get(table, key, list, [])
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise self.fail(table, f"{key}[{i}]", "must be a string")
        return values

    def read(self, source: str, default_name: str) -> LogFormat:
        self.table("")
        name = self.get("", "name", str, default_name)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name or ""):
            raise self.fail("", "name", "must be letters, digits, '.', '_' or '-'")
        pattern = self.header()
        fields = set(pattern.groupindex) - {CONTENT}
        clock, resolution = self.clock(fields)
        sessions = self.sessions(fields)
        idle = self.get("sessions", "idle_seconds", (int, float), 600.0)
        if idle <= 0:
            raise self.fail("sessions", "idle_seconds", "must be positive")
        end = self.get("sessions", "end", str, "")
        return LogFormat(
            name,
            pattern,
            clock,
            sessions,
            resolution,
            float(idle),
            self.regex("sessions", "end", end) if end else None,
            self.templates(),
            source,
        )

    def header(self) -> re.Pattern[str]:
        layout = self.get("header", "layout", str, None)
        regex = self.get("header", "regex", str, None)
        if (layout is None) == (regex is None):
            raise self.fail("header", "layout", "give exactly one of layout and regex")
        if layout is not None:
            regex = layout_regex(layout)
            if regex is None:
                raise self.fail("header", "layout", f"needs <{CONTENT}> and <Field> names")
        pattern = self.regex("header", "regex" if layout is None else "layout", regex)
        if CONTENT not in pattern.groupindex:
            raise self.fail("header", "regex", f"needs a group named {CONTENT}")
        return pattern

    def clock(self, fields: set[str]) -> tuple[Clock, float]:
        table = self.table("time")
        kind_text = self.get("time", "kind", str, "strptime" if table else "none")
        try:
            kind = TimeKind(kind_text)
        except ValueError:
            known = ", ".join(k.value for k in TimeKind)
            raise self.fail("time", "kind", f"{kind_text!r} is not one of {known}") from None
        resolution = float(self.get("time", "resolution", (int, float), 1.0))
        if resolution <= 0:
            raise self.fail("time", "resolution", "must be positive")
        if kind is TimeKind.NONE:
            return Clock(kind), resolution
        names = self.strings("time", "fields")
        if not names:
            raise self.fail("time", "fields", "name the header fields that hold the time")
        missing = [n for n in names if n not in fields]
        if missing:
            raise self.fail("time", "fields", f"{missing[0]!r} is not a header field")
        layouts = self.strings("time", "layouts")
        if kind is TimeKind.STRPTIME and not layouts:
            raise self.fail("time", "layouts", "give at least one strptime layout")
        return Clock(kind, tuple(names), tuple(layouts)), resolution

    def sessions(self, fields: set[str]) -> SessionRule:
        ids = tuple(
            self.regex("sessions", f"ids[{i}]", text)
            for i, text in enumerate(self.strings("sessions", "ids"))
        )
        otherwise = self.get("sessions", "otherwise", str, "")
        for match in _PLACEHOLDER.finditer(otherwise):
            if match.group(1) not in fields:
                raise self.fail(
                    "sessions", "otherwise", f"{match.group(1)!r} is not a header field"
                )
            if match.group(2):
                self.regex("sessions", "otherwise", match.group(2))
        lines = self.get("sessions", "window_lines", int, 0)
        seconds = self.get("sessions", "window_seconds", (int, float), 0.0)
        if lines < 0 or seconds < 0:
            raise self.fail("sessions", "window_lines", "windows must not be negative")
        if not (ids or otherwise or lines or seconds):
            raise self.fail(
                "sessions", "ids", "give ids, otherwise, window_lines or window_seconds"
            )
        return SessionRule(ids, otherwise, lines, float(seconds))

    def templates(self) -> TemplateRules:
        masks = self.strings("templates", "masks")
        line_masks = self.strings("templates", "line_masks")
        for name, regexes in (("masks", masks), ("line_masks", line_masks)):
            for i, mask in enumerate(regexes):
                self.regex("templates", f"{name}[{i}]", mask)
        defaults = TemplateRules()
        try:
            return TemplateRules(
                masks=tuple(masks),
                line_masks=tuple(line_masks),
                delimiters=self.get("templates", "delimiters", str, defaults.delimiters),
                branch_limit=self.get("templates", "branch_limit", int, defaults.branch_limit),
                numbers_branch=self.get(
                    "templates", "numbers_branch", bool, defaults.numbers_branch
                ),
                similarity=float(
                    self.get("templates", "similarity", (int, float), defaults.similarity)
                ),
            )
        except ValueError as e:
            raise self.fail("templates", str(e).split()[0], str(e)) from None


def layout_regex(layout: str) -> str | None:
    """logpai's header layout (``<Date> <Time> <Level>: <Content>``) as a regex: each <Field>
    a lazy group, spaces any run of spaces, the rest literal (escaped already where the layout
    escapes it, as in ``\\[<Pid>\\]``)."""
    pieces = re.split(r"<(\w+)>", layout)
    names = pieces[1::2]
    if CONTENT not in names or len(set(names)) != len(names):
        return None
    regex = ""
    for i, piece in enumerate(pieces):
        if i % 2:
            regex += f"(?P<{piece}>.*)" if piece == CONTENT else f"(?P<{piece}>.*?)"
        else:
            regex += re.sub(" +", r"\\s+", piece)
    return "^" + regex + "$"


def trained_format(vocabulary_format: str, what: str, requested: str | None) -> LogFormat:
    """The format to read a log with for a model version: the one it was trained with (its
    vocabulary carries that file's text); another one asked for is refused. A version from
    before formats travelled with it takes the one asked for (HDFS by default)."""
    if not vocabulary_format:
        return load_format(requested or "hdfs")
    trained = parse_format(vocabulary_format, f"the format {what} was trained with")
    if requested is None:
        return trained
    asked = load_format(requested)
    if asked.digest != trained.digest:
        raise FormatError(
            f"--format {requested} is not the format {what} was trained with "
            f"({trained.name}): leave --format out to use that one, or train on this format"
        )
    return asked
