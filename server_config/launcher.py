"""Start and stop a real ``tritonserver``, the way PyTriton does it.

Known arguments only, bound to 127.0.0.1, ports of its choosing, ``--model-control-mode=explicit``;
the server dies with its parent, its log is captured and shown on a failed start, readiness is
awaited on the health endpoint, and it is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHIM_BACKENDS = ("onnxruntime", "pytorch")
PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")


# Triton's glog format: E1122 18:15:27.235123 7265 server.cc:241] "message"
_ERROR_LINE = re.compile(r"^E\d{4} ")
# Printed by every start on a machine without a GPU; not the reason anything failed.
_CPU_ONLY_NOISE = ("CudaDriverHelper has not been initialized",)


class ServerStartError(RuntimeError):
    """tritonserver did not become ready; the message carries its last log lines."""


@dataclass(frozen=True)
class ServerPorts:
    http: int
    grpc: int
    metrics: int

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http}"


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    backends: Path  # a backend directory ready to pass to --backend-directory, or a source
    native: bool  # True: an NVIDIA install whose backends dir already holds native backends
    libs: Path | None = None  # shared libraries the wheel's stub finds through its RPATH


def free_ports(count: int = 3) -> list[int]:
    """Ports the OS reports free on 127.0.0.1 (all held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def find_tritonserver() -> TritonInstall:
    """A ``tritonserver`` on PATH (NVIDIA's container) or the one in the nvidia-pytriton wheel."""
    on_path = shutil.which("tritonserver")
    if on_path:
        binary = Path(on_path).resolve()
        backends = binary.parent.parent / "backends"
        if (backends / "onnxruntime").is_dir():
            return TritonInstall(binary, backends, native=True)
        return TritonInstall(binary, backends, native=False)
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError(
            "no tritonserver found: none on PATH and the nvidia-pytriton wheel is not installed "
            "(run `make setup`)"
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    root = package / "tritonserver"
    libs = package.parent / "nvidia_pytriton.libs"
    return TritonInstall(root / "bin" / "tritonserver", root / "backends", False, libs)


def assemble_backends(install: TritonInstall, target: Path) -> Path:
    """A backend directory: Triton's Python backend plus our Python-based onnxruntime/pytorch."""
    if install.native:
        return install.backends
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    source = install.backends / "python"
    for name in PYTHON_BACKEND_FILES:
        _copy(source / name, python_dir / name)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = install.backends.parent / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        stub = source / "triton_python_backend_stub"
    if not stub.exists():
        raise ServerStartError(f"no Python backend stub for Python {version} in {install.backends}")
    _copy(stub, python_dir / "triton_python_backend_stub")
    # The stub puts the Python backend folder on sys.path (and ignores PYTHONPATH), so the
    # shims' path bootstrap lives there.
    _copy(PROJECT_ROOT / "server_config" / "backends" / "stub_path.py", python_dir / "stub_path.py")
    for name in SHIM_BACKENDS:
        (target / name).mkdir(exist_ok=True)
        shutil.copyfile(
            PROJECT_ROOT / "server_config" / "backends" / name / "model.py",
            target / name / "model.py",
        )
    return target


def _copy(source: Path, dest: Path) -> None:
    # A copy, not a link: Triton refuses a backend library whose real path is outside the
    # backend directory.
    if not source.exists():
        raise ServerStartError(f"Triton file missing: {source}")
    shutil.copy2(source, dest)


def server_environment(install: TritonInstall) -> dict[str, str]:
    """The stub processes embed this interpreter's libpython and import this venv's packages."""
    env = dict(os.environ)
    libdirs = [sysconfig.get_config_var("LIBDIR"), install.libs, env.get("LD_LIBRARY_PATH")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(str(p) for p in libdirs if p)
    paths = sysconfig.get_paths()
    site = [str(PROJECT_ROOT), paths["purelib"], paths["platlib"]]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(site))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the process that started it dies.

    Linux ties this to the starting *thread*: start servers from a thread that outlives them
    (the main thread, normally), or they are stopped when that thread ends.
    """
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class TritonServer:
    """One tritonserver process. Use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        repository: Path,
        ports: ServerPorts | None = None,
        log_path: Path | None = None,
        load_models: tuple[str, ...] = (),
        startup_timeout: float = 120.0,
        exit_timeout: int = 10,
    ) -> None:
        self.repository = Path(repository).resolve()
        self.ports = ports or ServerPorts(*free_ports(3))
        self.load_models = load_models
        self.startup_timeout = startup_timeout
        self.exit_timeout = exit_timeout
        self._workdir = Path(tempfile.mkdtemp(prefix="triton-"))
        self.log_path = log_path or self._workdir / "tritonserver.log"
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def grpc_url(self) -> str:
        return self.ports.grpc_url

    def command(self, install: TritonInstall, backends: Path) -> list[str]:
        args = [
            str(install.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            "--model-control-mode=explicit",
            "--strict-readiness=true",
            "--http-address=127.0.0.1",
            f"--http-port={self.ports.http}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.ports.grpc}",
            "--allow-metrics=true",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.ports.metrics}",
            f"--exit-timeout-secs={self.exit_timeout}",
            "--log-verbose=0",
        ]
        args += [f"--load-model={name}" for name in self.load_models]
        return args

    def start(self) -> TritonServer:
        if not self.repository.is_dir():
            raise ServerStartError(f"model repository {self.repository} does not exist")
        install = find_tritonserver()
        backends = assemble_backends(install, self._workdir / "backends")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(install, backends),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=server_environment(install),
                preexec_fn=_die_with_parent,
                # Its own process group: the Python backend stubs it forks are in it too, so
                # kill() can end the server and every stub together.
                start_new_session=True,
            )
        self._await_ready()
        return self

    def _await_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.ports.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"tritonserver exited with code {self.process.returncode} while starting "
                    f"(log: {self.log_path}). Its errors:\n{self.error_lines()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise ServerStartError(
            f"tritonserver not ready after {self.startup_timeout:.0f}s:\n" + self.log_tail()
        )

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self._log_lines()[-lines:]) or "(no log written)"

    def _log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def error_lines(self) -> str:
        """The server's own error lines, without the ones every CPU-only start prints."""
        errors = [
            line
            for line in self._log_lines()
            if (_ERROR_LINE.match(line) or line.startswith("error:"))
            and not any(noise in line for noise in _CPU_ONLY_NOISE)
        ]
        return "\n".join(errors) or self.log_tail()

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM our server by PID, wait for a clean exit, SIGKILL if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=self.exit_timeout + 15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        shutil.rmtree(self._workdir / "backends", ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the server and its backend stubs (its process group), as a crash would end
        it, and reap it. A later start() on the same ports is a restart."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
