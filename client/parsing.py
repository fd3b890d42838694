"""Streaming log parser: raw line -> header fields, log key (template) and parameter values.

How a line becomes tokens is its format's ``TemplateRules``: line masks replace what spans
several tokens (a quoted tag with spaces), the content is split at whitespace and at the
format's delimiters, and a token is a variable when it holds a digit or a token mask matches in
it (addresses, block ids, host names, paths). Words are classified once and remembered, so most
of a line costs a dict lookup.

Templates are learnt one line at a time, in one pass:
- a line's candidates are the templates with its token count and first token (Drain's tree,
  He et al., ICWS'17);
- it joins the candidate whose constant positions agree with it most, if at least
  ``similarity`` of them do (positions that are variables on both sides say nothing);
- a position where the lines of one group disagree is a *branch*: each word there is a template
  of its own until the position has taken ``branch_limit`` distinct words; then it is a variable
  and its templates merge into one. Brain (Yu et al., INFOCOM'23) decides the same per column,
  offline; here the count grows as lines arrive.

So a template learnt early may later merge with its siblings: ``final_id`` maps an id handed out
while learning to its template at the end, which is what training and ``parse`` report.
Once frozen (detection), a line either matches a learnt template exactly (wildcards match
anything, constants must be equal; of several, the one with the most constants) or is UNKNOWN.
Matching compares a template's constant positions with the raw tokens in one C call per
candidate, and learning tries the same exact match first: a line that matches a template
changes nothing, so only new shapes of line take the slow path. A frozen parser is rebuilt from the
vocabulary's template texts alone, so no parser state file needs to be unpickled.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from client.formats import LogFormat

WILDCARD = "<*>"
MAX_LINE_BYTES = 64 * 1024
# Numbers inside a token, for the template text only ("blk_-42" -> "blk_<*>"): hex runs that
# hold a digit, signed and dotted numbers.
_NUMBER = re.compile(r"(?:(?<![A-Za-z0-9])[-+])?(?:0[xX])?[0-9a-fA-F]*\d[0-9a-fA-F]*(?:\.\d+)*")
_DIGIT = re.compile(r"\d")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CACHE_LIMIT = 100_000  # words (and slot regexes) remembered before the memo starts over
# Frozen matching remembers the contents it matched, each with its ASCII digits written as 0,
# while that pays. Exact: a template's constant tokens hold no digit, so two contents alike but
# for their digits match the same template. Most lines repeat another this way (70-99% of the
# loghub samples' lines, HDFS's block ids and IPs included), but a log of ever-new hex ids does
# not. Each probe of this many lines decides whether the memo stays on: a miss (encoding the
# content, storing it) costs about a quarter of what a hit saves, so below the hit rate it
# pauses for the pause's number of lines, then probes again; a short first probe that brings
# no hit at all pauses at once. On a log that never repeats, the misses are then paid on about
# 1% of its lines.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LINE_MEMO_LIMIT = 50_000
_LINE_FIRST_PROBE = 128
_LINE_PROBE = 1_000
_LINE_MIN_HIT_RATE = 0.25
_LINE_PAUSE = 100_000


@dataclass(frozen=True)
class TemplateRules:
    """How a format's content is cut into tokens and how templates are grouped (format files'
    ``[templates]`` table; every field has a default that suits most logs)."""

    masks: tuple[str, ...] = ()  # regexes; a token one matches in is a variable
    line_masks: tuple[str, ...] = ()  # regexes applied to the whole content first (may span)
    delimiters: str = ""  # characters that split tokens besides whitespace
    branch_limit: int = 6  # distinct words at a position before it is a variable
    # A number where the other lines of a group have a word: a template of its own (True), or
    # the position is a variable (False).
    numbers_branch: bool = False
    similarity: float = 0.5
    max_templates: int = 20_000  # learning stops adding templates beyond this (counted)

    def __post_init__(self) -> None:
        if self.branch_limit < 2:
            raise ValueError("branch_limit must be at least 2")
        if not 0.0 < self.similarity <= 1.0:
            raise ValueError("similarity must be in (0, 1]")


class Tokenizer:
    """Content -> raw tokens (``split``), the tokens compared (``compared``: <*> for a variable),
    and for a new template the tokens shown and the separators around them (``shown``)."""

    def __init__(self, rules: TemplateRules) -> None:
        self._line_masks = [re.compile(m) for m in rules.line_masks]  # in order, as Drain3 does
        self._masks = [re.compile(m) for m in rules.masks]
        # str.replace per delimiter: several times faster than str.translate on short lines
        self._delimiters = tuple(dict.fromkeys(rules.delimiters))
        self._split = re.compile(f"([\\s{re.escape(rules.delimiters)}]+)")
        self._words: dict[str, str] = {}  # token -> its compared form (capped, then cleared)

    @property
    def remembered(self) -> int:
        return len(self._words)

    @property
    def rewrites(self) -> bool:
        """Whether ``split`` is more than ``str.split`` (line masks or delimiters)."""
        return bool(self._line_masks or self._delimiters)

    def split(self, content: str) -> list[str]:
        if self._line_masks:
            for mask in self._line_masks:
                content = mask.sub(WILDCARD, content)
        for delimiter in self._delimiters:
            content = content.replace(delimiter, " ")
        return content.split()

    def compared(self, tokens: list[str]) -> list[str]:
        words = self._words
        return [words.get(t) or self._classify(t) for t in tokens]

    def classify(self, token: str) -> str:
        """A token's compared form: itself for a word, <*> for a variable (remembered)."""
        return self._words.get(token) or self._classify(token)

    def _classify(self, token: str) -> str:
        variable = (
            WILDCARD in token or _has_digit(token) or any(m.search(token) for m in self._masks)
        )
        compared = WILDCARD if variable else token
        # Variables are remembered too: a first token such as "jk2_init()" repeats; the memo
        # starts over when full, so ever-new numbers only cost a clear now and then.
        if len(self._words) >= _CACHE_LIMIT:
            self._words.clear()
        self._words[token] = compared
        return compared

    def shown(self, content: str) -> tuple[list[str], list[str]]:
        """Tokens as a template shows them (masked parts and numbers as <*>: "blk_<*>") and the
        separators: ``separators[0]`` comes before the first token, ``[i + 1]`` after token i."""
        for mask in self._line_masks:
            content = mask.sub(WILDCARD, content)
        parts = self._split.split(content)
        leading = ""
        if len(parts) > 1 and parts[0] == "":
            leading, parts = parts[1], parts[2:]
        raw, separators = parts[0::2], parts[1::2]
        if raw and raw[-1] == "":
            raw.pop()
        separators += [""] * (len(raw) - len(separators))
        return [self._shown(t) for t in raw], [leading, *separators]

    def _shown(self, token: str) -> str:
        for mask in self._masks:
            token = mask.sub(WILDCARD, token)
        if WILDCARD not in token and not _has_digit(token):
            return token
        return _NUMBER.sub(WILDCARD, token)

    def template_tokens(self, template: str) -> list[str]:
        """A template text's compared tokens (its wildcards as <*>), for a frozen parser."""
        for delimiter in self._delimiters:
            template = template.replace(delimiter, " ")
        return [WILDCARD if (WILDCARD in t or _has_digit(t)) else t for t in template.split()]


