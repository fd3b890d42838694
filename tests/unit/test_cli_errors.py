"""Everything a user can get wrong is one line on stderr and exit code 1, never a traceback:
run as a user runs it, in a process of its own."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from client.feedback import FeedbackStore, StoreError

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    err = result.stderr
    assert result.returncode == 1, (result.returncode, err)
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("error: "), err
    for word in words:
        assert word in err, err
    return err


def test_training_on_a_log_of_another_format_says_what_matched_and_shows_a_line(tmp_path):
    log = tmp_path / "app.log"
    lines = [f"2026-12-01T10:00:{i:02d} web-1 GET /index.html 200" for i in range(30)]
    lines.append("089999 256199 1 INFO dfs.DataNode: Receiving block blk_1 src: /1.2.3.4:5")
    log.write_text("\n".join(lines) + "\n")
    result = _run("train", str(log), "--repository", str(tmp_path / "repo"))
    _one_line_error(
        result,
        "0 session(s) from 31 lines, 0 of which match the hdfs format",
        "training needs at least 5",
        "line 1 (no_header): '2026-12-01T10:00:00 web-1 GET /index.html 200'",
    )
    assert "bad_time 1" in result.stdout  # the impossible date is counted, not a crash


def _store_with_alerts(path: Path, rows: int = 2000) -> Path:
    store = FeedbackStore(path)
    store._db.executemany(
        "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(str(i), "log_key", "s", "m", 1, "{}" * 100, "[]", "v", "t") for i in range(rows)],
    )
    store._db.commit()
    store.close()
    return path


def _corrupt(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def _truncated(path: Path) -> None:
    _store_with_alerts(path)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (_corrupt, ("is not a readable feedback store", "restore it from a backup")),
        (_truncated, ("is not a readable feedback store", "corrupt or truncated")),
        (_empty, ("is an empty file", "remove it to start a new store")),
    ],
)
def test_a_broken_feedback_store_is_one_line_naming_the_file_and_what_to_do(
    tmp_path, damage, words
):
    store = tmp_path / "feedback.sqlite"
    damage(store)
    before = store.read_bytes()
    result = _run("feedback", "--store", str(store), "list")
    assert str(store) in _one_line_error(result, *words)
    assert store.read_bytes() == before  # nothing in it was changed


def test_a_read_only_feedback_store_is_one_line(capsys):
    from client.cli import main

    folder = Path(tempfile.mkdtemp(prefix="read-only-store-"))  # reachable by every user
    folder.chmod(0o755)
    store = _store_with_alerts(folder / "feedback.sqlite", rows=1)
    store.chmod(0o444)
    # Root writes read-only files; the run is made as a user who cannot (root's interpreter
    # is out of other users' reach, so in this process, with its effective user switched).
    as_root = os.geteuid() == 0
    if as_root:
        os.seteuid(NOBODY)
    try:
        code = main(["feedback", "--store", str(store), "false-positive", "0"])
    finally:
        if as_root:
            os.seteuid(0)
        shutil.rmtree(folder)
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert str(store) in err and "cannot be written" in err and "--store" in err


def test_a_store_locked_too_long_by_another_writer_is_one_line(tmp_path):
    path = _store_with_alerts(tmp_path / "feedback.sqlite", rows=1)
    other = sqlite3.connect(path)
    other.execute("BEGIN EXCLUSIVE")
    store = FeedbackStore(path, timeout_s=0.2)
    with pytest.raises(StoreError) as failure:
        store.mark_used([1], "deeplog_keys v2")  # a write: waits for the lock, then gives up
    other.rollback()
    message = str(failure.value)
    assert "is locked by another process" in message and "\n" not in message
