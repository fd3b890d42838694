"""The feedback cycle against a running server: an operator flags a false positive, retrain
publishes a new version that the server loads while it serves, and the session passes."""

from __future__ import annotations

import functools
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from client.alerts import Check, KeyAlert, KeyReason, KeyRef, alert_id
from client.cli import main
from client.detection import PartResult, open_key_model
from client.feedback import FALSE_POSITIVE, FeedbackStore
from client.log_anomaly import SessionDetector, open_log_anomaly
from client.ops.demo import DemoConfig
from client.ops.retrain import LoadFailed, swap_in
from client.ops.training import labelled_units, train_and_publish, train_and_publish_asgnet
from client.ops.workload import ANOMALY_TYPES, WorkloadConfig, generate_workload
from client.triton_client import TritonClient
from export.contract.errors import VersionMismatch
from export.contract.metas import AsgnetMeta, IndexedUnit, KeyModelMeta
from export.contract.specs import DEEPLOG_KEYS, LOG_ANOMALY
from export.contract.units import NORMAL
from export.contract.vocab import KeyVocabulary
from export.contract.windows import session_windows
from export.deeplog_keys import KeyModelConfig
from export.publish_asgnet import ASGNET_MODELS
from export.repository import retired_versions, versions, write_config, write_meta_model
from server_config.launcher import TritonServer


@pytest.fixture(scope="module")
def served(tmp_path_factory, repository, workload_model):
    """Its own repository and server: retrains here prune versions other tests are bound to.
    It starts from a copy of the session's demo key model (the same training, done once)."""
    own = tmp_path_factory.mktemp("feedback_repository")
    version = str(workload_model.meta.version)
    write_config(own, DEEPLOG_KEYS)
    write_meta_model(own)
    shutil.copytree(repository / DEEPLOG_KEYS.name / version, own / DEEPLOG_KEYS.name / version)
    with TritonServer(own) as server:
        yield own, server


@pytest.fixture(scope="module")
def normal_log(tmp_path_factory):
    """Normal blocks only: every alert on them is a false positive."""
    workload = generate_workload(WorkloadConfig(1500, 0.0, seed=11))
    path = tmp_path_factory.mktemp("logs") / "normal.log"
    path.write_bytes(b"\n".join(workload.lines) + b"\n")
    return path


