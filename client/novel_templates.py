"""Templates the serving version never learnt, mined as they come during detection.

A frozen parser maps every line it cannot match to the one UNKNOWN key. After a deployment a
log brings new templates by the thousand lines; alerting each line, or naming all of them
"<unknown>", leaves the operator nothing to act on. So the lines the frozen parser did not
match go through a learning parser of their own (same format, same rules): each unknown line
gets the template it belongs to, named by the template's text, which is what an alert shows,
what ``feedback normal-template`` marks normal and what the next version's vocabulary learns.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from client.alerts import KeyRef
from client.formats import LogFormat
from client.parsing import LogParser
from export.contract.vocab import RESERVED_NAMES, UNKNOWN

# New templates told apart per run; past this, unknown lines are "<unknown>" as before.
MAX_NOVEL_TEMPLATES = 1000
NOVEL_PREFIX = "new-"


def novel_name(template: str) -> str:
    """The name an unknown template goes by until a version learns it: its text's hash, so
    the same template has the same name in every run that mined the same text."""
    return NOVEL_PREFIX + hashlib.sha256(template.encode("utf-8")).hexdigest()[:8]


UNNAMED = KeyRef(UNKNOWN, RESERVED_NAMES[UNKNOWN], RESERVED_NAMES[UNKNOWN])


class NovelTemplates:
    """Unknown lines' templates: ``ref(content)`` of a line the frozen parser did not match."""

    def __init__(self, log_format: LogFormat, limit: int = MAX_NOVEL_TEMPLATES) -> None:
        rules = replace(log_format.templates, max_templates=limit)
        self._parser = LogParser(replace(log_format, templates=rules))
        # A template's ref as first mined: its text may widen later (a position that takes
        # more words becomes a variable), but an alert already out named the first text.
        self._refs: dict[int, KeyRef] = {}

    def ref(self, content: str) -> KeyRef:
        template_id = self._parser.learn_content(content)
        if template_id is None:
            return UNNAMED
        ref = self._refs.get(template_id)
        if ref is None:
            text = self._parser.templates[self._parser.final_id(template_id)]
            ref = self._refs[template_id] = KeyRef(UNKNOWN, novel_name(text), text)
        return ref

    def __len__(self) -> int:
        return len(self._refs)
