"""From a raw training log to a published model version: the client's half of training.

The client parses (it owns raw logs); ``export`` trains and publishes on key sequences.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from client.formats import LogFormat, builtin
from client.ops.errors import NotEnoughData
from client.param_vectors import ParamSchema, SchemaLearner, VectorBuilder
from client.parsing import BAD_TIME, LogParser, ParseStats
from export.asgnet import AsgnetConfig, Units, predict, train_asgnet
from export.contract.units import NORMAL
from export.contract.vocab import FIRST_KEY, UNKNOWN, KeyVocabulary
from export.deeplog_keys import KeyModelConfig, split_holdout, train_key_model
from export.deeplog_params import KeySeries, ParamModelConfig, train_param_model
from export.deeplog_steps import StepModelConfig, train_step_model
from export.metrics import Scores, classification_scores
from export.publish import (
    RetrainData,
    publish_key_model,
    publish_param_model,
    publish_step_model,
)
from export.publish_asgnet import publish_asgnet


@dataclass(frozen=True)
class Corpus:
    """A normal training log, parsed: what both DeepLog models train on."""

    vocabulary: KeyVocabulary
    sessions: list[list[int]]  # each session's keys, in order
    schema: ParamSchema
    series: list[KeySeries]  # each key's parameter vectors, in stream order
    stats: ParseStats


def learn_corpus(lines: Iterable[bytes | str], log_format: LogFormat | None = None) -> Corpus:
    """Mine templates from a normal log, then read it again with the final templates.

    Two passes, because a template gains wildcards while it is learnt: only the final templates
    give every line of a key the same parameter positions.
    """
    lines = list(lines)
    log_format = log_format or builtin("hdfs")
    learner = LogParser(log_format, learn=True)
    for line_no, raw in enumerate(lines, start=1):
        learner.parse(raw, line_no)
    templates = learner.templates
    vocabulary = KeyVocabulary(
        names=tuple(f"T{i + 1}" for i in range(len(templates))),
        templates=templates,
        log_format=log_format.source,
    )
    parser = LogParser(log_format, templates=templates, learn=False)
    schema_learner = SchemaLearner()
    entries: list[tuple[int, tuple[str, ...], float, str]] = []
    sessions: dict[str, list[int]] = {}
    for line_no, raw in enumerate(lines, start=1):
        parsed = parser.parse(raw, line_no)
        if parsed is None or parsed.template_id < 0:
            continue
        try:
            when = log_format.clock(parsed.header)
        except (ValueError, KeyError, OverflowError):
            learner.stats.retract(line_no, BAD_TIME, False)
            continue
        key = FIRST_KEY + parsed.template_id
        ids = log_format.sessions(parsed, when)
        when = when if log_format.clock.timed else None  # no timestamps: no gaps to learn
        for session in ids:
            sessions.setdefault(session, []).append(key)
        schema_learner.observe(key, parsed.template, parsed.params)
        entries.append((key, parsed.params, when, ids[0] if ids else ""))
    schema = schema_learner.schema(log_format.clock_resolution)
    builder = VectorBuilder(schema)
    vectors: dict[tuple[str, int], list[np.ndarray]] = {}
    for key, params, when, session in entries:
        vector = builder.vector(key, params, when, session)
        if vector is not None:
            vectors.setdefault((session, key), []).append(vector)
    series = [KeySeries(key, np.stack(v)) for (_, key), v in vectors.items()]
    return Corpus(vocabulary, list(sessions.values()), schema, series, learner.stats)


MIN_TRAINING_SESSIONS = 5  # fewer: nothing to learn, and none to hold out to calibrate g


def require_sessions(
    corpus: Corpus, lines: list[bytes], log_format: LogFormat, source: str
) -> None:
    """Refuse a training log that yields too few sessions, saying how many lines matched the
    format and showing one that did not (the usual cause: the wrong --format)."""
    found = len(corpus.sessions)
    if found >= MIN_TRAINING_SESSIONS:
        return
    stats = corpus.stats
    shown = ""
    if stats.examples:
        line_no, reason = stats.examples[0]
        text = lines[line_no - 1].decode("utf-8", "replace")[:120]
        shown = f"; line {line_no} ({reason}): {text!r}"
    raise NotEnoughData(
        f"{source}: {found} session(s) from {stats.lines} lines, {stats.parsed} of which match "
        f"the {log_format.name} format; training needs at least {MIN_TRAINING_SESSIONS}{shown}"
    )


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
    trained_on, held_out = split_holdout(sessions, config)
    training = {
        "source": source,
        "sessions": len(sessions),
        "config": asdict(config),
        **asdict(report),
    }
    retrain = RetrainData.from_training(trained_on, held_out, config)
    return publish_key_model(model, config, report.top_g, vocabulary, repository, retrain, training)


def train_and_publish_steps(
    sessions: list[list[int]],
    vocabulary: KeyVocabulary,
    repository: Path,
    config: StepModelConfig,
    source: str,
    progress: bool = True,
) -> int:
    """Train the stepwise key model on normal sessions and publish it; returns the version."""
    model, report = train_step_model(sessions, vocabulary.size, config, progress=progress)
    training = {"source": source, "config": asdict(config), **asdict(report)}
    return publish_step_model(
        model, config, report.top_g, vocabulary, repository, sessions, training
    )


def train_and_publish_params(
    corpus: Corpus,
    repository: Path,
    config: ParamModelConfig,
    export_format: str = "onnx",
    progress: bool = True,
) -> int:
    """Train DeepLog's parameter-value model on the corpus and publish it; returns the version."""
    trained = train_param_model(corpus.series, corpus.vocabulary.size, config, progress=progress)
    return publish_param_model(
        trained,
        config,
        corpus.vocabulary,
        corpus.schema.to_json(),
        repository,
        export_format,
        training={"config": asdict(config), "keys": len(corpus.series)},
    )