def _has_digit(token: str) -> bool:
    return _DIGIT.search(token) is not None


def tokenize(content: str, rules: TemplateRules = TemplateRules()) -> list[str]:
    """The tokens a line is compared by: every token that holds a digit or a mask is <*>."""
    tokenizer = Tokenizer(rules)
    return tokenizer.compared(tokenizer.split(content))


@dataclass(slots=True)
class ParsedLine:
    line_no: int
    template_id: int  # index into the parser's templates; -1 when unknown (frozen parser)
    template: str
    header: dict[str, str]
    content: str
    # The parser's slot regex of a template (compiled when first asked): params only
    _slot_of: Callable[[str], re.Pattern[str]] | None = field(
        default=None, repr=False, compare=False
    )
    _params: tuple[str, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def params(self) -> tuple[str, ...]:
        """The raw text at each of the template's wildcards, in order (computed when asked:
        only the parameter model and ``parse``'s CSV read them)."""
        if self._params is None:
            slots = self._slot_of(self.template) if self._slot_of is not None else None
            match = slots.match(self.content) if slots is not None else None
            self._params = match.groups() if match else ()
        return self._params


BAD_TIME = "bad_time"  # a malformed reason: a header whose date or time does not exist
TEMPLATE_LIMIT = "template_limit"  # a malformed reason: learning reached max_templates


@dataclass
class ParseStats:
    """Counts of what the parser saw; malformed lines are counted by reason, never raised."""

    lines: int = 0
    parsed: int = 0
    unknown: int = 0
    malformed: Counter = field(default_factory=Counter)
    examples: list[tuple[int, str]] = field(default_factory=list)  # first few (line, reason)
    last_reason: str = ""  # why the latest malformed line was

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def reject(self, line_no: int, reason: str) -> None:
        self.malformed[reason] += 1
        self.last_reason = reason
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


@dataclass
class _Group:
    """Lines of one token count and first token that agree enough: per position, the distinct
    words seen (None once it is a variable), and its templates by their branch words."""

    values: list[set[str] | None]
    where: tuple[int, str]  # (token count, first token): its place in both indexes
    templates: dict[tuple[str, ...], int] = field(default_factory=dict)
    # Positions that are variables because they hold numbers: their text shows the first
    # line's shape ("blk_<*>"), where a position that became one by its words shows <*>.
    numeric: set[int] = field(default_factory=set)

    def key(self, tokens: Sequence[str]) -> tuple[str, ...]:
        return tuple(WILDCARD if v is None else t for v, t in zip(self.values, tokens, strict=True))

    def agreement(self, tokens: list[str]) -> float:
        counted = agreed = 0
        for values, token in zip(self.values, tokens, strict=True):
            if values is None:
                continue
            counted += 1
            agreed += token in values
        if counted:
            return agreed / counted
        return 1.0 if all(t == WILDCARD for t in tokens) else 0.0


@dataclass(frozen=True)
class ParserSizes:
    templates: int
    groups: int
    tokens: int  # distinct tokens the tokenizer remembers the compared form of (capped)
    contents: int = 0  # contents (digits as 0) a frozen parser remembers (capped; 0: paused)


# A template's constant positions, checked against a line's raw tokens in one C call:
# (template id, getter of those positions, what they hold, how many). Tuples, not objects:
# matching a line walks a few of these.
_Exact = tuple[int, Callable[[list[str]], Any], Any, int]


def _no_constants(tokens: list[str]) -> tuple:
    return ()


def _exact_entry(template_id: int, tokens: Sequence[str]) -> _Exact:
    positions = [i for i, t in enumerate(tokens) if t != WILDCARD]
    if not positions:  # any line of its length and first token
        return template_id, _no_constants, (), 0
    values = tuple(tokens[i] for i in positions)
    # itemgetter of one position returns the value itself, of several a tuple
    return (
        template_id,
        itemgetter(*positions),
        values if len(values) > 1 else values[0],
        len(values),
    )


@dataclass
class _Template:
    group: int
    shown: list[str]  # the first line's tokens as shown, and its separators (Tokenizer.shown)
    separators: list[str]
    merged_into: int | None = None
    text: str | None = None  # as the group's variables are now (None: to be rebuilt)


class LogParser:
    """Parse lines one at a time. ``learn=True`` mines templates; ``False`` only matches them."""

    def __init__(
        self,
        log_format: LogFormat,
        templates: tuple[str, ...] = (),
        learn: bool = True,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.format = log_format
        self.rules: TemplateRules = log_format.templates
        self.learn = learn
        self.max_line_bytes = max_line_bytes
        self.stats = ParseStats()
        self._tokenizer = Tokenizer(self.rules)  # its memo is this parser's
        self._rewrites = self._tokenizer.rewrites
        # Digits as 0 in the memo's keys, unless line masks or delimiters rewrite the content
        # first: a mask may tell digits apart ("port 80"), so there the content is kept whole.
        self._memo_digits = None if self._rewrites else _DIGITS_AS_ZERO
        self._groups: list[_Group] = []
        self._index: dict[tuple[int, str], list[int]] = {}  # (length, first token) -> groups
        self._templates: list[_Template] = []
        self._texts: list[str] = []  # frozen: the template texts as given
        # first token -> token count -> templates by their constants, the most specific first
        # (first token outermost: a line's raw first token finds its word's templates at once)
        self._exact: dict[str, dict[int, list[_Exact]]] = {}
        self._slots: dict[str, re.Pattern[str]] = {}  # template text -> its slot regex
        self._live = 0
        self._final: dict[int, int] | None = None  # learnt template id -> index in templates
        self._lines: dict[bytes, int] | None = {}  # content, digits as 0 -> id (None: paused)
        self._line_hits = self._line_misses = 0
        self._line_probe_at = _LINE_FIRST_PROBE  # calls before the memo is judged again
        self._resume_at = 0  # the line (``stats.lines``) at which a paused memo probes again
        for template in templates:
            self._freeze(template)

    # ---- what was learnt -------------------------------------------------------------------
    @property
    def templates(self) -> tuple[str, ...]:
        """Template texts, ordered by first appearance; with ``learn`` only the live ones (a
        merged template's lines are its survivor's: see ``final_id``)."""
        if not self.learn:
            return tuple(self._texts)
        return tuple(self._text(i) for i in self._live_ids())

    def sizes(self) -> ParserSizes:
        """What the parser holds: its memory is these, each bounded (templates by
        ``max_templates``, remembered tokens and contents by their memos' limits)."""
        return ParserSizes(
            len(self._live_ids()) if self.learn else len(self._texts),
            len(self._groups),
            self._tokenizer.remembered,
            len(self._lines or ()),
        )

    def final_id(self, template_id: int) -> int:
        """Where a template id handed out while learning ended up: its index in ``templates``."""
        while (into := self._templates[template_id].merged_into) is not None:
            template_id = into
        return self._final_index()[template_id]

    def _live_ids(self) -> list[int]:
        return [i for i, t in enumerate(self._templates) if t.merged_into is None]

    def _final_index(self) -> dict[int, int]:
        if self._final is None:  # rebuilt after templates were added or merged
            self._final = {t: i for i, t in enumerate(self._live_ids())}
        return self._final

    def _text(self, template_id: int) -> str:
        template = self._templates[template_id]
        if template.text is None:
            template.text = self._build_text(template)
        return template.text

    def _build_text(self, template: _Template) -> str:
        group = self._groups[template.group]
        # A position variable from the start (a number) shows the first line's token when
        # that keeps a constant part ("blk_<*>"); a bare word there ("null") would read as a
        # constant the other lines do not have.
        tokens = [
            t if (v is not None or (i in group.numeric and WILDCARD in t)) else WILDCARD
            for i, (v, t) in enumerate(zip(group.values, template.shown, strict=True))
        ]
        return joined(tokens, template.separators)

    # ---- reading a line --------------------------------------------------------------------
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
        split = self.format.split(text)
        if split is None:
            self.stats.reject(line_no, "no_header")
            return None
        header, content = split
        if self.learn:
            template_id = self.learn_content(content)
            if template_id is None:
                self.stats.reject(line_no, TEMPLATE_LIMIT)
                return None
            self.stats.parsed += 1
            text = self._text(template_id)
            return ParsedLine(line_no, template_id, text, header, content, self._slot)
        if self._lines is None and self.stats.lines >= self._resume_at:
            self._resume_line_memo()
        template_id = self.match_content(content)
        self.stats.parsed += 1
        if template_id < 0:
            self.stats.unknown += 1
            shown, separators = self._tokenizer.shown(content)
            return ParsedLine(line_no, -1, joined(shown, separators), header, content)
        text = self._texts[template_id]
        return ParsedLine(line_no, template_id, text, header, content, self._slot)

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
        if not text or text.isspace():
            self.stats.reject(line_no, "empty")
            return None
        # isprintable() first: about 20 times faster than the regex, and true for most lines
        # (a tab or an exotic space makes it false; then the regex decides).
        if not text.isprintable() and _CONTROL.search(text):
            self.stats.reject(line_no, "binary")
            return None
        return text

    # ---- learning --------------------------------------------------------------------------
    def learn_content(self, content: str) -> int | None:
        """A line's content learnt: its template id (see ``final_id``), or None once
        ``max_templates`` are held (``parse`` does this after the header)."""
        tokenizer = self._tokenizer
        tokens = tokenizer.split(content)
        first = tokenizer.classify(tokens[0]) if tokens else ""
        found = self._find(tokens, first)
        if found is not None:
            return found  # a line that matches a template exactly changes nothing
        compared = tokenizer.compared(tokens)
        group_id = self._join(compared)
        if group_id is None:
            return None
        group = self._groups[group_id]
        key = group.key(compared)
        template_id = group.templates.get(key)
        if template_id is None:
            if self._live >= self.rules.max_templates:
                return None
            template_id = len(self._templates)
            shown, separators = tokenizer.shown(content)
            self._templates.append(_Template(group_id, shown, separators))
            group.templates[key] = template_id
            self._live += 1
            self._final = None
            self._index_exact(group, [key])
        return template_id

    def _find(self, tokens: list[str], first: str) -> int | None:
        by_length = self._exact.get(first)
        entries = by_length.get(len(tokens)) if by_length else None
        if entries:
            for template_id, get, values, _ in entries:
                if get(tokens) == values:
                    return template_id
        return None

    def _index_exact(self, group: _Group, keys: Iterable[tuple[str, ...]]) -> None:
        """Make learnt templates findable by their constants (their keys, <*> where the group
        has a variable); one whose branch holds a number (``numbers_branch``) or that has no
        constants takes the slow path instead."""
        branches = sum(v is not None for v in group.values)
        for key in keys:
            constants = sum(t != WILDCARD for t in key)
            if constants and constants == branches:
                self._add_exact(_exact_entry(group.templates[key], key), group.where)

    def _add_exact(self, exact: _Exact, where: tuple[int, str]) -> None:
        length, first = where
        entries = self._exact.setdefault(first, {}).setdefault(length, [])
        entries.append(exact)
        entries.sort(key=lambda e: -e[3])  # the most specific first

    def _join(self, tokens: list[str]) -> int | None:
        """The group the line belongs to, updated with it; a new group if none agrees enough."""
        index_key = (len(tokens), tokens[0] if tokens else "")
        candidates = self._index.setdefault(index_key, [])
        best, best_score = None, -1.0
        for group_id in candidates:
            score = self._groups[group_id].agreement(tokens)
            if score > best_score:
                best, best_score = group_id, score
        if best is None or best_score < self.rules.similarity:
            if self._live >= self.rules.max_templates:
                return None
            # A number is a variable from the start, unless numbers branch like words.
            branch = self.rules.numbers_branch
            values = [{t} if (t != WILDCARD or branch) else None for t in tokens]
            numeric = {i for i, v in enumerate(values) if v is None}
            self._groups.append(_Group(values, index_key, numeric=numeric))
            candidates.append(len(self._groups) - 1)
            return len(self._groups) - 1
        self._absorb(best, tokens)
        return best

    def _absorb(self, group_id: int, tokens: list[str]) -> None:
        group = self._groups[group_id]
        became_variable = False
        for i, token in enumerate(tokens):
            values = group.values[i]
            if values is None:
                continue
            if token == WILDCARD and not self.rules.numbers_branch:
                group.values[i] = None  # a number in a second line: the position is a variable
            elif token in values:
                continue
            else:
                values.add(token)
                if len(values) < self.rules.branch_limit:
                    continue
                group.values[i] = None
            became_variable = True
        if became_variable:
            old = set(group.templates.values())
            for template_id in old:
                self._templates[template_id].text = None
            self._merge_templates(group)
            length, first = group.where
            entries = self._exact.get(first, {}).get(length, [])
            entries[:] = [e for e in entries if e[0] not in old]
            self._index_exact(group, list(group.templates))

    def _merge_templates(self, group: _Group) -> None:
        """Templates whose branch words differ only where a variable now is become one (the
        first keeps its id; the others point to it)."""
        merged: dict[tuple[str, ...], int] = {}
        for key, template_id in sorted(group.templates.items(), key=lambda kv: kv[1]):
            survivor = merged.setdefault(group.key(key), template_id)
            if survivor != template_id:
                self._templates[template_id].merged_into = survivor
                self._live -= 1
                self._final = None
        group.templates = merged

    # ---- matching a frozen vocabulary ------------------------------------------------------
    def _freeze(self, template: str) -> None:
        tokens = self._tokenizer.template_tokens(template)
        template_id = len(self._texts)
        self._texts.append(template)
        where = (len(tokens), tokens[0] if tokens else "")
        self._add_exact(_exact_entry(template_id, tokens), where)

    def extend(self, templates: Sequence[str]) -> int:
        """A frozen parser grown to a vocabulary that extends its own (a version that learnt
        new templates): the new ones are matched from now on, the old keep their ids. Returns
        how many were added."""
        if self.learn:
            raise ValueError("only a frozen parser (learn=False) takes a grown vocabulary")
        known = len(self._texts)
        if tuple(templates[:known]) != tuple(self._texts):
            raise ValueError("these templates do not extend the parser's: other ids, other keys")
        for template in templates[known:]:
            self._freeze(template)
        if self._lines:
            self._lines.clear()  # contents remembered as unmatched may match now
        return len(templates) - known

    def match_content(self, content: str) -> int:
        """A line's content against the frozen templates: the id of the most specific one
        that matches, or -1 (``parse`` does this after the header)."""
        # The detection hot path: a memo lookup (while it pays), else one split, two dict
        # lookups and a few C-level comparisons, in this one frame for a line whose first
        # token starts templates (``_find``'s loop, inlined).
        lines = self._lines
        if lines is not None:
            try:
                key = content.encode().translate(self._memo_digits)
            except UnicodeEncodeError:  # a lone surrogate (a str read with surrogateescape)
                key = content.encode("utf-8", "surrogatepass").translate(self._memo_digits)
            found = lines.get(key)
            if found is not None:
                self._line_hits += 1
                return found
            self._line_misses += 1
            if self._line_hits + self._line_misses >= self._line_probe_at:
                self._judge_line_memo()
        tokens = self._tokenizer.split(content) if self._rewrites else content.split()
        length = len(tokens)
        found = -1
        by_length = self._exact.get(tokens[0] if tokens else "")
        if by_length:
            entries = by_length.get(length)
            if entries:
                for template_id, get, values, _ in entries:
                    if get(tokens) == values:
                        found = template_id
                        break
        if found < 0:
            # A first token that starts no template needs no classifying: template words hold
            # no digit, so its only other candidates are the templates that start with <*>.
            variable_first = self._find(tokens, WILDCARD)
            found = -1 if variable_first is None else variable_first
        if lines is not None:
            if len(lines) >= _LINE_MEMO_LIMIT:
                lines.clear()
            lines[key] = found
        return found

    def _judge_line_memo(self) -> None:
        hits, misses = self._line_hits, self._line_misses
        first = self._line_probe_at == _LINE_FIRST_PROBE
        self._line_hits = self._line_misses = 0
        self._line_probe_at = _LINE_PROBE
        # The first probe is short: it only pauses a memo that had no hit at all (a log whose
        # start repeats little may still repeat later, as Hadoop's and HPC's do).
        if (not hits) if first else (hits < _LINE_MIN_HIT_RATE * (hits + misses)):
            self._lines = None  # until parse() has read the pause's lines and probes again
            self._resume_at = self.stats.lines + _LINE_PAUSE

    def _resume_line_memo(self) -> None:
        self._lines = {}
        self._line_hits = self._line_misses = 0
        self._line_probe_at = _LINE_FIRST_PROBE

    def _slot(self, template: str) -> re.Pattern[str]:
        pattern = self._slots.get(template)
        if pattern is None:
            if len(self._slots) >= _CACHE_LIMIT:
                self._slots.clear()
            pattern = self._slots[template] = slot_pattern(template)
        return pattern


def joined(tokens: list[str], separators: list[str]) -> str:
    """Tokens put back between their separators (``Tokenizer.tokens``)."""
    return separators[0] + "".join(t + s for t, s in zip(tokens, separators[1:], strict=True))


def slot_pattern(template: str) -> re.Pattern[str]:
    """A regex that matches a line's content to its template, one group per wildcard (as
    logparser extracts a ParameterList); runs of whitespace match any whitespace."""
    pieces = []
    for i, literal in enumerate(template.split(WILDCARD)):
        if i:
            pieces.append("(.*?)")
        pieces.append(r"\s+".join(re.escape(w) for w in re.split(r"\s+", literal)))
    return re.compile("^" + "".join(pieces) + "$", re.DOTALL)
