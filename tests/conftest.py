"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from export.hdfs_data import DataMissing, data_dir

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def hdfs_dir() -> Path:
    """../shared/data/hdfs, or a skip that says what is missing."""
    try:
        return data_dir()
    except DataMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def loghub_dir() -> Path:
    folder = SHARED_DATA / "loghub"
    if not folder.is_dir():
        pytest.skip(f"{folder} is missing: the loghub samples live in ../shared/data")
    return folder
