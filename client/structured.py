"""A log as logparser's structured CSV: one row per input line, in input order, with its header
fields, content, template and parameters; and the templates CSV beside it.

The log is read once and templates are learnt as its lines arrive. Because a template learnt
early can still merge with its siblings later (client/parsing.py), every row is written first
with the id its line got on arrival to a spool file beside the output, and the CSV is written
from the spool at the end with each line's final template: memory holds the templates, never
the lines.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from client.formats import LogFormat
from client.parsing import LogParser, ParseStats, slot_pattern
from client.sources import Record

LINE_ID, EVENT_ID, TEMPLATE, PARAMETERS, CONTENT, MALFORMED = (
    "LineId",
    "EventId",
    "EventTemplate",
    "ParameterList",
    "Content",
    "Malformed",
)
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class ParseResult:
    structured: Path
    templates: Path
    stats: ParseStats
    template_count: int


def templates_path(structured: Path) -> Path:
    """``x.csv`` -> ``x_templates.csv``, beside it."""
    return structured.with_name(structured.stem + "_templates" + (structured.suffix or ".csv"))


def parse_to_csv(
    records: Iterable[Record], log_format: LogFormat, out: Path, progress: bool = False
) -> ParseResult:
    """Parse every record, learning templates; write ``out`` and its templates CSV."""
    parser = LogParser(log_format, learn=True)
    spool = out.with_name(f".{out.name}.spool")
    started = last_report = time.monotonic()
    try:
        with spool.open("w", newline="", encoding="utf-8") as f:
            rows = csv.writer(f)
            for record in records:
                rows.writerow(_spooled(parser, record))
                if progress and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                    last_report = time.monotonic()
                    rate = parser.stats.lines / (last_report - started)
                    print(
                        f"\r{parser.stats.lines:,} lines ({rate:,.0f}/s)", end="", file=sys.stderr
                    )
        if progress and last_report != started:
            print(file=sys.stderr)
        occurrences = _write_structured(spool, out, parser, log_format.fields)
    finally:
        spool.unlink(missing_ok=True)
    texts = parser.templates
    where = templates_path(out)
    with where.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([EVENT_ID, TEMPLATE, "Occurrences"])
        for i, text in enumerate(texts):
            writer.writerow([event_id(i), text, occurrences[i]])
    return ParseResult(out, where, parser.stats, len(texts))


def event_id(index: int) -> str:
    return f"E{index + 1}"


def _spooled(parser: LogParser, record: Record) -> list[str]:
    """[line, template id or "", reason, content, *header fields]."""
    if record.too_long:
        parser.refuse(record.line_no, "too_long")
        return [str(record.line_no), "", "too_long", ""]
    parsed = parser.parse(record.raw, record.line_no)
    if parsed is None:
        text = record.raw.decode("utf-8", errors="replace").rstrip("\r\n")
        return [str(record.line_no), "", parser.stats.last_reason, text]
    header = [parsed.header.get(f) or "" for f in parser.format.fields]
    return [str(record.line_no), str(parsed.template_id), "", parsed.content, *header]


def _write_structured(
    spool: Path, out: Path, parser: LogParser, fields: tuple[str, ...]
) -> Counter:
    texts = parser.templates
    slots = {}
    occurrences: Counter = Counter()
    partial = out.with_name(f".{out.name}.partial")
    with (
        spool.open(newline="", encoding="utf-8") as f,
        partial.open("w", newline="", encoding="utf-8") as g,
    ):
        writer = csv.writer(g)
        writer.writerow([LINE_ID, *fields, CONTENT, EVENT_ID, TEMPLATE, PARAMETERS, MALFORMED])
        for line, template_id, reason, content, *header in csv.reader(f):
            if not template_id:
                writer.writerow([line, *([""] * len(fields)), content, "", "", "", reason])
                continue
            final = parser.final_id(int(template_id))
            occurrences[final] += 1
            pattern = slots.get(final)
            if pattern is None:
                pattern = slots[final] = slot_pattern(texts[final])
            match = pattern.match(content)
            params = json.dumps(list(match.groups()) if match else [], ensure_ascii=False)
            writer.writerow([line, *header, content, event_id(final), texts[final], params, ""])
    os.replace(partial, out)
    return occurrences
