"""Classification figures state the false-positive rate and recall, not only F1."""

from __future__ import annotations

import numpy as np

from export.metrics import classification_scores

CLASSES = ("normal", "disk_full", "slow")


def test_the_false_positive_rate_is_the_share_of_normal_units_called_anything_else():
    truth = np.array([0, 0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 0, 2, 1, 2, 2])
    scores = classification_scores(truth, predicted, CLASSES, np.ones(7))
    assert scores.false_positive_rate == 0.25
    assert scores.anomaly[1] == 1.0  # every abnormal unit flagged, whatever its class
    line = scores.line()
    assert "recall 1.000, false-positive rate 0.250" in line
    assert "disk_full 1.00/0.50/0.67" in line


def test_weights_count_a_deduplicated_unit_for_all_its_copies():
    truth, predicted = np.array([0, 0, 1]), np.array([1, 0, 1])
    scores = classification_scores(truth, predicted, CLASSES, np.array([1.0, 9.0, 1.0]))
    assert scores.false_positive_rate == 0.1
