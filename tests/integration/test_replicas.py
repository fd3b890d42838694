"""Several Triton replicas over one model repository: a client spreads its requests over them,
goes on through a replica killed mid-stream, and a new version is rolled out to every replica
or, if one of them refuses it, to none."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest

from client.detection import open_key_model
from client.ops.retrain import LoadFailed, swap_in_release
from client.ops.training import train_and_publish
from client.ops.workload import WorkloadConfig, generate_workload
from client.pipeline import detect_stream
from client.triton_client import TritonClient
from export.contract.specs import DEEPLOG_KEYS
from export.deeplog_keys import KeyModelConfig
from export.repository import versions
from server_config.launcher import TritonServer

QUICK = KeyModelConfig(top_g=9, epochs=2, seed=5)
# Appended to one replica's onnxruntime shim: that version fails to initialise there.
REFUSE_VERSION = """
_initialize = TritonPythonModel.initialize


def _refuse(self, args):
    if args["model_version"] == "{version}":
        raise RuntimeError("this replica cannot load version {version}")
    return _initialize(self, args)


TritonPythonModel.initialize = _refuse
"""
LOG = generate_workload(WorkloadConfig(blocks=500, anomaly_rate=0.06, seed=41)).lines


@pytest.fixture(scope="module")
def shared_repository(tmp_path_factory, demo_corpus):
    """One repository (a shared volume in production) with one key-model version."""
    repository = tmp_path_factory.mktemp("shared_repository")
    train_and_publish(
        demo_corpus.sessions, demo_corpus.vocabulary, repository, QUICK, "workload", False
    )
    return repository


@pytest.fixture(scope="module")
def replicas(shared_repository):
    servers = [TritonServer(shared_repository) for _ in range(2)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


def _url(servers: list[TritonServer]) -> str:
    return ",".join(s.grpc_url for s in servers)


def _answered(server: TritonServer) -> int:
    """Requests the server answered for deeplog_keys (its own statistics)."""
    with TritonClient(server.grpc_url) as one:
        stats = one.replicas.all()[0].client.get_inference_statistics(DEEPLOG_KEYS.name)
    return sum(s.inference_stats.success.count for s in stats.model_stats)


def _killing_halfway(lines: list[str], server: TritonServer) -> Iterator[str]:
    """The lines, with ``server`` SIGKILLed when half of them have been read: mid-stream
    whatever the speed of the machine (a timer fired after the run on a fast one)."""
    for number, line in enumerate(lines):
        if number == len(lines) // 2:
            server.kill()
        yield line


def _verdicts(model, lines: Iterable[str] = LOG) -> dict[str, bool]:
    found: dict[str, bool] = {}
    detect_stream(
        lines,
        model,
        lambda _: None,
        on_verdict=lambda v: found.update({v.session: v.abnormal}),
    )
    return found


def test_requests_go_to_every_replica_and_a_killed_one_costs_no_verdict(replicas):
    triton = TritonClient(_url(replicas))
    model = open_key_model(triton)
    before = [_answered(s) for s in replicas]
    clean = _verdicts(model)
    spread = [_answered(s) - b for s, b in zip(replicas, before, strict=True)]
    assert min(spread) > 0.3 * sum(spread), f"requests per replica: {spread}"

    # The same log again, with one replica SIGKILLed while it runs.
    after_kill = _verdicts(model, _killing_halfway(LOG, replicas[0]))
    assert not replicas[0].is_running()
    assert after_kill == clean  # every session, the same verdict
    assert triton.replicas.failovers >= 1
    replicas[0].start()  # on its ports again, loading what the repository holds
    triton.close()


def test_a_version_is_rolled_out_to_every_replica_or_to_none(
    replicas, shared_repository, demo_corpus
):
    for server in replicas:
        if not server.is_running():
            server.start()
    triton = TritonClient(_url(replicas))
    open_key_model(triton)  # loads deeplog_keys on both
    serving = triton.ready_versions(DEEPLOG_KEYS.name)[-1]

    new = train_and_publish(
        demo_corpus.sessions, demo_corpus.vocabulary, shared_repository, QUICK, "workload", False
    )
    swap_in_release(triton, shared_repository, (DEEPLOG_KEYS.name,), new)
    each = triton.ready_versions_each([DEEPLOG_KEYS.name])
    assert [v[DEEPLOG_KEYS.name][-1] for v in each.values()] == [new, new]

    # The second replica cannot load the next version (as a GPU node without the memory for
    # a bigger model refuses it): it goes to neither.
    refused = new + 1
    shim = replicas[1]._workdir / "backends" / "onnxruntime" / "model.py"
    working = shim.read_text()
    shim.write_text(working + REFUSE_VERSION.format(version=refused))
    try:
        published = train_and_publish(
            demo_corpus.sessions, demo_corpus.vocabulary, shared_repository, QUICK, "w", False
        )
        assert published == refused
        with pytest.raises(LoadFailed, match=str(replicas[1].ports.grpc)):
            swap_in_release(triton, shared_repository, (DEEPLOG_KEYS.name,), refused)
    finally:
        shim.write_text(working)
    each = triton.ready_versions_each([DEEPLOG_KEYS.name])
    assert all(refused not in v[DEEPLOG_KEYS.name] for v in each.values()), each
    assert [v[DEEPLOG_KEYS.name][-1] for v in each.values()] == [new, new]
    assert refused not in versions(shared_repository, DEEPLOG_KEYS.name)
    assert serving < new
    triton.close()
