"""Errors of the operations commands, importable without their dependencies (torch), so the
CLI can report them as one line."""

from __future__ import annotations


class RetrainError(RuntimeError):
    """A retrain or rollback that cannot go ahead; the serving version is untouched."""


class NothingToLearn(RetrainError):
    """No pending feedback for this model."""


class LoadFailed(RetrainError):
    """The server refused the new version; the old one is still serving."""


class NotEnoughData(RuntimeError):
    """A training log that yields too few sessions to learn from (often: the wrong format)."""


class LabelsError(ValueError):
    """A labels file that cannot be read as labels; one line naming the file and the problem."""
