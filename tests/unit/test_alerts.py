"""Alerts are JSON lines a person (and a pager) can act on."""

import json

from client.alerts import KeyAlert, alert_from_json, alert_id, alert_record, key_reason, key_ref
from export.contract.vocab import END, UNKNOWN, KeyVocabulary

VOCAB = KeyVocabulary(names=("E5", "E22"), templates=("Receiving block <*>", "Served block <*>"))


def test_an_alert_names_the_session_position_actual_and_expected_keys():
    alert = KeyAlert(
        session="blk_1",
        position=4,
        line=120,
        reason=key_reason(4),
        actual=key_ref(VOCAB, 4),
        rank=2,
        expected=(key_ref(VOCAB, 3, 0.9), key_ref(VOCAB, END, 0.1)),
        model="deeplog_keys",
        model_version=2,
    )
    data = json.loads(json.dumps(alert_record(alert)))
    assert data["id"] == alert_id(alert) and data["check"] == "log_key"
    assert data["session"] == "blk_1" and data["position"] == 4 and data["line"] == 120
    assert data["actual"] == {
        "key": 4,
        "name": "E22",
        "template": "Served block <*>",
        "probability": None,
    }
    assert [e["template"] for e in data["expected"]] == ["Receiving block <*>", "<end>"]
    assert data["reason"] == "not_in_top_g" and data["model_version"] == 2
    assert "blk_1" in alert.headline() and "E5 0.90" in alert.headline()


def test_an_unknown_key_has_its_own_reason():
    assert key_reason(UNKNOWN) == "unknown_key"
    assert key_ref(VOCAB, UNKNOWN).name == "<unknown>"


def test_an_alert_read_back_from_its_json_is_the_same_typed_alert():
    alert = KeyAlert("blk_1", 0, 3, key_reason(UNKNOWN), key_ref(VOCAB, UNKNOWN), 9, (), "m", 1)
    again = alert_from_json(json.loads(json.dumps(alert_record(alert))))
    assert again == alert and alert_id(again) == alert_id(alert)
