"""The running client's Prometheus metrics, on a port of its own (127.0.0.1 unless told).

Counts are read from the engine when Prometheus scrapes (a collector), so the per-line path
pays nothing for them; only request latency is observed as it happens (once per request).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from client.alerts import Check
from client.sessions import CloseCause

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricsError(RuntimeError):
    """The metrics port could not be opened."""


@dataclass
class Watched:
    """What the collector reads at each scrape."""

    engine: object  # client.pipeline.StreamEngine (not imported: it imports this module's users)
    lag_bytes: Callable[[], int]
    worker: object | None = None  # client.bus_worker.BusWorker, on a log bus


class _EngineCollector(Collector):
    def __init__(self, watched: Watched) -> None:
        self.watched = watched

    def collect(self):
        engine = self.watched.engine
        summary = engine.summary
        parse = summary.parse
        yield CounterMetricFamily("logad_lines_read", "Raw lines read", value=parse.lines)
        malformed = CounterMetricFamily(
            "logad_lines_malformed", "Lines that could not be checked, by reason", labels=["reason"]
        )
        for reason, count in sorted(parse.malformed.items()):
            malformed.add_metric([reason], count)
        yield malformed
        yield CounterMetricFamily(
            "logad_lines_unknown_template",
            "Lines of a template the model version never learnt",
            value=parse.unknown,
        )
        yield CounterMetricFamily(
            "logad_lines_without_session",
            "Lines that name no session (not checked by the key model)",
            value=summary.lines_without_session,
        )
        yield GaugeMetricFamily(
            "logad_sessions_open", "Sessions open now", value=engine.open_sessions
        )
        closed = CounterMetricFamily(
            "logad_sessions_closed",
            "Sessions (or parts) closed and checked, by cause",
            labels=["cause"],
        )
        for cause in CloseCause:
            closed.add_metric([cause.value], summary.closed[cause])
        yield closed
        yield CounterMetricFamily(
            "logad_sessions_checked", "Session verdicts emitted", value=summary.sessions
        )
        alerts = CounterMetricFamily("logad_alerts", "Alerts emitted, by check", labels=["check"])
        for check in Check:
            alerts.add_metric([check.value], summary.alerts[check])
        yield alerts
        yield GaugeMetricFamily(
            "logad_follow_lag_bytes",
            "Bytes of the followed file not read yet",
            value=self.watched.lag_bytes(),
        )
        if self.watched.worker is not None:
            yield from _worker_metrics(self.watched.worker)
        yield GaugeMetricFamily(
            "logad_stream_clock_seconds",
            "The stream's clock (event time of the latest line), seconds since the epoch",
            value=max(engine.clock.event_time, 0.0),
        )


def _worker_metrics(worker) -> list:
    stats = worker.stats
    return [
        GaugeMetricFamily(
            "logad_bus_lag_messages",
            "Messages of this worker's partitions not delivered to it yet",
            value=worker.lag_messages(),
        ),
        GaugeMetricFamily(
            "logad_bus_partitions", "Partitions this worker holds", value=len(worker.partitions)
        ),
        GaugeMetricFamily(
            "logad_bus_held_messages",
            "Messages delivered, waiting for their sessions' verdicts before they are acked",
            value=worker.held,
        ),
        CounterMetricFamily(
            "logad_bus_messages", "Messages taken from the bus", value=stats.messages
        ),
        CounterMetricFamily(
            "logad_bus_redelivered",
            "Messages that came again (another worker's, or an expired wait)",
            value=stats.redelivered,
        ),
        CounterMetricFamily("logad_bus_acked", "Messages acknowledged", value=stats.acked),
    ]


class DetectionMetrics:
    """One registry per client, so two engines in one process (tests) never share counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._latency = Histogram(
            "logad_request_seconds",
            "Triton request latency as the client sees it, by model",
            ["model"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self._server = None

    def observe(self, model: str, seconds: float) -> None:
        self._latency.labels(model).observe(seconds)

    def watch(
        self, engine: object, lag_bytes: Callable[[], int], worker: object | None = None
    ) -> None:
        self.registry.register(_EngineCollector(Watched(engine, lag_bytes, worker)))

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics; returns the port (``port=0``: one the OS picked)."""
        try:
            self._server, _ = start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            raise MetricsError(
                f"cannot serve metrics on {host}:{port} ({exc.strerror}): pick another "
                "--metrics-port, or 0 for none"
            ) from None
        return self._server.server_port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