def _detect(capsys, log, url, repository, store, asgnet: bool = False) -> list[dict]:
    """``detect`` as a user runs it: the server's address only, no repository."""
    argv = ["detect", str(log), "--url", url, "--metrics-port", "0"]
    assert main([*argv, "--store", str(store), *([] if asgnet else ["--no-asgnet"])]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _meta(repository: Path, version: int) -> dict:
    return json.loads((repository / DEEPLOG_KEYS.name / str(version) / "meta.json").read_text())


def _session_log(log: Path, session: str, path: Path) -> Path:
    """One session's lines of ``log``."""
    lines = [line for line in log.read_bytes().splitlines() if session.encode() in line]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_a_flagged_normal_session_passes_after_feedback_and_retrain(
    served, normal_log, tmp_path, capsys
):
    repository, server = served
    url, store = server.grpc_url, tmp_path / "feedback.sqlite"
    alerts = _detect(capsys, normal_log, url, repository, store)
    assert alerts, "the model should flag some of 1,500 normal blocks (the demo flags 3 of 757)"
    first = alerts[0]
    session, old_version = first["session"], first["model_version"]

    assert main(["feedback", "--store", str(store), "false-positive", first["id"]]) == 0
    retrain = ["retrain", "--url", url, "--repository", str(repository), "--store", str(store)]
    # An update that makes production worse (far too strong a step) is refused with its
    # figures on the traffic detect kept, and nothing changes: same version, feedback pending.
    assert main([*retrain, "--learning-rate", "0.5"]) == 1
    refused = capsys.readouterr()
    assert "nothing published" in refused.out
    flagged = re.search(
        r"traffic sessions the serving version judged normal, it flags (\d+) "
        r"\(the serving version (\d+);",
        refused.err,
    )
    assert flagged and int(flagged[1]) > int(flagged[2]), refused.err
    assert versions(repository, DEEPLOG_KEYS.name)[-1] == old_version

    assert main(retrain) == 0
    report = capsys.readouterr().out
    assert f"v{old_version} -> v{old_version + 1}" in report
    # detect kept the blocks it judged normal; the new version was checked on them too.
    with FeedbackStore(store) as kept:
        fingerprint = KeyModelMeta.from_json(old_version, _meta(repository, old_version))
        traffic = kept.traffic_normal(fingerprint.vocabulary.fingerprint)
    assert 1000 < len(traffic) < 1500
    assert f"traffic judged normal flagged 0/{len(traffic)}" in report
    # The scenario: the new version, accepted, raises no more alerts on the same log.
    after = _detect(capsys, normal_log, url, repository, tmp_path / "after.sqlite")
    assert len({a["session"] for a in after}) <= len({a["session"] for a in alerts})

    only_session = _session_log(normal_log, session, tmp_path / "session.log")
    again = _detect(capsys, only_session, url, repository, tmp_path / "second.sqlite")
    assert [a for a in again if a["session"] == session] == []
    assert versions(repository, DEEPLOG_KEYS.name)[-1] == old_version + 1

    assert (
        main(["retrain", "--url", url, "--repository", str(repository), "--store", str(store)]) == 1
    )
    assert "no pending false-positive" in capsys.readouterr().err

    assert main(["rollback", "--url", url, "--repository", str(repository)]) == 0
    assert f"v{old_version + 1} retired, v{old_version} serving" in capsys.readouterr().out
    back = _detect(capsys, only_session, url, repository, tmp_path / "third.sqlite")
    assert {a["session"] for a in back} == {session}
    assert {a["model_version"] for a in back} == {old_version}


def test_requests_keep_being_answered_while_versions_are_swapped(served, demo_corpus):
    """A client sends sessions continuously while retrains load new versions and the policy
    unloads old ones: no request fails and every session gets exactly one verdict."""
    repository, server = served
    triton = TritonClient(server.grpc_url)
    model = open_key_model(triton)
    sessions = demo_corpus.sessions[:200]
    verdicts: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def client() -> None:
        n = 0
        while not stop.is_set():
            keys = sessions[n % len(sessions)]
            try:
                windows, next_keys = session_windows(keys, model.meta.window, model.meta.end_marker)
                scores = model.score(windows, next_keys)
                verdicts.setdefault(n, []).append(int(scores.version[0]))
            except BaseException as exc:
                errors.append(exc)
            n += 1

    thread = threading.Thread(target=client)
    thread.start()
    start_versions = triton.ready_versions(DEEPLOG_KEYS.name)
    demo = DemoConfig()
    config = KeyModelConfig(top_g=demo.top_g, epochs=1, seed=demo.seed)
    for _ in range(2):  # two swaps: the version served at the start is unloaded by the second
        version = train_and_publish(
            demo_corpus.sessions[:300], demo_corpus.vocabulary, repository, config, "swap", False
        )
        triton.load_model(DEEPLOG_KEYS.name)
        assert version in triton.ready_versions(DEEPLOG_KEYS.name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(v == [version] for v in verdicts.values()):
        time.sleep(0.05)  # let the client meet the newest version before it stops
    stop.set()
    thread.join(timeout=60)
    assert errors == []
    assert verdicts and all(len(v) == 1 for v in verdicts.values())
    answered_by = {v[0] for v in verdicts.values()}
    assert max(answered_by) == version, "the client moved on to the newest version"
    assert start_versions[-1] not in triton.ready_versions(DEEPLOG_KEYS.name)
    triton.close()


def _flag_one_false_positive(
    store: Path, repository: Path, version: int, keys: list[int], session: str = "blk_flagged"
) -> None:
    """An operator's false-positive verdict on a normal session the serving version flagged
    (written straight into the store: this test is about the interruption, not detection)."""
    meta = KeyModelMeta.load(repository, version)
    actual = KeyRef(keys[-1], meta.vocabulary.name(keys[-1]), "")
    alert = KeyAlert(
        session,
        len(keys) - 1,
        None,
        KeyReason.NOT_IN_TOP_G,
        actual,
        9,
        (),
        DEEPLOG_KEYS.name,
        version,
    )
    with FeedbackStore(store) as feedback:
        feedback.record([alert], {alert.session: keys}, meta.vocabulary.fingerprint)
        feedback.give(alert_id(alert), FALSE_POSITIVE)


def test_a_retrain_killed_midway_leaves_repository_and_serving_version_intact(
    served, demo_corpus, tmp_path
):
    repository, server = served
    store = tmp_path / "feedback.sqlite"
    triton = TritonClient(server.grpc_url)
    present = versions(repository, DEEPLOG_KEYS.name)
    serving = triton.ready_versions(DEEPLOG_KEYS.name)
    _flag_one_false_positive(store, repository, serving[-1], demo_corpus.sessions[0])
    argv = ["--url", server.grpc_url, "--repository", str(repository), "--store", str(store)]
    retrain = subprocess.Popen(
        [sys.executable, "-m", "client", "retrain", *argv],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    folder = repository / DEEPLOG_KEYS.name
    deadline = time.monotonic() + 180
    while not list(folder.glob(".staging-*")) and time.monotonic() < deadline:
        assert retrain.poll() is None, f"retrain ended first: {retrain.stderr.read().decode()}"
        time.sleep(0.005)
    retrain.send_signal(signal.SIGKILL)  # mid-export: the new version is half written
    retrain.wait(timeout=30)
    assert list(folder.glob(".staging-*")), "killed while writing, its staging folder remains"

    assert versions(repository, DEEPLOG_KEYS.name) == present
    assert triton.ready_versions(DEEPLOG_KEYS.name) == serving
    model = open_key_model(triton)
    windows, next_keys = session_windows([1, 2, 3], model.meta.window, model.meta.end_marker)
    assert model.score(windows, next_keys).version.tolist() == [serving[-1]] * len(next_keys)

    assert main(["retrain", *argv]) == 0, "the feedback is still pending; the next retrain runs"
    assert versions(repository, DEEPLOG_KEYS.name)[-1] > present[-1]
    assert not list(folder.glob(".staging-*")), "the dead writer's staging folder was removed"
    triton.close()


def test_a_version_the_server_refuses_is_retired_and_the_old_one_keeps_serving(served, tmp_path):
    repository, server = served
    triton = TritonClient(server.grpc_url)
    serving = triton.ready_versions(DEEPLOG_KEYS.name)[-1]
    broken = versions(repository, DEEPLOG_KEYS.name)[-1] + 1
    folder = repository / DEEPLOG_KEYS.name
    # As if a version passed its checks here but the server cannot load it (say, out of memory).
    shutil.copytree(folder / str(serving), folder / str(broken))
    (folder / str(broken) / DEEPLOG_KEYS.default_model_filename).write_bytes(b"not a model")

    with pytest.raises(LoadFailed, match=f"v{broken}.*v{serving} keeps serving"):
        swap_in(triton, repository, DEEPLOG_KEYS.name, broken)
    assert broken not in versions(repository, DEEPLOG_KEYS.name)
    assert broken in retired_versions(repository, DEEPLOG_KEYS.name)
    assert triton.ready_versions(DEEPLOG_KEYS.name)[-1] == serving
    model = open_key_model(triton)
    windows, next_keys = session_windows([1, 2, 3], model.meta.window, model.meta.end_marker)
    assert set(model.score(windows, next_keys).version.tolist()) == {serving}
    triton.close()


def test_watch_mode_retrains_once_n_new_false_positives_are_pending(served, demo_corpus, tmp_path):
    repository, server = served
    store = tmp_path / "feedback.sqlite"
    triton = TritonClient(server.grpc_url)
    serving = triton.ready_versions(DEEPLOG_KEYS.name)[-1]
    flag = functools.partial(_flag_one_false_positive, store, repository, serving)
    flag(demo_corpus.sessions[0], "blk_first")
    argv = ["--url", server.grpc_url, "--repository", str(repository), "--store", str(store)]
    watch = ["--watch", "2", "--interval", "0.2", "--cycles", "1"]
    watcher = subprocess.Popen(
        [sys.executable, "-m", "client", "retrain", *argv, *watch],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout.readline().startswith("watching")
        time.sleep(1.5)  # several polls with one item pending: nothing happens
        assert watcher.poll() is None
        assert triton.ready_versions(DEEPLOG_KEYS.name)[-1] == serving
        flag(demo_corpus.sessions[1], "blk_second")
        out, err = watcher.communicate(timeout=180)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err
    new = triton.ready_versions(DEEPLOG_KEYS.name)[-1]
    assert new > serving and f"v{serving} -> v{new}" in out
    assert "watch stopped after 1 retrain(s)" in out
    with FeedbackStore(store) as feedback:
        assert feedback.pending(DEEPLOG_KEYS.name) == [], "both items went into that one retrain"
    triton.close()


@pytest.fixture(scope="module")
def asgnet_served(served, demo_corpus, tiny_asgnet_config) -> int:
    """A small ASGNet trained on a labelled workload, published beside the key model and served
    through ``log_anomaly``; on normal blocks it diagnoses about one in ten abnormal."""
    repository, server = served
    diagnosable = tuple(t for t in ANOMALY_TYPES if t != "slow_transfer")
    classes = (NORMAL, *diagnosable)
    vocabulary = demo_corpus.vocabulary

    def units(blocks: int, seed: int):
        w = generate_workload(WorkloadConfig(blocks, 0.3, seed, anomaly_types=diagnosable))
        return labelled_units(w.lines, {b: t for b, t in w.truth.items() if t}, classes, vocabulary)

    train, validation = units(400, 21), units(150, 22)
    version = train_and_publish_asgnet(
        train, validation, vocabulary, classes, repository, tiny_asgnet_config, False
    ).version
    triton = TritonClient(server.grpc_url)
    triton.load_model(LOG_ANOMALY.name)
    triton.close()
    return version


def test_a_diagnosis_marked_false_positive_is_learnt_and_served_as_one_release(
    served, asgnet_served, normal_log, tmp_path, capsys
):
    repository, server = served
    url, store = server.grpc_url, tmp_path / "feedback.sqlite"
    alerts = _detect(capsys, normal_log, url, repository, store, asgnet=True)
    diagnoses = [a for a in alerts if a["check"] == "diagnosis"]
    assert diagnoses, "every block is normal, and the small ASGNet calls some of them abnormal"
    first, old = diagnoses[0], asgnet_served
    assert first["model_version"] == old

    feedback = ["feedback", "--store", str(store)]
    assert main([*feedback, "confirm", first["id"], "--label", "power_outage"]) == 1
    assert "'power_outage' is not a class of log_anomaly" in capsys.readouterr().err
    assert main([*feedback, "false-positive", first["id"]]) == 0
    triton = TritonClient(url)
    # A client started before the retrain (both models here speak the demo's key ids).
    running = SessionDetector(open_log_anomaly(triton, open_key_model(triton)))
    with FeedbackStore(store) as kept:
        keys = kept.alert(first["id"]).session_keys
    argv = ["--url", url, "--repository", str(repository), "--store", str(store)]
    # The small model's S-Net barely learnt, so a fine-tune swings its check-set diagnoses
    # (false positives 12 -> 40 of 97 rows here) and the default acceptance refuses it. This
    # test is about serving the fix; what replay keeps is tests/unit/test_asgnet_update.py's,
    # a refusal on real data is reports/feedback_asgnet_bgl.md's.
    assert main(["retrain", *argv, "--max-recall-drop", "1", "--max-fp-rise", "1"]) == 0
    report = capsys.readouterr().out
    assert f"asgnet: v{old} -> v{old + 1}" in report
    assert "fed-back items still flagged 0/1" in report

    for spec in ASGNET_MODELS:  # one release: all four at the new number, the old one beside
        assert triton.ready_versions(spec.name) == [old, old + 1], spec.name
    indexed = AsgnetMeta.load(repository, old + 1).indexed
    fed_back = [u for u in indexed if u.unit.startswith("feedback #")]
    assert fed_back == [IndexedUnit(fed_back[0].unit, NORMAL, 1)]

    session = _session_log(normal_log, first["session"], tmp_path / "session.log")
    again = _detect(capsys, session, url, repository, tmp_path / "second.sqlite", asgnet=True)
    assert [a for a in again if a["check"] == "diagnosis"] == []
    with FeedbackStore(store) as kept:
        assert kept.pending(LOG_ANOMALY.name) == []
    for position, key in enumerate(keys):
        running.push(first["session"], key, position)
    running.close(first["session"])
    assert [a for a in running.flush() if getattr(a, "check", None) is Check.DIAGNOSIS] == []
    assert running.model.meta.version == old + 1, "the running client moved to the new release"

    assert main(["rollback", "asgnet", "--url", url, "--repository", str(repository)]) == 0
    assert f"v{old + 1} retired, v{old} serving" in capsys.readouterr().out
    for spec in ASGNET_MODELS:
        assert triton.ready_versions(spec.name) == [old], spec.name
    back = _detect(capsys, session, url, repository, tmp_path / "third.sqlite", asgnet=True)
    assert [(a["label"], a["model_version"]) for a in back if a["check"] == "diagnosis"] == [
        (first["label"], old)
    ]
    triton.close()


def test_through_log_anomaly_each_answer_is_read_with_the_key_version_the_ensemble_ran(
    served, asgnet_served, demo_corpus, capsys
):
    """Run last in this file: it publishes two deeplog_keys versions, the second with other
    keys, and rolls that one back."""
    repository, server = served
    triton = TritonClient(server.grpc_url)
    old = triton.ready_versions(DEEPLOG_KEYS.name)[-1]
    running = SessionDetector(open_log_anomaly(triton, open_key_model(triton), load=False))
    demo = DemoConfig()
    config = KeyModelConfig(top_g=demo.top_g, epochs=1, seed=demo.seed)
    sessions, vocabulary = demo_corpus.sessions[:300], demo_corpus.vocabulary

    def publish(vocabulary: KeyVocabulary) -> int:
        version = train_and_publish(sessions, vocabulary, repository, config, "swap", False)
        triton.load_model(DEEPLOG_KEYS.name)
        return version

    def check(session: str) -> list:
        for position, key in enumerate(sessions[0]):
            running.push(session, key, position)
        running.close(session)
        return running.flush()

    retrained = publish(vocabulary)
    assert any(isinstance(r, PartResult) for r in check("blk_after_retrain"))
    # The answer was read with the version the ensemble ran, checked unchanged after it.
    assert running.model.key_meta.version == retrained
    with pytest.raises(VersionMismatch, match=f"runs the newest deeplog_keys, v{retrained}"):
        open_log_anomaly(triton, open_key_model(triton, old), load=False)

    other_keys = KeyVocabulary((*vocabulary.names, "X"), (*vocabulary.templates, "new <*>"))
    stranger = publish(other_keys)
    with pytest.raises(VersionMismatch, match=f"v{stranger} answered, but its vocabulary"):
        check("blk_after_new_keys")
    assert main(["rollback", "--url", server.grpc_url, "--repository", str(repository)]) == 0
    assert f"v{stranger} retired, v{retrained} serving" in capsys.readouterr().out
    triton.close()
