"""The launcher and the client against a real tritonserver: start, fail, stop, outage, retry."""

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from client.triton_client import RetryPolicy, ServerUnavailable, TritonClient
from server_config.launcher import ServerPorts, ServerStartError, TritonServer, free_ports


def test_a_started_server_is_ready_on_loopback_ports(server, triton):
    assert server.is_running()
    assert server.grpc_url.startswith("127.0.0.1:")
    assert triton.is_ready()


def test_a_failed_start_reports_the_servers_own_error_lines(tmp_path):
    server = TritonServer(tmp_path, load_models=("no_such_model",))
    with pytest.raises(ServerStartError) as failure:
        server.start()
    assert "no_such_model" in str(failure.value)
    assert "failed to load all models" in str(failure.value)
    assert not server.is_running()


def test_a_missing_repository_is_a_clear_error(tmp_path):
    with pytest.raises(ServerStartError, match="does not exist"):
        TritonServer(tmp_path / "nowhere").start()


def test_stop_ends_the_server_by_its_pid(tmp_path):
    server = TritonServer(tmp_path).start()
    pid = server.pid
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_an_unreachable_server_is_reported_after_retries_never_dropped():
    (port,) = free_ports(1)
    policy = RetryPolicy(retry_for_s=0.3, first_delay_s=0.05)
    client = TritonClient(f"127.0.0.1:{port}", policy)
    with pytest.raises(ServerUnavailable, match="unavailable for 0 s"):
        client.ready_versions("deeplog_keys")
    assert client.retries == len(policy.delays()) == 3  # 0.05, 0.1, then the last 0.15


def test_a_request_during_an_outage_is_retried_until_the_server_is_back(tmp_path):
    ports = ServerPorts(*free_ports(3))
    first = TritonServer(tmp_path, ports=ports).start()
    client = TritonClient(ports.grpc_url, RetryPolicy(retry_for_s=40, first_delay_s=0.2))
    first.stop()  # outage
    with ThreadPoolExecutor(1) as pool:
        # The request runs in a thread; the server comes back from this one (a server dies with
        # the thread that started it).
        answer = pool.submit(client.ready_versions, "anything")
        time.sleep(1.0)
        second = TritonServer(tmp_path, ports=ports).start()
        try:
            assert answer.result(timeout=60) == []  # answered once the server is back
        finally:
            second.stop()
            client.close()
    assert client.retries >= 1
