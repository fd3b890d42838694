"""The other servers the scale-out runs on, started as their users start them: Debian's
``nats-server`` (JetStream on, its own store folder) and ``prometheus`` (the config this project
ships in ``server_config/prometheus/``). On 127.0.0.1 and free ports unless told otherwise;
each dies with its parent, is awaited until it answers, and is stopped by its PID.
"""

from __future__ import annotations

import shutil
import signal
import string
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from server_config.launcher import PROJECT_ROOT, _die_with_parent, free_ports

PROMETHEUS_CONFIG = PROJECT_ROOT / "server_config" / "prometheus" / "prometheus.yml"


class ServiceStartError(RuntimeError):
    """A service did not come up; the message carries its log's last lines."""


class Service:
    """One server process of ours: ``command`` once ports and folders are chosen, readiness on
    an HTTP URL."""

    name = "service"

    def __init__(self, workdir: Path | None = None, startup_timeout: float = 30.0) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready_url(self) -> str:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self):
        binary = self.command()[0]
        if shutil.which(binary) is None:
            raise ServiceStartError(
                f"{binary} is not installed: `make setup` installs Debian's {binary}"
            )
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceStartError(
                    f"{self.name} exited with code {self.process.returncode} while starting:\n"
                    + self.log_tail()
                )
            try:
                with urllib.request.urlopen(self.ready_url(), timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise ServiceStartError(
            f"{self.name} not ready after {self.startup_timeout:.0f} s:\n" + self.log_tail()
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log written)"

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NatsServer(Service):
    """nats-server with JetStream, its store in ``workdir``; the monitoring port answers
    ``/healthz`` once JetStream is up."""

    name = "nats-server"

    def __init__(self, workdir: Path | None = None, port: int = 0, host: str = "127.0.0.1"):
        super().__init__(workdir)
        picked = free_ports(2)
        self.host = host
        self.port = port or picked[0]
        self.monitor_port = picked[1]

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            "nats-server",
            "--jetstream",
            f"--store_dir={self.workdir / 'jetstream'}",
            f"--addr={self.host}",
            f"--port={self.port}",
            f"--http_port={self.monitor_port}",
        ]

    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"


class PrometheusServer(Service):
    """prometheus with this project's config, its scrape targets filled in (``targets``: job
    name -> host:port list) and its data in ``workdir``."""

    name = "prometheus"

    def __init__(
        self,
        targets: dict[str, list[str]],
        workdir: Path | None = None,
        scrape_interval_s: float = 1.0,
    ):
        super().__init__(workdir)
        self.port = free_ports(1)[0]
        self.targets, self.scrape_interval_s = targets, scrape_interval_s

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config_path(self) -> Path:
        """The shipped config with the targets of this run (a Kubernetes install replaces the
        static lists with its service discovery, as the config's comments say)."""
        text = string.Template(PROMETHEUS_CONFIG.read_text()).substitute(
            scrape_interval=f"{self.scrape_interval_s:g}s",
            **{f"{job}_targets": _yaml_list(addresses) for job, addresses in self.targets.items()},
        )
        path = self.workdir / "prometheus.yml"
        path.write_text(text)
        shutil.copyfile(PROMETHEUS_CONFIG.with_name("rules.yml"), self.workdir / "rules.yml")
        return path

    def command(self) -> list[str]:
        return [
            "prometheus",
            f"--config.file={self.config_path()}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def ready_url(self) -> str:
        return f"{self.url}/-/ready"


def _yaml_list(items: list[str]) -> str:
    return "[" + ", ".join(f"'{item}'" for item in items) + "]"
