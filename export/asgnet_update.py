"""ASGNet fine-tuned on operator feedback, and the check it must pass before it is published.

A diagnosis marked a false positive is a unit whose class is normal; one confirmed with another
class is a unit of that class. As in DeepLog's online update, the units the release was trained
on are replayed so that it keeps what it knew; a replayed unit with exactly the fed-back keys
takes the operator's class (the operator says its training label was wrong there). S-Net
(encoder and head) continues at a small learning rate, then G-Net continues on the new S-Net
outputs. V-Net learnt key counts without labels and is kept as it was. The result is judged on
the release's held-back check units and on the confirmed diagnoses before anyone serves it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from export.asgnet import (
    TrainedAsgnet,
    Units,
    class_weights,
    encode_units,
    predict,
    snet_loss,
    snet_outputs,
)
from export.fitting import fit
from export.online import CheckResult


@dataclass(frozen=True)
class AsgnetUpdateConfig:
    snet_epochs: int = 3
    snet_learning_rate: float = 1e-4  # a fifth of a typical fine-tune's: nudge, do not relearn
    # G-Net learnt on S-Net's outputs as they were; once S-Net moves, G-Net has to fit the new
    # ones as in training (its own rate, epochs of milliseconds). A gentler 3e-4 for 20 epochs
    # left G-Net behind the moved features: on BGL it lost 3 of 11 check anomalies, not 2.
    gnet_epochs: int = 100
    gnet_learning_rate: float = 3e-3
    # Each fed-back unit is seen this many times per epoch, weighted as an average replayed
    # unit each time: one session has to weigh against hundreds of replayed ones.
    feedback_weight: int = 20
    seed: int = 0


@dataclass(frozen=True)
class AsgnetUpdateReport:
    feedback_units: int
    replay_units: int
    relabelled_units: int  # replayed units that took the operator's class
    snet_epochs: int
    gnet_epochs: int
    snet_final_loss: float
    gnet_final_loss: float
    seconds: float


def with_feedback(replay: Units, feedback: Units) -> tuple[Units, int]:
    """The replay with the fed-back units in it, each with the operator's class: replayed units
    with the same keys are dropped. Returns the units and how many were dropped."""
    fed = set(feedback.keys)
    kept = np.array([i for i, keys in enumerate(replay.keys) if keys not in fed], dtype=np.int64)
    return replay.select(kept).join(feedback), len(replay) - len(kept)


def finetune_asgnet(
    trained: TrainedAsgnet,
    replay: Units,
    feedback: Units,
    config: AsgnetUpdateConfig,
    progress: bool = True,
) -> tuple[TrainedAsgnet, AsgnetUpdateReport]:
    """A copy of ``trained`` fine-tuned to give ``feedback`` units their labels, with ``replay``
    (the units the release learnt from) replayed so that it keeps what it knew."""
    if len(feedback) == 0:
        raise ValueError("no fed-back units to learn from")
    if int(feedback.labels.max()) >= len(trained.classes):
        raise ValueError(f"feedback names a class outside {trained.classes}")
    start = time.perf_counter()
    # Each fed-back unit weighs what an average replayed unit does, and is seen
    # feedback_weight times per epoch (with_feedback puts it last).
    mean_weight = float(replay.weights.mean()) if len(replay) else 1.0
    feedback = replace(feedback, weights=np.full(len(feedback), mean_weight, np.float32))
    units, relabelled = with_feedback(replay, feedback)
    fed = np.arange(len(units) - len(feedback), len(units))
    samples = units.join(units.select(np.repeat(fed, config.feedback_weight - 1)))

    balance = class_weights(units, len(trained.classes), trained.config.balance_classes)
    split = encode_units(samples, trained.vocabulary, trained.tokenizer, balance)
    snet, gnet = copy.deepcopy(trained.snet), copy.deepcopy(trained.gnet)
    torch.manual_seed(config.seed)
    snet_loss_value = fit(
        snet,
        snet_loss(snet, split),
        len(samples),
        config.snet_epochs,
        trained.config.snet.batch_size,
        config.snet_learning_rate,
        np.random.default_rng(config.seed),
        "fine-tune s-net on feedback",
        progress,
    )
    features, _, confidence = snet_outputs(snet, split.ids, split.attention)
    with torch.no_grad():
        latent = trained.vnet(split.counts)
    gnet_loss_value = fit(
        gnet,
        lambda idx: gnet.loss(
            features[idx], confidence[idx], latent[idx], split.labels[idx], split.weights[idx]
        ),
        len(samples),
        config.gnet_epochs,
        trained.config.gnet.batch_size,
        config.gnet_learning_rate,
        np.random.default_rng(config.seed),
        "fine-tune g-net on feedback",
        progress,
    )
    updated = copy.copy(trained)
    updated.snet, updated.gnet = snet, gnet
    updated.report = {**trained.report, "fine_tuned_on_feedback": len(feedback)}
    report = AsgnetUpdateReport(
        len(feedback),
        len(replay),
        relabelled,
        config.snet_epochs,
        config.gnet_epochs,
        snet_loss_value,
        gnet_loss_value,
        time.perf_counter() - start,
    )
    return updated, report


def _predicted(trained: TrainedAsgnet, units: Units) -> np.ndarray:
    if len(units) == 0:
        return np.zeros(0, dtype=np.int64)
    return predict(trained, units).gated.argmax(axis=1)


def check_asgnet(
    trained: TrainedAsgnet, check: Units, anomalies: Units, feedback: Units
) -> CheckResult:
    """Known normal units called anything but normal (false positives) and known anomalies
    called normal (missed), counted in rows (a unit's weight); fed-back units still given
    another class than the operator's. ``check``'s abnormal units join ``anomalies``; class 0
    is normal (``train_asgnet`` holds every release to that)."""
    normal = check.select(np.flatnonzero(check.labels == 0))
    abnormal = check.select(np.flatnonzero(check.labels != 0)).join(anomalies)

    def rows(units: Units, mask: np.ndarray) -> int:
        return round(float(units.weights[mask].sum()))

    return CheckResult(
        normal_sessions=rows(normal, np.ones(len(normal), bool)),
        false_positives=rows(normal, _predicted(trained, normal) != 0),
        anomalies=rows(abnormal, np.ones(len(abnormal), bool)),
        detected=rows(abnormal, _predicted(trained, abnormal) != 0),
        feedback_sessions=len(feedback),
        feedback_flagged=int((_predicted(trained, feedback) != feedback.labels).sum()),
    )
