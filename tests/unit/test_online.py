"""DeepLog's online update: a fed-back false positive stops being flagged, and replayed normal
windows keep the model from forgetting what it knew."""

import os
import subprocess
import sys

import numpy as np
import pytest

from export.contract.specs import DEEPLOG_KEYS
from export.contract.vocab import KeyVocabulary
from export.contract.windows import windows_of_sessions
from export.deeplog_keys import KeyModelConfig, train_key_model
from export.online import (
    Acceptance,
    CheckResult,
    UpdateConfig,
    check_model,
    online_update,
    refusals,
    weight_of,
)
from export.publish import KeyVersion, RetrainData, publish_key_model
from export.repository import prune_versions, retire_version, retired_versions, versions

CONFIG = KeyModelConfig(window=3, top_g=2, hidden=32, layers=1, embedding=8, epochs=30)
VOCAB = KeyVocabulary(names=tuple(f"K{i}" for i in range(8)), templates=tuple("abcdefgh"))
NORMAL = [3, 4, 5, 6, 7, 8]  # every normal session
RARE = [3, 4, 8, 6, 7, 5]  # a normal but unseen order (8 after 3 4): DeepLog flags it
BROKEN = [3, 9, 9, 9]  # a key normal sessions never hold: a real anomaly


@pytest.fixture(scope="module")
def trained():
    model, _ = train_key_model([NORMAL] * 200, VOCAB.size, CONFIG, progress=False)
    return model


def _check(model) -> CheckResult:
    return check_model(model, 2, CONFIG.window, True, [NORMAL] * 10, [BROKEN], [RARE])


def test_the_update_learns_the_false_positive_and_keeps_the_rest(trained):
    before = _check(trained)
    assert (before.false_positives, before.detected, before.feedback_flagged) == (0, 1, 1)
    x, y = windows_of_sessions([NORMAL] * 50, CONFIG.window)
    updated, report = online_update(
        trained,
        [RARE],
        x,
        y,
        CONFIG.window,
        True,
        UpdateConfig(epochs=10, batch_size=32),
        progress=False,
    )
    after = _check(updated)
    assert after.feedback_flagged == 0
    assert (after.false_positives, after.detected) == (0, 1)
    assert refusals(before, after, Acceptance()) == []
    assert report.feedback_sessions == 1 and report.replay_windows > 0
    assert _check(trained) == before, "the serving model itself is left untouched"


def test_a_model_that_lost_recall_or_gained_false_positives_is_refused():
    before = CheckResult(100, 1, 50, 50, 2, 2)
    worse = CheckResult(100, 4, 50, 45, 2, 0)
    reasons = refusals(before, worse, Acceptance())
    assert len(reasons) == 2
    assert "recall on 50 known anomalies fell from 1.0000 to 0.9000" in reasons[0]
    assert "rose from 1 to 4" in reasons[1]
    assert refusals(before, worse, Acceptance(0.2, 0.05)) == []


def test_a_version_keeps_what_a_retrain_continues_from(trained, tmp_path):
    retrain = RetrainData.from_training([NORMAL] * 200, [], CONFIG)
    version = publish_key_model(trained, CONFIG, 2, VOCAB, tmp_path, retrain, {})
    loaded = KeyVersion.load(tmp_path, version)
    assert loaded.config == CONFIG and loaded.meta.top_g == 2
    assert _check(loaded.model) == _check(trained)
    assert len(loaded.retrain.replay_windows) == len(retrain.replay_windows)
    assert loaded.retrain.check_normal[0] == NORMAL
    assert loaded.retrain.workflow_sessions == [NORMAL] * 200


def test_a_retrained_version_s_workflow_keeps_the_old_one_s_and_adds_what_was_fed_back(
    trained, tmp_path
):
    first = RetrainData.from_training([NORMAL] * 200, [], CONFIG)
    version = publish_key_model(trained, CONFIG, 2, VOCAB, tmp_path, first, {})
    loaded = KeyVersion.load(tmp_path, version)
    grown = RetrainData(
        loaded.retrain.replay_windows,
        loaded.retrain.replay_keys,
        loaded.retrain.check_normal,
        loaded.retrain.check_source,
        loaded.retrain.with_normal([RARE]),
    )
    retrained = publish_key_model(trained, CONFIG, 2, VOCAB, tmp_path, grown, {})
    (task,) = KeyVersion.load(tmp_path, retrained).meta.workflow.tasks
    assert task.edge(4, 5).count == 200 and task.edge(4, 8).count == 1  # the old, and the new


def test_the_sessions_a_workflow_is_built_of_are_capped_keeping_the_fed_back_ones(monkeypatch):
    monkeypatch.setattr("export.publish.WORKFLOW_SESSIONS", 50)
    data = RetrainData.from_training([NORMAL] * 200, [], CONFIG)
    assert len(data.workflow_sessions) == 50
    grown = data.with_normal([RARE] * 10)
    assert len(grown) == 50 and grown[-10:] == [RARE] * 10


def test_retired_numbers_are_never_reused_and_pruning_keeps_the_newest(trained, tmp_path):
    retrain = RetrainData.from_training([NORMAL] * 20, [], CONFIG)
    for _ in range(3):
        publish_key_model(trained, CONFIG, 2, VOCAB, tmp_path, retrain, {}, keep=0)
    assert versions(tmp_path, DEEPLOG_KEYS.name) == [1, 2, 3]
    retire_version(tmp_path, DEEPLOG_KEYS.name, 3)
    assert retired_versions(tmp_path, DEEPLOG_KEYS.name) == [3]
    assert publish_key_model(trained, CONFIG, 2, VOCAB, tmp_path, retrain, {}, keep=0) == 4
    assert prune_versions(tmp_path, DEEPLOG_KEYS.name, 2) == [1]
    assert versions(tmp_path, DEEPLOG_KEYS.name) == [2, 4]


def test_a_staging_folder_left_by_a_killed_writer_is_removed(trained, tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    abandoned = tmp_path / DEEPLOG_KEYS.name / f".staging-1-{int(dead.stdout)}"
    abandoned.mkdir(parents=True)
    mine = tmp_path / DEEPLOG_KEYS.name / f".staging-9-{os.getppid()}"
    mine.mkdir()
    retrain = RetrainData.from_training([NORMAL] * 20, [], CONFIG)
    assert publish_key_model(trained, CONFIG, 2, VOCAB, tmp_path, retrain, {}) == 1
    assert not abandoned.exists() and mine.exists(), "a live writer's staging folder stays"
    assert np.all(versions(tmp_path, DEEPLOG_KEYS.name) == [1])


def test_a_model_that_flags_recent_traffic_the_serving_version_passed_is_refused():
    # The held-out training sessions look fine; the traffic says otherwise.
    before = CheckResult(334, 0, 0, 0, 1, 1, traffic_sessions=500, traffic_flagged=0)
    worse = CheckResult(334, 0, 0, 0, 1, 0, traffic_sessions=500, traffic_flagged=12)
    (reason,) = refusals(before, worse, Acceptance())
    assert "of 500 recent traffic sessions the serving version judged normal" in reason
    assert "it flags 12 (the serving version 0" in reason
    assert refusals(before, worse, Acceptance(max_false_positive_rise=0.03)) == []


def test_fed_back_windows_weigh_twenty_replayed_ones_but_never_outweigh_the_replay():
    assert weight_of(25, 21_000, 20) == 20  # one session fed back: seen 20 times an epoch
    assert weight_of(2_000, 21_000, 20) == 10
    assert weight_of(32_000, 21_000, 20) == 1  # a new template's sessions by the thousand
