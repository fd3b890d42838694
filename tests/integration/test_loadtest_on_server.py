"""`make loadtest` against a real server: the session's, found by its URL; its pid is found from
the port, as for a server someone else started."""

from benchmarks.loadtest import LoadConfig, run_loadtest


def test_a_short_load_test_is_answered_in_full_and_reports_the_servers_memory(
    server, repository, workload_model, tmp_path
):
    config = LoadConfig(
        model="deeplog_keys",
        rate=40.0,
        duration_s=2.0,
        batch=8,
        bucket_s=1.0,
        warmup_requests=2,
        url=server.grpc_url,
        repository=repository,
    )
    result = run_loadtest(config, out=tmp_path)

    assert (result.due, result.answered, result.errors) == (80, 80, {})
    assert 0 < result.latency_ms["p50"] <= result.latency_ms["p99"] <= result.latency_ms["max"]
    assert [b.due for b in result.buckets] == [40, 40]
    assert result.memory_start is not None and result.memory_end is not None
    assert result.memory_start.server_bytes > 0
    assert result.memory_end.backends >= 1, "the backend stubs hold the models"
    report = (tmp_path / "loadtest.md").read_text()
    assert "| 40/s for 2 s | 80 | 80 |" in report
    assert (tmp_path / "loadtest.png").stat().st_size > 0
    assert len((tmp_path / "loadtest.csv").read_text().splitlines()) == 3
