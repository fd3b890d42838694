"""Feedback to a new served version: learnt, checked, published, swapped in.

``retrain_keys`` takes the pending false positives of ``deeplog_keys`` from the feedback store,
continues the serving version's weights on them (with normal windows replayed), refuses a model
that got worse on the check set, writes the new version atomically beside the old ones, and has
the running server load it through the repository API. If the server cannot load it, the
version is retired again and the old one keeps serving. ``recalibrate_params`` widens a
parameter model's bounds; ``retrain_asgnet`` fine-tunes ASGNet on diagnosis feedback and swaps
its four models in as one release. ``rollback`` retires the newest version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf import json_format

from client.alerts import Check, KeyAlert
from client.feedback import FALSE_POSITIVE, Feedback, FeedbackStore
from client.ops.errors import LoadFailed, NothingToLearn, RetrainError
from client.param_detection import normalised_deviation
from client.param_vectors import ParamSchema
from client.triton_client import InferenceError, ServerUnavailable, TritonClient
from export.asgnet import Units
from export.asgnet_state import load_state
from export.asgnet_update import (
    AsgnetUpdateConfig,
    AsgnetUpdateReport,
    check_asgnet,
    finetune_asgnet,
    with_feedback,
)
from export.contract.metas import ParamModelMeta
from export.contract.specs import (
    ALL_SPECS,
    ASGNET,
    ASGNET_GNET,
    DEEPLOG_KEYS,
    LOG_ANOMALY,
    PARAM_FORMATS,
)
from export.contract.vocab import UNKNOWN, KeyVocabulary
from export.contract.windows import windows_of_sessions
from export.deeplog_keys import calibrated_g, grown_key_model, worst_ranks
from export.deeplog_params import widened_thresholds
from export.online import (
    Acceptance,
    CheckResult,
    UpdateConfig,
    UpdateReport,
    check_model,
    online_update,
    refusals,
)
from export.publish import (
    KeyVersion,
    RetrainData,
    publish_key_model,
    publish_recalibrated_params,
)
from export.publish_asgnet import ASGNET_MODELS, publish_asgnet
from export.repository import model_config, prune_versions, retire_version, versions

PARAM_SPECS = {spec.name: spec for spec in PARAM_FORMATS.values()}
SPECS = {spec.name: spec for spec in ALL_SPECS}
# Models published and swapped together under one version number, by the name a user gives.
RELEASES = {ASGNET.name: tuple(spec.name for spec in ASGNET_MODELS)}


@dataclass
class RetrainResult:
    model: str
    old_version: int
    new_version: int | None  # None: refused, nothing published
    before: CheckResult
    after: CheckResult
    refused: list[str]
    update: UpdateReport | AsgnetUpdateReport | None  # None: bounds recalibrated, no training
    seconds: dict[str, float] = field(default_factory=dict)
    feedback_used: int = 0
    templates_learnt: int = 0  # new keys the vocabulary grew by
    top_g: tuple[int, int] | None = None  # g before and after, where it was calibrated again


def read_key_file(path: Path, vocabulary: KeyVocabulary) -> list[list[int]]:
    """Sessions as lines of key names (``T3 T4 T4 ...``), e.g. known anomalies to check on;
    a name the version never learnt is its unknown key."""
    lines = path.read_text().splitlines()
    return [
        [vocabulary.key_of_name(name) for name in line.split()] for line in lines if line.split()
    ]


def key_false_positives(store: FeedbackStore) -> list[Feedback]:
    """What a key-model retrain learns from: pending false-positive log-key alerts."""
    return [
        f
        for f in store.pending(DEEPLOG_KEYS.name)
        if f.verdict == FALSE_POSITIVE and f.alert.check is Check.LOG_KEY
    ]


def param_false_positives(store: FeedbackStore) -> dict[str, list[Feedback]]:
    """Pending false-positive parameter-value alerts, by the model that raised them."""
    found: dict[str, list[Feedback]] = {}
    for f in store.pending():
        param = f.alert.check is Check.PARAMETER_VALUE and f.alert.model in PARAM_SPECS
        if param and f.verdict == FALSE_POSITIVE:
            found.setdefault(f.alert.model, []).append(f)
    return found


def diagnosis_feedback(store: FeedbackStore) -> list[Feedback]:
    """Pending diagnosis verdicts ASGNet learns from: false positives (the session is normal)
    and confirmations that give another class than the one diagnosed."""
    return [
        f
        for f in store.pending(LOG_ANOMALY.name)
        if f.alert.check is Check.DIAGNOSIS
        and (f.verdict == FALSE_POSITIVE or (f.label and f.label != f.alert.alert.label))
    ]


def learnable(store: FeedbackStore) -> list[Feedback]:
    """Every pending item some retrain learns from."""
    return (
        key_false_positives(store)
        + [f for items in param_false_positives(store).values() for f in items]
        + diagnosis_feedback(store)
    )


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
    names a key-name file (``read_key_file``) of sessions the new model must still flag.

    Templates marked normal (``feedback normal-template``) grow the vocabulary: they are
    appended as new keys (old keys keep their ids), the model's embedding and output layer
    grow by them, and their alerts' sessions are learnt with those keys where the template
    came."""
    clock = time.perf_counter()
    pending = key_false_positives(store)
    if not pending:
        raise NothingToLearn("no pending false-positive log-key alerts in the feedback store")
    current = KeyVersion.load(repository, _serving_version(triton, DEEPLOG_KEYS.name))
    meta = current.meta
    _same_vocabulary(pending, meta.vocabulary, f"{DEEPLOG_KEYS.name} v{meta.version}")
    templates = store.normal_templates(meta.vocabulary.fingerprint, pending=True)
    vocabulary = meta.vocabulary.grown(tuple(t.template for t in templates))
    as_fed_back = _fed_back_sessions(pending, {})
    feedback = _fed_back_sessions(
        pending, {t.template: meta.vocabulary.size + i for i, t in enumerate(templates)}
    )
    anomalies = [f.alert.session_keys for f in store.confirmed(Check.LOG_KEY)]
    if known_anomalies is not None:
        anomalies += read_key_file(known_anomalies, meta.vocabulary)
    check = (meta.window, meta.end_marker)
    fed_back = {tuple(keys) for keys in feedback}
    traffic = [
        keys
        for keys in store.traffic_normal(meta.vocabulary.fingerprint)
        if tuple(keys) not in fed_back
    ]

    normal = current.retrain.check_normal

    def judge(model, fed_back: list[list[int]], top_g: int) -> CheckResult:
        return check_model(model, top_g, *check, normal, anomalies, fed_back, traffic)

    before = judge(current.model, as_fed_back, meta.top_g)
    start = (
        grown_key_model(current.model, current.config, vocabulary.size)
        if templates
        else current.model
    )
    updated, report = online_update(
        start,
        feedback,
        current.retrain.replay_windows,
        current.retrain.replay_keys,
        *check,
        update or UpdateConfig(),
        progress,
    )
    top_g = meta.top_g
    if templates:
        # New keys are new branches after old ones: g is calibrated again on the held-out
        # normal sessions, as training does, never below the serving version's.
        target = max(before.false_positive_rate, current.config.false_alarm_target)
        worst = worst_ranks(updated, normal, *check)
        top_g, _ = calibrated_g(worst, vocabulary.size, target, at_least=meta.top_g)
    after = judge(updated, feedback, top_g)
    seconds = {"train_s": time.perf_counter() - clock}
    refused = refusals(before, after, acceptance or Acceptance())
    result = RetrainResult(
        DEEPLOG_KEYS.name, meta.version, None, before, after, refused, report, seconds
    )
    result.templates_learnt = len(templates)
    result.top_g = (meta.top_g, top_g) if templates else None
    if refused:
        return result

    # The fed-back windows join the replay, so a later update does not unlearn them.
    fx, fy = windows_of_sessions(feedback, *check)
    # Its workflow: the previous version's sessions and the fed-back ones, so a retrain
    # widens the workflow by what was fed back and keeps what it had.
    retrain = RetrainData(
        np.concatenate([current.retrain.replay_windows, fx]),
        np.concatenate([current.retrain.replay_keys, fy]),
        current.retrain.check_normal,
        current.retrain.check_source,
        current.retrain.with_normal(feedback, current.config.seed),
    )
    training = {
        "source": f"online update of v{meta.version} on {len(feedback)} false-positive sessions"
        + (f", {len(templates)} new template(s)" if templates else ""),
        "feedback_ids": [f.id for f in pending],
        "new_templates": [t.template for t in templates],
        "top_g": {"before": meta.top_g, "after": top_g},
        "update": asdict(report),
    }
    result = _publish_and_swap(
        store,
        triton,
        repository,
        result,
        pending,
        lambda: publish_key_model(
            updated, current.config, top_g, vocabulary, repository, retrain, training, 0
        ),
    )
    store.mark_templates_used([t.id for t in templates], f"{result.model} v{result.new_version}")
    return result


