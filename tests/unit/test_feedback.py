"""The feedback store: alerts recorded with their sessions, one verdict per alert, durable."""

import sqlite3

import pytest

from client.alerts import DiagnosisAlert, KeyAlert, KeyReason, KeyRef, alert_id
from client.cli import main
from client.feedback import CONFIRMED, FALSE_POSITIVE, FeedbackError, FeedbackStore


def _alert(session: str, position: int = 3) -> KeyAlert:
    ref = KeyRef(5, "T3", "Receiving block <*>")
    return KeyAlert(
        session, position, 10 + position, KeyReason.NOT_IN_TOP_G, ref, 7, (ref,), "deeplog_keys", 2
    )


@pytest.fixture
def store(tmp_path):
    with FeedbackStore(tmp_path / "state" / "feedback.sqlite") as s:
        s.record([_alert("blk_1"), _alert("blk_2")], {"blk_1": [3, 5, 6], "blk_2": [3, 4]}, "fp1")
        yield s


def test_an_alert_is_stored_with_its_session_and_the_version_that_raised_it(store):
    stored = store.alert(alert_id(_alert("blk_1")))
    assert (stored.session, stored.model, stored.model_version) == ("blk_1", "deeplog_keys", 2)
    assert stored.session_keys == [3, 5, 6] and stored.vocabulary == "fp1"
    assert stored.alert == _alert("blk_1")  # read back as the typed alert it was


def test_the_same_alert_recorded_twice_is_stored_once(store):
    assert store.record([_alert("blk_1")], {"blk_1": [3, 5, 6]}, "fp1") == 0
    assert len(store.alerts()) == 2


def test_feedback_is_kept_with_a_timestamp_and_is_pending_until_used(store):
    given = store.give(alert_id(_alert("blk_1")), FALSE_POSITIVE)
    assert given.verdict == FALSE_POSITIVE and given.given_at and given.used_in is None
    assert [f.id for f in store.pending("deeplog_keys")] == [given.id]
    store.mark_used([given.id], "deeplog_keys v3")
    assert store.pending() == []


def test_unknown_and_duplicate_feedback_are_clear_errors(store):
    with pytest.raises(FeedbackError, match="no alert 'nope'"):
        store.give("nope", FALSE_POSITIVE)
    store.give(alert_id(_alert("blk_2")), CONFIRMED)
    with pytest.raises(FeedbackError, match="already has feedback \\(confirmed"):
        store.give(alert_id(_alert("blk_2")), FALSE_POSITIVE)
    with pytest.raises(FeedbackError, match="only a diagnosis takes a class"):
        store.give(alert_id(_alert("blk_1")), CONFIRMED, label="truncated")


def _diagnosis(session: str) -> DiagnosisAlert:
    probabilities = {"normal": 0.2, "write_exception": 0.7, "truncated": 0.1}
    return DiagnosisAlert(
        session, "write_exception", 0.7, probabilities, (), (4,), "log_anomaly", 1
    )


def test_a_diagnosis_takes_another_class_of_its_model_only_when_confirmed(store):
    store.record([_diagnosis("blk_9"), _diagnosis("blk_8")], {"blk_9": [3], "blk_8": [4]}, "a1")
    nine, eight = alert_id(_diagnosis("blk_9")), alert_id(_diagnosis("blk_8"))
    with pytest.raises(FeedbackError, match="'slow' is not a class of log_anomaly v1: one of"):
        store.give(nine, CONFIRMED, label="slow")
    with pytest.raises(FeedbackError, match=r"mark alert \w+ a false positive"):
        store.give(nine, CONFIRMED, label="normal")
    with pytest.raises(FeedbackError, match="confirm it with --label"):
        store.give(nine, FALSE_POSITIVE, label="truncated")
    assert store.give(nine, CONFIRMED, label="truncated").label == "truncated"
    assert store.give(eight, FALSE_POSITIVE).label is None


def test_the_store_is_a_wal_database_that_survives_reopening(store):
    given = store.give(alert_id(_alert("blk_1")), FALSE_POSITIVE)
    store.close()
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    with FeedbackStore(store.path) as again:
        assert [f.id for f in again.pending()] == [given.id]


