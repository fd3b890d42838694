"""Precision, recall and F1: per class, macro, and for "any anomaly" against normal."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def precision_recall_f1(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """The three figures, 0.0 where a denominator is empty."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


@dataclass(frozen=True)
class ClassScore:
    label: str
    support: float  # weighted count of units truly of this class
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class Scores:
    per_class: tuple[ClassScore, ...]
    macro_f1: float  # mean F1 over the classes present in the truth
    anomaly: tuple[float, float, float]  # P, R, F1 of "not normal" (class 0) vs normal
    accuracy: float
    false_positive_rate: float  # share of the truly normal units called anything else

    def line(self) -> str:
        """The figures in one line: any anomaly against normal first (recall, false-positive
        rate, precision), then macro F1 and each class's P/R/F1."""
        precision, recall, _ = self.anomaly
        classes = ", ".join(
            f"{c.label} {c.precision:.2f}/{c.recall:.2f}/{c.f1:.2f}"
            for c in self.per_class
            if c.support
        )
        return (
            f"anomalies: recall {recall:.3f}, false-positive rate {self.false_positive_rate:.3f}, "
            f"precision {precision:.3f}; macro F1 {self.macro_f1:.3f} (P/R/F1: {classes})"
        )


def classification_scores(
    truth: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...], weights: np.ndarray
) -> Scores:
    """Scores of ``predicted`` class ids against ``truth``; a unit counts ``weights[i]`` times
    (deduplicated units stand for all their copies). Class 0 is normal."""
    per_class = []
    for c, label in enumerate(classes):
        tp = float(weights[(predicted == c) & (truth == c)].sum())
        fp = float(weights[(predicted == c) & (truth != c)].sum())
        fn = float(weights[(predicted != c) & (truth == c)].sum())
        per_class.append(ClassScore(label, tp + fn, *precision_recall_f1(tp, fp, fn)))
    present = [s.f1 for s in per_class if s.support > 0]
    flagged, abnormal = predicted != 0, truth != 0
    anomaly = precision_recall_f1(
        float(weights[flagged & abnormal].sum()),
        float(weights[flagged & ~abnormal].sum()),
        float(weights[~flagged & abnormal].sum()),
    )
    accuracy = float(weights[predicted == truth].sum() / max(weights.sum(), 1e-12))
    normal = float(weights[~abnormal].sum())
    fpr = float(weights[flagged & ~abnormal].sum()) / normal if normal else 0.0
    macro = float(np.mean(present)) if present else 0.0
    return Scores(tuple(per_class), macro, anomaly, accuracy, fpr)
