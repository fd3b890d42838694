"""ASGNet learning operator feedback: a release keeps the state a fine-tune continues from, the
fine-tune gives fed-back units the operator's class and keeps what the release knew, and the
check counts what a retrain is refused on."""

from collections import Counter

import numpy as np
import pytest

from export.asgnet import Units, predict
from export.asgnet_state import load_state
from export.asgnet_update import (
    AsgnetUpdateConfig,
    check_asgnet,
    finetune_asgnet,
    with_feedback,
)
from export.log_tokenizer import encode
from export.publish_asgnet import publish_asgnet


@pytest.fixture(scope="module")
def release(tiny_asgnet, tmp_path_factory):
    trained, (train, validation, _) = tiny_asgnet
    repository = tmp_path_factory.mktemp("asgnet_state")
    version = publish_asgnet(trained, train, repository, check=validation)
    return load_state(repository, version)


def _relabelled(trained, units: Units, others: Units, count: int) -> Units:
    """``count`` abnormal units called normal, as an operator marking diagnoses false positives
    would. Only units whose S-Net input (text cut to max_length tokens) no other unit shares:
    the rest cannot be told apart from the anomalies they look like, whatever the fine-tune."""
    ids = encode(trained.tokenizer, units.join(others).texts(trained.vocabulary))[0]
    seen = Counter(map(bytes, ids))
    rows = [i for i in np.flatnonzero(units.labels != 0) if seen[bytes(ids[i])] == 1][:count]
    picked = units.select(np.array(rows))
    return Units(picked.keys, 0 * picked.labels, np.ones(count, np.float32), picked.names)


def test_a_published_release_rebuilds_as_it_was_trained(tiny_asgnet, release):
    trained, (train, validation, test) = tiny_asgnet
    np.testing.assert_array_equal(
        predict(release.trained, test).gated, predict(trained, test).gated
    )
    assert release.trained.classes == trained.classes
    assert release.trained.config == trained.config
    assert release.indexed.keys == train.keys and release.check.names == validation.names
    np.testing.assert_array_equal(release.check.weights, validation.weights)


def test_a_release_without_state_is_a_clear_error(tmp_path):
    (tmp_path / "asgnet_gnet" / "3").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="keeps no training state"):
        load_state(tmp_path, 3)


def test_replayed_units_with_the_fed_back_keys_take_the_operators_class():
    replay = Units(
        ((3, 4), (3, 5), (6,)), np.array([1, 0, 0]), np.array([9.0, 2, 1]), ("a", "b", "c")
    )
    feedback = Units(((3, 4),), np.array([0]), np.array([1.0]), ("feedback #1",))
    units, dropped = with_feedback(replay, feedback)
    assert dropped == 1
    assert units.keys == ((3, 5), (6,), (3, 4)) and units.labels.tolist() == [0, 0, 0]
    assert units.names[-1] == "feedback #1"


def test_fine_tuning_gives_fed_back_units_their_class_and_replay_keeps_the_rest(
    tiny_asgnet, release
):
    _, (_, _, test) = tiny_asgnet
    feedback = _relabelled(release.trained, test, release.indexed, 3)
    before = predict(release.trained, test).gated.argmax(1)
    config = AsgnetUpdateConfig()
    updated, report = finetune_asgnet(
        release.trained, release.indexed, feedback, config, progress=False
    )
    assert (report.feedback_units, report.replay_units) == (3, len(release.indexed))
    assert predict(updated, feedback).gated.argmax(1).tolist() == feedback.labels.tolist()
    # The rest of the test split: replaying the training units keeps far more of the release's
    # diagnoses than learning the feedback alone (which calls nearly everything normal).
    others = np.array([i for i, keys in enumerate(test.keys) if keys not in feedback.keys])
    alone, _ = finetune_asgnet(release.trained, Units.empty(), feedback, config, progress=False)
    kept = (predict(updated, test).gated.argmax(1) == before)[others].mean()
    forgot = (predict(alone, test).gated.argmax(1) == before)[others].mean()
    assert kept > forgot + 0.2, (kept, forgot)
    # The release itself is untouched: the fine-tune works on a copy.
    np.testing.assert_array_equal(predict(release.trained, test).gated.argmax(1), before)


def test_the_check_counts_rows_of_known_normal_and_abnormal_units_and_fed_back_ones(
    tiny_asgnet, release
):
    _, (_, _, test) = tiny_asgnet
    trained = release.trained
    feedback = _relabelled(release.trained, test, release.indexed, 2)
    confirmed = test.select(np.flatnonzero(test.labels != 0))
    result = check_asgnet(trained, release.check, confirmed, feedback)
    check = release.check
    predicted = predict(trained, check).gated.argmax(1)
    normal = check.labels == 0
    assert result.normal_sessions == round(check.weights[normal].sum())
    assert result.false_positives == round(check.weights[normal & (predicted != 0)].sum())
    assert result.anomalies == round(check.weights[~normal].sum() + confirmed.weights.sum())
    assert result.feedback_sessions == 2
    assert (
        result.feedback_flagged
        == (predict(trained, feedback).gated.argmax(1) != feedback.labels).sum()
    )