def _fed_back_sessions(pending: list[Feedback], new_keys: dict[str, int]) -> list[list[int]]:
    """The fed-back sessions' keys (once per session), with each template of ``new_keys``
    (template -> its new key) put in where its unknown-template alert says it came."""
    sessions: dict[str, list[int]] = {}
    for f in pending:
        keys = sessions.setdefault(f.alert.session, list(f.alert.session_keys))
        alert = f.alert.alert
        if isinstance(alert, KeyAlert) and alert.actual.template in new_keys:
            for i in alert.key_indexes:
                if 0 <= i < len(keys) and keys[i] == UNKNOWN:
                    keys[i] = new_keys[alert.actual.template]
    return list(sessions.values())


def _publish_and_swap(
    store: FeedbackStore,
    triton: TritonClient,
    repository: Path,
    result: RetrainResult,
    pending: list[Feedback],
    publish: Callable[[], int],
) -> RetrainResult:
    """Write the accepted version, have the server load it, and only then call the feedback
    used: a failure on the way leaves it pending for the next retrain."""
    clock = time.perf_counter()
    version = publish()
    result.seconds["publish_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    swap_in_release(triton, repository, RELEASES.get(result.model, (result.model,)), version)
    result.seconds["load_s"] = time.perf_counter() - clock
    store.mark_used([f.id for f in pending], f"{result.model} v{version}")
    result.new_version, result.feedback_used = version, len(pending)
    return result


def _serving_version(triton: TritonClient, model: str) -> int:
    """The version a retrain continues from: the newest one the server has ready."""
    ready = triton.ready_versions(model)
    if not ready:
        raise LoadFailed(f"{model} is not being served by {triton.url}")
    return ready[-1]


def _same_vocabulary(pending: list[Feedback], vocabulary: KeyVocabulary, serving: str) -> None:
    stale = {f.alert.id for f in pending if f.alert.vocabulary != vocabulary.fingerprint}
    if stale:
        raise RetrainError(
            f"alerts {sorted(stale)} were raised under another vocabulary than {serving}'s: "
            "their keys mean other templates"
        )


def recalibrate_params(
    store: FeedbackStore,
    triton: TritonClient,
    repository: Path,
    model: str,
    acceptance: Acceptance | None = None,
) -> RetrainResult:
    """Widen the serving version's bounds so its pending false-positive values pass; refuse if
    a confirmed parameter-value anomaly would pass too. Same weights, new version, swapped in."""
    clock = time.perf_counter()
    pending = param_false_positives(store).get(model, [])
    if not pending:
        raise NothingToLearn(f"no pending false-positive parameter-value alerts of {model}")
    meta = ParamModelMeta.load(repository, model, _serving_version(triton, model))
    schema = ParamSchema.from_json(meta.schema)
    _same_vocabulary(pending, meta.vocabulary, f"{model} v{meta.version}")
    learnt, fixed_dims = [], []
    for f in pending:
        deviation = normalised_deviation(meta, schema, f.alert.alert)
        if deviation is None:
            fixed_dims.append(f.alert.id)
        else:
            learnt.append(deviation)
    confirmed = [
        d
        for f in store.confirmed(Check.PARAMETER_VALUE)
        if f.alert.model == model
        and (d := normalised_deviation(meta, schema, f.alert.alert)) is not None
    ]
    bounds = widened_thresholds(meta.thresholds, meta.thresholds_above, learnt)

    def judge(below: dict[int, list[float]], above: dict[int, list[float]]) -> CheckResult:
        def outside(key: int, dim: int, deviation: float) -> bool:
            return deviation > above[key][dim] or -deviation > below[key][dim]

        def flagged(items: list[tuple[int, int, float]]) -> int:
            return sum(outside(*item) for item in items)

        return CheckResult(0, 0, len(confirmed), flagged(confirmed), len(learnt), flagged(learnt))

    before, after = judge(meta.thresholds, meta.thresholds_above), judge(*bounds)
    refused = refusals(before, after, acceptance or Acceptance())
    if fixed_dims:
        refused.append(
            f"alerts {fixed_dims} are about a value that never varied in training "
            "(its bound is that constant): retrain the model on logs that show the new value"
        )
    seconds = {"train_s": time.perf_counter() - clock}
    result = RetrainResult(model, meta.version, None, before, after, refused, None, seconds)
    if refused:
        return result
    training = {
        "source": f"bounds of v{meta.version} widened by {len(learnt)} false-positive values",
        "feedback_ids": [f.id for f in pending],
    }
    return _publish_and_swap(
        store,
        triton,
        repository,
        result,
        pending,
        lambda: publish_recalibrated_params(
            repository, PARAM_SPECS[model], meta.version, bounds, training
        ),
    )


def _diagnosis_units(feedback: list[Feedback], classes: tuple[str, ...]) -> Units:
    """Diagnosed sessions with the operator's class (normal for a false positive)."""
    labels = []
    for f in feedback:
        label = classes[0] if f.verdict == FALSE_POSITIVE else f.label or f.alert.alert.label
        if label not in classes:
            raise RetrainError(
                f"feedback #{f.id} names class {label!r}, not one of the serving ASGNet's "
                f"{classes}: a new class needs ASGNet trained again"
            )
        labels.append(classes.index(label))
    return Units.from_rows(
        [f.alert.session_keys for f in feedback],
        labels,
        [f"feedback #{f.id}: {f.alert.session}" for f in feedback],
    )


def retrain_asgnet(
    store: FeedbackStore,
    triton: TritonClient,
    repository: Path,
    update: AsgnetUpdateConfig | None = None,
    acceptance: Acceptance | None = None,
    progress: bool = True,
) -> RetrainResult:
    """Fine-tune the serving ASGNet release on its pending diagnosis feedback (replaying the
    units it was trained on), check it on the release's held-back units and the confirmed
    diagnoses, and publish its four models as one new version with the fed-back units in the
    similar-incident index."""
    clock = time.perf_counter()
    pending = diagnosis_feedback(store)
    if not pending:
        raise NothingToLearn("no pending diagnosis feedback in the feedback store")
    version = _serving_version(triton, ASGNET_GNET.name)
    state = load_state(repository, version)
    current = state.trained
    _same_vocabulary(pending, current.vocabulary, f"{ASGNET.name} v{version}")
    feedback = _diagnosis_units(pending, current.classes)
    confirmed = [f for f in store.confirmed(Check.DIAGNOSIS) if f.alert.model == LOG_ANOMALY.name]
    _same_vocabulary(confirmed, current.vocabulary, f"{ASGNET.name} v{version}")
    anomalies = _diagnosis_units(confirmed, current.classes)

    before = check_asgnet(current, state.check, anomalies, feedback)
    updated, report = finetune_asgnet(
        current, state.indexed, feedback, update or AsgnetUpdateConfig(), progress
    )
    after = check_asgnet(updated, state.check, anomalies, feedback)
    seconds = {"train_s": time.perf_counter() - clock}
    refused = refusals(before, after, acceptance or Acceptance())
    result = RetrainResult(ASGNET.name, version, None, before, after, refused, report, seconds)
    if refused:
        return result
    indexed, _ = with_feedback(state.indexed, feedback)  # similar incidents now include them
    training = {
        "source": f"v{version} fine-tuned on {len(feedback)} diagnosis feedback units",
        "feedback_ids": [f.id for f in pending],
        "update": asdict(report),
    }
    return _publish_and_swap(
        store,
        triton,
        repository,
        result,
        pending,
        lambda: publish_asgnet(updated, indexed, repository, training, state.check, keep=0),
    )


def retrain_pending(
    store: FeedbackStore,
    triton: TritonClient,
    repository: Path,
    known_anomalies: Path | None = None,
    update: UpdateConfig | None = None,
    acceptance: Acceptance | None = None,
    progress: bool = True,
) -> list[RetrainResult]:
    """Every model with pending feedback learns it: the key model by DeepLog's online update,
    parameter-value models by widening their bounds, ASGNet by fine-tuning."""
    results = []
    if key_false_positives(store):
        results.append(
            retrain_keys(store, triton, repository, known_anomalies, update, acceptance, progress)
        )
    for model in param_false_positives(store):
        results.append(recalibrate_params(store, triton, repository, model, acceptance))
    if diagnosis_feedback(store):
        results.append(
            retrain_asgnet(store, triton, repository, None, acceptance, progress=progress)
        )
    if not results:
        raise NothingToLearn(
            "no pending false-positive log-key or parameter-value alerts, nor diagnosis "
            "feedback, in the feedback store"
        )
    return results


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
    # As many folders as the config's version policy serves: the new one and the one before.
    prune_versions(repository, model, SPECS[model].num_versions)


def swap_in_release(
    triton: TritonClient, repository: Path, models: tuple[str, ...], version: int
) -> None:
    """``swap_in`` each of ``models`` (published together as ``version``). If one is refused,
    those already swapped go back too: a release serves whole or not at all."""
    swapped: list[str] = []
    try:
        for model in models:
            swap_in(triton, repository, model, version)
            swapped.append(model)
    except LoadFailed:
        for model in swapped:
            retire_version(repository, model, version)
            triton.load_model(model)
        raise


def serve_only(triton: TritonClient, model: str, keep: list[int]) -> None:
    """Have the server serve only the newest of ``keep`` its version policy allows (loaded
    with its config, the policy pinned to those versions); the others are unloaded."""
    spec = SPECS[model]
    config = model_config(spec)
    config.version_policy.specific.versions[:] = keep[-spec.num_versions :]
    triton.load_model(
        model, config=json_format.MessageToJson(config, preserving_proto_field_name=True)
    )


def rollback(triton: TritonClient, repository: Path, model: str) -> tuple[int, int]:
    """Retire the newest version of ``model`` (for ``asgnet``: of its four models); the one
    before serves. Returns (retired, serving)."""
    models = RELEASES.get(model, (model,))
    if model not in SPECS:
        raise RetrainError(f"no model {model!r}: one of {sorted(SPECS)}")
    present = versions(repository, models[0])
    if len(present) < 2:
        raise RetrainError(
            f"{model} has {len(present)} version(s) in {repository}: nothing to roll back to"
        )
    # Unload first, then move the folder: a client that reads the retired version's metadata
    # while the server still runs it finds the folder still there.
    for name in models:
        serve_only(triton, name, [v for v in versions(repository, name) if v != present[-1]])
    for name in models:
        retire_version(repository, name, present[-1])
        triton.load_model(name)
    for name in models:
        ready = triton.ready_versions(name)
        if not ready or ready[-1] != present[-2]:
            raise LoadFailed(
                f"{name}: expected v{present[-2]} serving after rollback, ready: {ready}"
            )
    return present[-1], present[-2]


@dataclass(frozen=True)
class WatchConfig:
    every: int  # retrain once this many new learnable feedback items are pending
    interval_s: float = 10.0  # how often the store is read
    cycles: int | None = None  # stop after this many retrain attempts; None: until stopped


def watch(
    store: FeedbackStore,
    retrain: Callable[[], list[RetrainResult]],
    config: WatchConfig,
    report: Callable[[list[RetrainResult] | Exception], None],
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
                result: list[RetrainResult] | Exception = retrain()
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
