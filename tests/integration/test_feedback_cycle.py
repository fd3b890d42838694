"""The feedback cycle against a running server: an operator flags a false positive, retrain
publishes a new version that the server loads while it serves, and the session passes."""

from __future__ import annotations

import json
import threading
import time

import pytest

from client.cli import main
from client.demo import DemoConfig
from client.detection import open_key_model
from client.training import train_and_publish
from client.triton_client import TritonClient
from client.workload import WorkloadConfig, generate_workload
from export.deeplog_keys import KeyModelConfig
from export.repository import versions
from export.specs import DEEPLOG_KEYS
from export.windows import session_windows
from server_config.launcher import TritonServer


@pytest.fixture(scope="module")
def served(tmp_path_factory, demo_corpus):
    """Its own repository and server: retrains here prune versions other tests are bound to."""
    repository = tmp_path_factory.mktemp("feedback_repository")
    demo = DemoConfig()
    config = KeyModelConfig(top_g=demo.top_g, epochs=demo.epochs, seed=demo.seed)
    train_and_publish(
        demo_corpus.sessions, demo_corpus.vocabulary, repository, config, "workload", False
    )
    with TritonServer(repository) as server:
        yield repository, server


@pytest.fixture(scope="module")
def normal_log(tmp_path_factory):
    """Normal blocks only: every alert on them is a false positive."""
    workload = generate_workload(WorkloadConfig(1500, 0.0, seed=11))
    path = tmp_path_factory.mktemp("logs") / "normal.log"
    path.write_bytes(b"\n".join(workload.lines) + b"\n")
    return path


def _detect(capsys, log, url, repository, store) -> list[dict]:
    argv = ["detect", str(log), "--url", url, "--repository", str(repository)]
    assert main([*argv, "--store", str(store), "--no-asgnet"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


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
    assert (
        main(["retrain", "--url", url, "--repository", str(repository), "--store", str(store)]) == 0
    )
    report = capsys.readouterr().out
    assert f"v{old_version} -> v{old_version + 1}" in report

    only_session = tmp_path / "session.log"
    lines = [line for line in normal_log.read_bytes().splitlines() if session.encode() in line]
    only_session.write_bytes(b"\n".join(lines) + b"\n")
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
    model = open_key_model(triton, repository)
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
