"""New templates after a deployment, against a real server: a template the version never
learnt raises one alert per session and template (its repeats counted on it), the operator
marks the template normal in one action, the retrain grows the vocabulary by it (old keys keep
their ids, the model's output layer grows) and the parser of the new version matches it.

The version is trained on a log whose blocks were never read nor re-replicated; the log
detected on reads and re-replicates some (templates the training never saw, a read often more
than once per block), all of it normal."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from benchmarks.evaluations.new_templates import before_deployment as without_new_behaviour
from client.cli import main
from client.detection import KeyModel
from client.feedback import FeedbackStore
from client.ops.demo import DemoConfig
from client.ops.training import learn_corpus, train_and_publish
from client.ops.workload import WorkloadConfig, generate_workload
from client.pipeline import detect_stream
from client.triton_client import TritonClient
from export.contract.metas import KeyModelMeta
from export.contract.specs import DEEPLOG_KEYS
from export.deeplog_keys import KeyModelConfig
from server_config.launcher import TritonServer


@pytest.fixture(scope="module")
def before_deployment(tmp_path_factory):
    """A key model trained on blocks that were never read nor re-replicated, served."""
    corpus = learn_corpus(
        without_new_behaviour(generate_workload(WorkloadConfig(800, 0.0, seed=21)).lines)
    )
    repository = tmp_path_factory.mktemp("new_templates_repository")
    demo = DemoConfig()
    config = KeyModelConfig(top_g=demo.top_g, epochs=demo.epochs, seed=demo.seed)
    train_and_publish(corpus.sessions, corpus.vocabulary, repository, config, "workload", False)
    with TritonServer(repository) as server:
        yield repository, server


@pytest.fixture(scope="module")
def after_deployment(tmp_path_factory):
    path = tmp_path_factory.mktemp("logs") / "after.log"
    path.write_bytes(b"\n".join(generate_workload(WorkloadConfig(600, 0.0, seed=22)).lines) + b"\n")
    return path


def _detect(capsys, log, url, store) -> tuple[list[dict], str]:
    argv = ["detect", str(log), "--url", url, "--metrics-port", "0", "--no-asgnet"]
    assert main([*argv, "--store", str(store)]) == 0
    out = capsys.readouterr()
    return [json.loads(line) for line in out.out.splitlines()], out.err


def _unknown(alerts: list[dict]) -> list[dict]:
    return [a for a in alerts if a.get("reason") == "unknown_key"]


def test_a_new_template_alerts_once_per_session_is_marked_normal_once_and_is_learnt(
    before_deployment, after_deployment, tmp_path, capsys
):
    repository, server = before_deployment
    url, store = server.grpc_url, tmp_path / "feedback.sqlite"
    alerts, summary = _detect(capsys, after_deployment, url, store)
    unknown = _unknown(alerts)
    per_session = Counter((a["session"], a["actual"]["name"]) for a in unknown)
    assert unknown and max(per_session.values()) == 1, "one alert per session and template"
    names = {a["actual"]["name"] for a in unknown}
    assert all(name.startswith("new-") for name in names)
    assert {a["actual"]["template"] for a in unknown} >= {
        "<*> Starting thread to transfer block blk_<*> to <*>"
    }
    # The stored alerts count every line of their template in the session.
    lines_unknown = int(re.search(r"(\d+) with an unknown key", summary)[1])
    with FeedbackStore(store) as kept:
        stored = [
            s.alert for s, _ in kept.alerts(limit=10_000) if s.id in {a["id"] for a in unknown}
        ]
    assert len(stored) == len(unknown)
    assert sum(a.repeats for a in stored) == lines_unknown > len(unknown)
    assert all(len(a.key_indexes) == a.repeats for a in stored)

    # One action per template, by name or by one of its alerts' id.
    by_name = sorted(names)
    first = next(a for a in unknown if a["actual"]["name"] == by_name[0])
    assert main(["feedback", "--store", str(store), "normal-template", first["id"]]) == 0
    for name in by_name[1:]:
        assert main(["feedback", "--store", str(store), "normal-template", name]) == 0
    marked = capsys.readouterr().out
    assert marked.count("marked normal") == len(names)

    old = KeyModelMeta.from_json(1, _meta(repository, 1))
    retrain = ["retrain", "--url", url, "--repository", str(repository), "--store", str(store)]
    assert main(retrain) == 0
    report = capsys.readouterr().out
    assert "v1 -> v2" in report
    new = KeyModelMeta.from_json(2, _meta(repository, 2))
    assert new.vocabulary.extends(old.vocabulary)
    assert new.vocabulary.size == old.vocabulary.size + len(names)

    again, summary = _detect(capsys, after_deployment, url, tmp_path / "after.sqlite")
    assert _unknown(again) == []
    assert " 0 with an unknown key" in summary
    assert {a["model_version"] for a in again} <= {2}
    flagged = len({a["session"] for a in alerts})
    assert len({a["session"] for a in again}) < flagged / 4, (flagged, len(again))

    # A detect that was started on v1 and runs on through the retrain: once v2 answers (and
    # serves on every replica), its parser matches v2's templates too, without a restart.
    with TritonClient(url) as triton:
        running = KeyModel(triton, old, pinned=False)
        found = detect_stream(after_deployment.read_bytes().splitlines(), running, lambda _: None)
    assert found.templates_taken_over == len(names)
    assert found.parse.unknown < lines_unknown / 4, (found.parse.unknown, lines_unknown)
    assert "templates taken over from a newer version" in found.line()


def _meta(repository, version: int) -> dict:
    return json.loads((repository / DEEPLOG_KEYS.name / str(version) / "meta.json").read_text())
