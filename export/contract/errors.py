"""Errors both sides of the wire raise: the client runtime and the exporters."""

from __future__ import annotations


class VersionMismatch(RuntimeError):
    """Metadata (vocabulary, thresholds) paired with a model version it does not belong to."""
