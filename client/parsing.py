"""Streaming log parser: raw line -> header fields, log key (template) and parameter values.

Templates are mined the way Drain does it (He et al., ICWS'17): tokens holding a digit are
variables, lines are grouped by token count and first token, and a line joins the most similar
template of its group if at least ``similarity`` of its tokens agree, turning the disagreeing
positions into wildcards. While learning, keys are created; once frozen (detection), a line
either matches a learnt template exactly (wildcards match anything) or is UNKNOWN.
A frozen parser is rebuilt from the vocabulary's templates alone, so no parser state file
needs to be unpickled.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

WILDCARD = "<*>"
MAX_LINE_BYTES = 64 * 1024
_HAS_DIGIT = re.compile(r"\d")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class ParsedLine:
    line_no: int
    template_id: int  # index into the parser's templates; -1 when unknown (frozen parser)
    template: str
    params: tuple[str, ...]  # raw tokens at the template's wildcard positions
    header: dict[str, str]
    content: str


@dataclass(frozen=True)
class LogFormat:
    """How to read one system's lines (instances live in ``client/formats.py``).

    ``pattern`` splits a raw line into named header fields and ``content``; ``clock`` turns the
    header into seconds (for time gaps and idle sessions), raising ValueError on a header it
    cannot read; ``sessions`` names the sessions a parsed line belongs to.
    """

    name: str
    pattern: re.Pattern[str]
    clock: Callable[[dict[str, str]], float]
    sessions: Callable[[ParsedLine], list[str]]
    clock_resolution: float  # seconds per clock tick: a measured gap is off by up to one tick
    # How long a session may stay quiet and still be open (event seconds): long enough for the
    # system's slowest normal step (HDFS deletes a block hours after writing it).
    session_idle_s: float = 600.0
    # A template (matched against the learnt template text) that ends a session, if any.
    end_rule: re.Pattern[str] | None = None


BAD_TIME = "bad_time"  # a malformed reason: a header whose date or time does not exist


@dataclass
class ParseStats:
    """Counts of what the parser saw; malformed lines are counted by reason, never raised."""

    lines: int = 0
    parsed: int = 0
    unknown: int = 0
    malformed: Counter = field(default_factory=Counter)
    examples: list[tuple[int, str]] = field(default_factory=list)  # first few (line, reason)

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def reject(self, line_no: int, reason: str) -> None:
        self.malformed[reason] += 1
        if len(self.examples) < 5:
            self.examples.append((line_no, reason))

    def retract(self, line_no: int, reason: str, unknown: bool) -> None:
        """A line counted as parsed turned out malformed (a header that matched, a date that
        does not exist): count it under ``reason`` instead."""
        self.parsed -= 1
        self.unknown -= unknown
        self.reject(line_no, reason)

    def summary(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.malformed.items())) or "none"
        return (
            f"{self.lines} lines: {self.parsed} parsed, {self.unknown} with an unknown key, "
            f"{self.malformed_total} malformed ({reasons})"
        )


def tokenize(content: str) -> list[str]:
    """Whitespace tokens, with every token that holds a digit replaced by the wildcard."""
    return [WILDCARD if _HAS_DIGIT.search(t) else t for t in content.split()]


class LogParser:
    """Parse lines one at a time. ``learn=True`` mines templates; ``False`` only matches them."""

    def __init__(
        self,
        log_format: LogFormat,
        templates: tuple[str, ...] = (),
        learn: bool = True,
        similarity: float = 0.5,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.format = log_format
        self.learn = learn
        self.similarity = similarity
        self.max_line_bytes = max_line_bytes
        self.stats = ParseStats()
        self._templates: list[list[str]] = []
        self._groups: dict[tuple[int, str], list[int]] = {}
        for template in templates:
            self._add(template.split())

    @property
    def templates(self) -> tuple[str, ...]:
        return tuple(" ".join(t) for t in self._templates)

    def _add(self, tokens: list[str]) -> int:
        self._templates.append(list(tokens))
        template_id = len(self._templates) - 1
        self._groups.setdefault(self._group(tokens), []).append(template_id)
        return template_id

    @staticmethod
    def _group(tokens: list[str]) -> tuple[int, str]:
        return len(tokens), tokens[0] if tokens else ""

    def refuse(self, line_no: int, reason: str) -> None:
        """A line the source could not hand on (e.g. too long to read whole), counted here."""
        self.stats.lines += 1
        self.stats.reject(line_no, reason)

    def parse(self, raw: bytes | str, line_no: int) -> ParsedLine | None:
        """One line; None (and a counted reason) when it is malformed."""
        self.stats.lines += 1
        text = self._decode(raw, line_no)
        if text is None:
            return None
        match = self.format.pattern.match(text)
        if match is None:
            self.stats.reject(line_no, "no_header")
            return None
        content = match.group("content").strip()
        header = {k: v for k, v in match.groupdict().items() if k != "content"}
        raw_tokens = content.split()
        tokens = tokenize(content)
        template_id = self._match(tokens)
        if template_id is None and self.learn:
            template_id = self._add(tokens)
        self.stats.parsed += 1
        if template_id is None:
            self.stats.unknown += 1
            return ParsedLine(line_no, -1, " ".join(tokens), (), header, content)
        template = self._templates[template_id]
        params = tuple(r for r, t in zip(raw_tokens, template, strict=True) if t == WILDCARD)
        return ParsedLine(line_no, template_id, " ".join(template), params, header, content)

    def _decode(self, raw: bytes | str, line_no: int) -> str | None:
        if isinstance(raw, bytes):
            if len(raw) > self.max_line_bytes:
                self.stats.reject(line_no, "too_long")
                return None
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.stats.reject(line_no, "invalid_utf8")
                return None
        else:
            text = raw
            if len(text.encode("utf-8", "surrogatepass")) > self.max_line_bytes:
                self.stats.reject(line_no, "too_long")
                return None
        text = text.rstrip("\r\n")
        if not text.strip():
            self.stats.reject(line_no, "empty")
            return None
        if _CONTROL.search(text):
            self.stats.reject(line_no, "binary")
            return None
        return text

    def _candidates(self, tokens: list[str]) -> list[int]:
        # A template whose first token became a wildcard lives in the (length, "<*>") group.
        n, first = self._group(tokens)
        found = list(self._groups.get((n, first), ()))
        if first != WILDCARD:
            found += self._groups.get((n, WILDCARD), ())
        return found

    def _match(self, tokens: list[str]) -> int | None:
        """Best template for the line: exact match when frozen, Drain similarity when learning.

        A template matches exactly when every constant token agrees (wildcards match anything).
        When learning, a line that matches no template exactly joins the template sharing the
        most constant tokens with it, if that share reaches ``similarity``; as in Drain, a
        wildcard counts for nothing there, so two templates never merge on wildcards alone.
        """
        n = max(len(tokens), 1)
        best, best_score, best_wild = None, -1.0, 0
        for template_id in self._candidates(tokens):
            template = self._templates[template_id]
            wild = template.count(WILDCARD)
            same = sum(1 for a, b in zip(template, tokens, strict=True) if a == b and a != WILDCARD)
            if same + wild == len(tokens) and all(
                a in (b, WILDCARD) for a, b in zip(template, tokens, strict=True)
            ):
                return template_id
            score = same / n
            if score > best_score or (score == best_score and wild < best_wild):
                best, best_score, best_wild = template_id, score, wild
        if best is not None and self.learn and best_score >= self.similarity:
            self._merge(best, tokens)
            return best
        return None

    def _merge(self, template_id: int, tokens: list[str]) -> None:
        template = self._templates[template_id]
        old_group = self._group(template)
        for i, token in enumerate(tokens):
            if template[i] != token:
                template[i] = WILDCARD
        if self._group(template) != old_group:
            self._groups[old_group].remove(template_id)
            self._groups.setdefault(self._group(template), []).append(template_id)
