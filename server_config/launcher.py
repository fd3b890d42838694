"""Start and stop a real ``tritonserver``, the way PyTriton does it.

Known arguments only, bound to 127.0.0.1, ports of its choosing, ``--model-control-mode=explicit``;
the server dies with its parent, its log is captured and shown on a failed start, readiness is
awaited on the health endpoint, and it is stopped by its PID. Its ports are checked free before
it starts and owned by it once it answers (a readiness probe alone would be answered by
whatever else listens there). It runs in its own process group with shared-memory regions of
its own name, so stopping it, or finding it dead, also ends the Python backend stubs it forked
(which outlive a killed server and ignore SIGTERM) and removes their regions. ``ServerSecurity``
adds TLS on gRPC and a header key on the repository API (loading and unloading models).
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


class PortsTaken(ServerStartError):
    """A port the server was to listen on belongs to another process."""


PORT_ATTEMPTS = 3  # ports picked here are picked again when another process took one meanwhile


# The header that carries the admin key (client/triton_client.py sends the same one).
ADMIN_KEY_HEADER = "admin-key"
# What the admin key guards: loading/unloading models and the repository index, and the
# trace and logging settings (which write files); inference, health and metadata stay open.
RESTRICTED = "model-repository,trace,logging"


@dataclass(frozen=True)
class ServerSecurity:
    """TLS on gRPC (a PEM certificate and key; with ``client_ca``, clients must present a
    certificate it signed) and the admin key the repository API asks for. None: off."""

    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    admin_key: str | None = None

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and its key")
        if self.client_ca is not None and self.tls_cert is None:
            raise ValueError("client certificates (mutual TLS) need the server's TLS too")
        for path in (self.tls_cert, self.tls_key, self.client_ca):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{path}: no such file")

    def arguments(self) -> list[str]:
        args = []
        if self.tls_cert is not None:
            mutual = self.client_ca is not None
            args += [
                f"--grpc-use-ssl{'-mutual' if mutual else ''}=true",
                f"--grpc-server-cert={self.tls_cert}",
                f"--grpc-server-key={self.tls_key}",
            ]
            if mutual:
                args.append(f"--grpc-root-cert={self.client_ca}")
        if self.admin_key is not None:
            guard = f"{RESTRICTED}:{ADMIN_KEY_HEADER}={self.admin_key}"
            args += [f"--grpc-restricted-protocol={guard}", f"--http-restricted-api={guard}"]
        return args


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


def taken_ports(ports: ServerPorts) -> list[str]:
    """Which of the ports something already listens on (127.0.0.1 or every address)."""
    taken = []
    for role, port in (("HTTP", ports.http), ("gRPC", ports.grpc), ("metrics", ports.metrics)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As the server binds (gRPC sets SO_REUSEADDR): a port in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                taken.append(f"{role} port {port}")
    return taken


def listening_ports(pid: int) -> set[int]:
    """TCP ports process ``pid`` listens on, from /proc (its socket inodes, the kernel's
    table of listening sockets)."""
    inodes = set()
    with contextlib.suppress(FileNotFoundError, PermissionError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


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
        security: ServerSecurity | None = None,
    ) -> None:
        self.repository = Path(repository).resolve()
        self.ports = ports or ServerPorts(*free_ports(3))
        self._picked_ports = ports is None  # ours to pick again if taken; a user's are not
        self.security = security or ServerSecurity()
        self.load_models = load_models
        self.startup_timeout = startup_timeout
        self.exit_timeout = exit_timeout
        self._workdir = Path(tempfile.mkdtemp(prefix="triton-"))
        self.log_path = log_path or self._workdir / "tritonserver.log"
        self.process: subprocess.Popen | None = None
        # The Python backend names its shared-memory regions with this prefix: ours alone.
        self.shm_prefix = f"{self._workdir.name.replace('-', '_')}_"

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
            *self.security.arguments(),
        ]
        # Our Python-based shims are backends of their own name, each with its regions.
        python_based = ("python",) if install.native else ("python", *SHIM_BACKENDS)
        args += [
            f"--backend-config={name},shm-region-prefix-name={self.shm_prefix}"
            for name in python_based
        ]
        args += [f"--load-model={name}" for name in self.load_models]
        return args

    def start(self) -> TritonServer:
        """Start and wait until ready. Ports picked here (none given) that another process
        takes between the pick and the bind are picked again."""
        attempt = 1
        while True:
            try:
                return self._start()
            except PortsTaken:
                if not self._picked_ports or attempt == PORT_ATTEMPTS:
                    raise
                attempt += 1
                self.ports = ServerPorts(*free_ports(3))

    def _start(self) -> TritonServer:
        if not self.repository.is_dir():
            raise ServerStartError(f"model repository {self.repository} does not exist")
        self.reap()
        taken = taken_ports(self.ports)
        if taken:
            raise PortsTaken(
                f"{', '.join(taken)} on 127.0.0.1 already in use (another server?): "
                "choose others (make serve GRPC_PORT=... HTTP_PORT=... METRICS_PORT=...)"
            )
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
                        self._check_ports_are_ours()
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise ServerStartError(
            f"tritonserver not ready after {self.startup_timeout:.0f}s:\n" + self.log_tail()
        )

    def _check_ports_are_ours(self) -> None:
        wanted = {self.ports.http, self.ports.grpc, self.ports.metrics}
        missing = wanted - listening_ports(self.process.pid)
        if missing:
            self.stop()
            raise PortsTaken(
                f"port(s) {', '.join(map(str, sorted(missing)))} answered, but not by the "
                f"tritonserver started here (pid {self.pid}): another process took them"
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
        self._end_group()
        shutil.rmtree(self._workdir / "backends", ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the server and its backend stubs (its process group), as a crash would end
        it, and reap it. A later start() on the same ports is a restart."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._end_group()

    def reap(self) -> bool:
        """If the server has died (killed, crashed), end the stubs it left and remove their
        shared memory; True if it had."""
        if self.process is None or self.process.poll() is None:
            return False
        self._end_group()
        return True

    def _end_group(self, wait_s: float = 5.0) -> None:
        """After the server has exited: SIGKILL what is left of its process group (stubs
        whose parent died ignore SIGTERM), wait for them to go, remove their regions."""
        group = self.process.pid
        self.process = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        for region in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
            region.unlink(missing_ok=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