def test_the_cli_reports_a_bad_alert_id_in_one_line(store, capsys):
    store.close()
    assert main(["feedback", "--store", str(store.path), "false-positive", "nope"]) == 1
    assert "no alert 'nope'" in capsys.readouterr().err
    ok = alert_id(_alert("blk_1"))
    assert main(["feedback", "--store", str(store.path), "false-positive", ok]) == 0
    assert main(["feedback", "--store", str(store.path), "false-positive", ok]) == 1
    assert "already has feedback" in capsys.readouterr().err


def test_the_traffic_judged_normal_is_a_bounded_sample_of_the_newest_sessions(store):
    for start in range(0, 30, 10):
        batch = [(f"blk_{i}", [3, 4, i]) for i in range(start, start + 10)]
        store.keep_normal(batch, "deeplog_keys", 1, "vocab-a", limit=25)
    store.keep_normal([("other", [5])], "deeplog_keys", 1, "vocab-b", limit=25)
    kept = store.traffic_normal("vocab-a")
    assert len(kept) == 25 and kept[0] == [3, 4, 5] and kept[-1] == [3, 4, 29]
    assert store.traffic_normal("vocab-b") == [[5]]


def test_feedback_list_shows_check_reason_template_session_and_where_and_filters(store, capsys):
    path = str(store.path)
    store.record([_diagnosis("blk_9")], {"blk_9": [3, 4]}, "fp1")
    store.close()
    assert main(["feedback", "list", "--store", path]) == 0  # --store after the action too
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:6] == ["ALERT", "CHECK", "REASON", "TEMPLATE", "SESSION", "WHERE"]
    row = next(line for line in out if "blk_1" in line)
    assert "not_in_top_g" in row and "Receiving block <*>" in row and "key #3, line 13" in row
    assert any("write_exception (p=0.70)" in line and "blk_9" in line for line in out)
    assert main(["feedback", "--store", path, "list", "--session", "blk_2"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 1 and "blk_2" in rows[0]
    assert main(["feedback", "list", "--store", path, "--check", "diagnosis"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 1 and "blk_9" in rows[0]


def _unknown(session: str, name: str, template: str, indexes: tuple[int, ...]) -> KeyAlert:
    ref = KeyRef(1, name, template)
    return KeyAlert(
        session, indexes[0], 40, KeyReason.UNKNOWN_KEY, ref, 0, (), "deeplog_keys", 2,
        repeats=len(indexes), key_indexes=indexes,
    )  # fmt: skip


def test_a_template_marked_normal_answers_every_alert_of_it_at_once_by_name_or_alert(store):
    reads = [
        _unknown(f"blk_{i}", "new-0badcafe", "Served block blk_<*> to <*>", (1, 4)) for i in (5, 6)
    ]
    other = _unknown("blk_7", "new-12345678", "Starting thread to transfer block", (2,))
    store.record(
        [*reads, other], {"blk_5": [3, 1, 4, 4, 1], "blk_6": [3, 1, 1], "blk_7": [3, 4, 1]}, "fp1"
    )
    assert alert_id(reads[0]) == alert_id(
        KeyAlert(**{**reads[0].__dict__, "repeats": 1, "key_indexes": ()})
    )
    marked = store.mark_template_normal("new-0badcafe")
    assert (marked.template, marked.alerts, marked.vocabulary) == (
        "Served block blk_<*> to <*>",
        2,
        "fp1",
    )
    pending = store.pending()
    assert {f.alert.session for f in pending} == {"blk_5", "blk_6"}
    assert pending[0].alert.alert.key_indexes == (1, 4)  # where the retrain puts the new key
    assert store.mark_template_normal(alert_id(other)).alerts == 1  # by one of its alerts' id
    assert [t.name for t in store.normal_templates("fp1", pending=True)] == [
        "new-0badcafe",
        "new-12345678",
    ]
    store.mark_templates_used([marked.id], "deeplog_keys v3")
    assert [t.name for t in store.normal_templates("fp1", pending=True)] == ["new-12345678"]
    with pytest.raises(FeedbackError, match="no unknown-template alert or template named 'T3'"):
        store.mark_template_normal("T3")
