"""``python -m server_config serve``: run Triton on a model repository until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from server_config.launcher import ServerPorts, ServerSecurity, ServerStartError, TritonServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server_config")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a model repository on 127.0.0.1")
    serve.add_argument("--repository", type=Path, default=Path("model_repository"))
    serve.add_argument("--grpc-port", type=int, default=8001)
    serve.add_argument("--http-port", type=int, default=8000)
    serve.add_argument("--metrics-port", type=int, default=8002)
    serve.add_argument("--log", type=Path, default=Path("build/tritonserver.log"))
    secure = serve.add_argument_group("security (default: plain gRPC on loopback, no key)")
    secure.add_argument("--tls-cert", type=Path, help="gRPC over TLS: the server's PEM cert")
    secure.add_argument("--tls-key", type=Path, help="gRPC over TLS: its PEM key")
    secure.add_argument("--tls-client-ca", type=Path, help="mutual TLS: clients' CA (PEM)")
    secure.add_argument(
        "--admin-key-file",
        type=Path,
        help="keep loading/unloading models (the repository API) to holders of this key",
    )
    args = parser.parse_args(argv)
    try:
        security = _security(args)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    # Load every model that has at least one exported version.
    models = (
        tuple(
            sorted(
                p.name
                for p in args.repository.iterdir()
                if p.is_dir() and any(v.name.isdigit() for v in p.iterdir())
            )
        )
        if args.repository.is_dir()
        else ()
    )
    ports = ServerPorts(args.http_port, args.grpc_port, args.metrics_port)
    server = TritonServer(
        args.repository, ports=ports, log_path=args.log, load_models=models, security=security
    )
    try:
        server.start()
    except ServerStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    tls = " (TLS)" if security.tls_cert else ""
    print(
        f"tritonserver pid {server.pid}: gRPC {ports.grpc_url}{tls}, HTTP {ports.http_url}, "
        f"metrics 127.0.0.1:{ports.metrics}; models: {', '.join(models) or 'none exported yet'}"
    )
    print(f"log: {server.log_path}. Ctrl-C stops it.")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            if not server.is_running():
                print("tritonserver exited:\n" + server.log_tail(), file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _security(args: argparse.Namespace) -> ServerSecurity:
    key = None
    if args.admin_key_file is not None:
        key = args.admin_key_file.read_text().strip()
        if not key:
            raise ValueError(f"--admin-key-file {args.admin_key_file} is empty")
    return ServerSecurity(args.tls_cert, args.tls_key, args.tls_client_ca, key)


if __name__ == "__main__":
    sys.exit(main())
