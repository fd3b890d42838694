"""Feedback to a new served version: DeepLog's online update, checked, published, swapped in.

``retrain_keys`` takes the pending false positives of ``deeplog_keys`` from the feedback store,
continues the serving version's weights on them (with normal windows replayed), refuses a model
that got worse on the check set, writes the new version atomically beside the old ones, and has
the running server load it through the repository API. If the server cannot load it, the
version is retired again and the old one keeps serving. ``rollback`` retires the newest version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from client.feedback import FALSE_POSITIVE, Feedback, FeedbackStore
from client.triton_client import InferenceError, ServerUnavailable, TritonClient
from export.online import (
    Acceptance,
    CheckResult,
    UpdateConfig,
    UpdateReport,
    check_model,
    online_update,
    refusals,
)
from export.publish import KeyVersion, RetrainData, publish_key_model
from export.repository import prune_versions, retire_version, versions
from export.specs import DEEPLOG_KEYS
from export.vocab import KeyVocabulary
from export.windows import windows_of_sessions

KEEP_VERSIONS = 2  # as the configs' version_policy: the new one and the one before


class RetrainError(RuntimeError):
    """A retrain or rollback that cannot go ahead; the serving version is untouched."""


class NothingToLearn(RetrainError):
    """No pending feedback for this model."""


class LoadFailed(RetrainError):
    """The server refused the new version; the old one is still serving."""


@dataclass
class RetrainResult:
    model: str
    old_version: int
    new_version: int | None  # None: refused, nothing published
    before: CheckResult
    after: CheckResult
    refused: list[str]
    update: UpdateReport
    seconds: dict[str, float] = field(default_factory=dict)
    feedback_used: int = 0


def read_key_file(path: Path, vocabulary: KeyVocabulary) -> list[list[int]]:
    """Sessions as lines of key names (``T3 T4 T4 ...``), e.g. known anomalies to check on;
    a name the version never learnt is its unknown key."""
    lines = path.read_text().splitlines()
    return [
        [vocabulary.key_of_name(name) for name in line.split()] for line in lines if line.split()
    ]


def learnable(store: FeedbackStore) -> list[Feedback]:
    """The feedback a key-model retrain learns from: pending false-positive log-key alerts."""
    return [
        f
        for f in store.pending(DEEPLOG_KEYS.name)
        if f.verdict == FALSE_POSITIVE and f.alert.check == "log_key"
    ]


def retrain_keys(
    store: FeedbackStore,
    triton: TritonClient,
    repository: Path,
    known_anomalies: Path | None = None,
    update: UpdateConfig | None = None,
    acceptance: Acceptance | None = None,
    progress: bool = True,
) -> RetrainResult:
    """One feedback cycle for deeplog_keys, against the running server. ``known_anomalies``
    names a key-name file (``read_key_file``) of sessions the new model must still flag."""
    clock = time.perf_counter()
    pending = learnable(store)
    if not pending:
        raise NothingToLearn("no pending false-positive log-key alerts in the feedback store")
    ready = triton.ready_versions(DEEPLOG_KEYS.name)
    if not ready:
        raise LoadFailed(f"{DEEPLOG_KEYS.name} is not being served by {triton.url}")
    current = KeyVersion.load(repository, ready[-1])
    meta = current.meta
    stale = {f.alert.id for f in pending if f.alert.vocabulary != meta.vocabulary.fingerprint}
    if stale:
        raise RetrainError(
            f"alerts {sorted(stale)} were raised under another vocabulary than "
            f"{DEEPLOG_KEYS.name} v{meta.version}'s: their keys mean other templates"
        )
    feedback = list({f.alert.session: f.alert.session_keys for f in pending}.values())
    anomalies = [f.alert.session_keys for f in store.confirmed("log_key")]
    if known_anomalies is not None:
        anomalies += read_key_file(known_anomalies, meta.vocabulary)
    check = (meta.window, meta.end_marker)

    def judge(model) -> CheckResult:
        return check_model(
            model, meta.top_g, *check, current.retrain.check_normal, anomalies, feedback
        )

    before = judge(current.model)
    updated, report = online_update(
        current.model,
        feedback,
        current.retrain.replay_windows,
        current.retrain.replay_keys,
        *check,
        update or UpdateConfig(),
        progress,
    )
    after = judge(updated)
    seconds = {"train_s": time.perf_counter() - clock}
    refused = refusals(before, after, acceptance or Acceptance())
    result = RetrainResult(
        DEEPLOG_KEYS.name, meta.version, None, before, after, refused, report, seconds
    )
    if refused:
        return result

    clock = time.perf_counter()
    # The fed-back windows join the replay, so a later update does not unlearn them.
    fx, fy = windows_of_sessions(feedback, *check)
    retrain = RetrainData(
        np.concatenate([current.retrain.replay_windows, fx]),
        np.concatenate([current.retrain.replay_keys, fy]),
        current.retrain.check_normal,
        current.retrain.check_source,
    )
    training = {
        "source": f"online update of v{meta.version} on {len(feedback)} false-positive sessions",
        "feedback_ids": [f.id for f in pending],
        "update": asdict(report),
    }
    version = publish_key_model(
        updated, current.config, meta.top_g, meta.vocabulary, repository, retrain, training, keep=0
    )
    seconds["publish_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    swap_in(triton, repository, DEEPLOG_KEYS.name, version)
    seconds["load_s"] = time.perf_counter() - clock
    store.mark_used([f.id for f in pending], f"{DEEPLOG_KEYS.name} v{version}")
    result.new_version, result.feedback_used = version, len(pending)
    return result


def swap_in(triton: TritonClient, repository: Path, model: str, version: int) -> None:
    """Have the server load ``version`` (the policy keeps the one before serving too); then
    drop older folders. If the server refuses it, retire it and reload what was there."""
    try:
        triton.load_model(model)
        ready = triton.ready_versions(model)
        if version not in ready:
            raise InferenceError(f"{model} v{version} is not ready after loading (ready: {ready})")
    except InferenceError as exc:
        retire_version(repository, model, version)
        triton.load_model(model)
        raise LoadFailed(
            f"the server could not load {model} v{version}; it was retired and "
            f"v{triton.ready_versions(model)[-1]} keeps serving: {exc}"
        ) from exc
    prune_versions(repository, model, KEEP_VERSIONS)


def rollback(triton: TritonClient, repository: Path, model: str) -> tuple[int, int]:
    """Retire the newest version of ``model``; the one before serves. Returns (retired, serving)."""
    present = versions(repository, model)
    if len(present) < 2:
        raise ValueError(
            f"{model} has {len(present)} version(s) in {repository}: nothing to roll back to"
        )
    retire_version(repository, model, present[-1])
    triton.load_model(model)
    ready = triton.ready_versions(model)
    if not ready or ready[-1] != present[-2]:
        raise LoadFailed(f"{model}: expected v{present[-2]} serving after rollback, ready: {ready}")
    return present[-1], ready[-1]


@dataclass(frozen=True)
class WatchConfig:
    every: int  # retrain once this many new learnable feedback items are pending
    interval_s: float = 10.0  # how often the store is read
    cycles: int | None = None  # stop after this many retrain attempts; None: until stopped


def watch(
    store: FeedbackStore,
    retrain: Callable[[], RetrainResult],
    config: WatchConfig,
    report: Callable[[RetrainResult | Exception], None],
    stop: threading.Event | None = None,
) -> int:
    """Run ``retrain`` whenever ``config.every`` new items are pending; returns the attempts.

    Items a retrain refused stay pending but do not trigger again by themselves: the next
    attempt waits for ``every`` newer ones. A server that cannot be reached is tried again at
    the next poll; its items count as new until a retrain has seen them.
    """
    if config.every < 1:
        raise ValueError(f"--watch needs a positive number of feedback items, not {config.every}")
    stop = stop or threading.Event()
    tried: set[int] = set()
    attempts = 0
    while not stop.is_set():
        pending = {f.id for f in learnable(store)}
        if len(pending - tried) >= config.every:
            try:
                result: RetrainResult | Exception = retrain()
            except ServerUnavailable as exc:
                report(exc)  # nothing was published; the feedback stays pending
            except (RetrainError, InferenceError) as exc:
                tried |= pending
                attempts += 1
                report(exc)
            else:
                tried |= pending
                attempts += 1
                report(result)
            if config.cycles is not None and attempts >= config.cycles:
                break
        stop.wait(config.interval_s)
    return attempts