def session_keys(
    lines: Iterable[bytes | str], vocabulary: KeyVocabulary, log_format: LogFormat | None = None
) -> dict[str, list[int]]:
    """Each session's keys under a fixed vocabulary (unseen templates are UNKNOWN)."""
    log_format = log_format or builtin("hdfs")
    parser = LogParser(log_format, templates=vocabulary.templates, learn=False)
    sessions: dict[str, list[int]] = {}
    for line_no, raw in enumerate(lines, start=1):
        parsed = parser.parse(raw, line_no)
        if parsed is None:
            continue
        key = FIRST_KEY + parsed.template_id if parsed.template_id >= 0 else UNKNOWN
        try:
            when = log_format.clock(parsed.header)
        except (ValueError, KeyError, OverflowError):
            continue
        for session in log_format.sessions(parsed, when):
            sessions.setdefault(session, []).append(key)
    return sessions


def labelled_units(
    lines: Iterable[bytes | str],
    labels: dict[str, str],
    classes: tuple[str, ...],
    vocabulary: KeyVocabulary,
    log_format: LogFormat | None = None,
) -> Units:
    """A labelled log's sessions as ASGNet units; ``labels`` maps session -> class name
    (sessions it does not name are normal)."""
    sessions = session_keys(lines, vocabulary, log_format)
    names = list(sessions)
    return Units.from_rows(
        [sessions[s] for s in names],
        [classes.index(labels.get(s) or NORMAL) for s in names],
        names,
    )


@dataclass(frozen=True)
class PublishedAsgnet:
    version: int
    check: Scores  # the gated model's, on the check set (which also chose when to stop)


def train_and_publish_asgnet(
    train: Units,
    validation: Units,
    vocabulary: KeyVocabulary,
    classes: tuple[str, ...],
    repository: Path,
    config: AsgnetConfig,
    progress: bool = True,
) -> PublishedAsgnet:
    """Train ASGNet on labelled units, publish it with the similar-incident index of ``train``
    and ``validation`` kept as the check set a fine-tune on feedback must not get worse on."""
    trained = train_asgnet(train, validation, vocabulary, classes, config, progress=progress)
    version = publish_asgnet(
        trained, train, repository, training={"config": asdict(config)}, check=validation
    )
    gated = predict(trained, validation).gated.argmax(axis=1)
    return PublishedAsgnet(
        version, classification_scores(validation.labels, gated, classes, validation.weights)
    )
