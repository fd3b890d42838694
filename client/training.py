"""From a raw training log to a published model version: the client's half of training.

The client parses (it owns raw logs); ``export`` trains and publishes on key sequences.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from client.parsing import HDFS_FORMAT, LogFormat, LogParser, ParseStats
from client.sessions import hdfs_session_ids
from export.deeplog_keys import KeyModelConfig, train_key_model
from export.publish import publish_key_model
from export.vocab import FIRST_KEY, KeyVocabulary
from export.windows import windows_of_sessions


def learn_sessions(
    lines: Iterable[bytes | str], log_format: LogFormat = HDFS_FORMAT
) -> tuple[KeyVocabulary, list[list[int]], ParseStats]:
    """Mine templates from a normal log; return the vocabulary and each session's keys."""
    parser = LogParser(log_format, learn=True)
    sessions: dict[str, list[int]] = {}
    for line_no, raw in enumerate(lines, start=1):
        parsed = parser.parse(raw, line_no)
        if parsed is None:
            continue
        for session in hdfs_session_ids(parsed):
            sessions.setdefault(session, []).append(FIRST_KEY + parsed.template_id)
    templates = parser.templates
    vocabulary = KeyVocabulary(
        names=tuple(f"T{i + 1}" for i in range(len(templates))), templates=templates
    )
    return vocabulary, list(sessions.values()), parser.stats


def train_and_publish(
    sessions: list[list[int]],
    vocabulary: KeyVocabulary,
    repository: Path,
    config: KeyModelConfig,
    source: str,
    progress: bool = True,
) -> int:
    """Train DeepLog's key model on normal sessions and publish it; returns the new version."""
    model, report = train_key_model(sessions, vocabulary.size, config, progress=progress)
    windows, keys = windows_of_sessions(sessions, config.window, config.end_marker)
    rng = np.random.default_rng(config.seed)
    probe = rng.choice(len(windows), size=min(2048, len(windows)), replace=False)
    training = {
        "source": source,
        "sessions": len(sessions),
        "config": asdict(config),
        **asdict(report),
    }
    return publish_key_model(
        model, config, report.top_g, vocabulary, repository, windows[probe], keys[probe], training
    )
