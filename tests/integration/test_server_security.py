"""A server only its operators control: ports checked, stubs cleaned up after a crash, gRPC
over TLS, and loading models kept to holders of the admin key while inference stays open."""

from __future__ import annotations

import datetime
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from client.cli.args import BadArguments
from client.triton_client import (
    ADMIN_KEY_HEADER as CLIENT_HEADER,
)
from client.triton_client import (
    ClientSecurity,
    InferenceError,
    Restricted,
    RetryPolicy,
    ServerUnavailable,
    TritonClient,
)
from export.contract.specs import MODEL_META
from export.repository import write_meta_model
from server_config import launcher
from server_config.launcher import (
    ServerPorts,
    ServerSecurity,
    ServerStartError,
    TritonServer,
    free_ports,
)

ADMIN_KEY = "operators-only"


def _write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _certificate(subject: str, key, issuer_name, issuer_key, ca: bool, ip: str | None = None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip is not None:
        import ipaddress

        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all from it."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = _certificate("test CA", ca_key, ca_name, ca_key, ca=True)
    files = {"ca": _write_pem(folder / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))}
    for role, ip in (("server", "127.0.0.1"), ("client", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(role, key, ca_name, ca_key, ca=False, ip=ip)
        files[f"{role}_cert"] = _write_pem(
            folder / f"{role}.pem", cert.public_bytes(serialization.Encoding.PEM)
        )
        files[f"{role}_key"] = _write_pem(
            folder / f"{role}.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
    return files


@pytest.fixture(scope="module")
def meta_repository(tmp_path_factory) -> Path:
    repository = tmp_path_factory.mktemp("meta_repository")
    write_meta_model(repository)
    return repository


def test_a_taken_port_is_a_one_line_error_naming_it(tmp_path):
    http, grpc, metrics = free_ports(3)
    with socket.socket() as other:
        other.bind(("127.0.0.1", grpc))
        other.listen()
        server = TritonServer(tmp_path, ports=ServerPorts(http, grpc, metrics))
        with pytest.raises(ServerStartError) as failure:
            server.start()
    message = str(failure.value)
    assert f"gRPC port {grpc} on 127.0.0.1 already in use" in message
    assert "\n" not in message and not server.is_running()


def test_ports_picked_by_the_launcher_are_picked_again_when_another_process_took_one(tmp_path):
    server = TritonServer(tmp_path)
    taken = server.ports.grpc
    with socket.socket() as other:
        other.bind(("127.0.0.1", taken))
        other.listen()
        server.start()  # no error: the ports were the launcher's to choose
        try:
            assert server.is_running()
            assert taken not in (server.ports.http, server.ports.grpc, server.ports.metrics)
        finally:
            server.stop()


def test_a_server_killed_with_sigkill_leaves_no_backend_stub_and_no_shared_memory(
    meta_repository,
):
    server = TritonServer(meta_repository, load_models=(MODEL_META.name,)).start()
    group = server.pid
    regions = list(Path("/dev/shm").glob(f"{server.shm_prefix}*"))
    assert regions, "a Python model's stub holds a region of the server's own name"
    os.kill(server.pid, signal.SIGKILL)  # a crash: the server alone dies, its stub lives on
    time.sleep(0.5)
    os.killpg(group, 0)  # the stub is still there
    assert server.reap()
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)
    assert not list(Path("/dev/shm").glob(f"{server.shm_prefix}*"))


def test_server_and_client_agree_on_the_admin_key_header():
    assert launcher.ADMIN_KEY_HEADER == CLIENT_HEADER


@pytest.fixture(scope="module")
def secured(meta_repository, tls):
    security = ServerSecurity(tls["server_cert"], tls["server_key"], admin_key=ADMIN_KEY)
    server = TritonServer(meta_repository, security=security).start()
    yield server
    server.stop()


def test_over_tls_inference_is_open_and_loading_needs_the_admin_key(secured, tls):
    quick = RetryPolicy(retry_for_s=0.5, first_delay_s=0.1)
    anyone = TritonClient(secured.grpc_url, quick, security=ClientSecurity(ca=tls["ca"]))
    with pytest.raises(Restricted, match="keeps this to its operators"):
        anyone.load_model(MODEL_META.name)
    operator = TritonClient(
        secured.grpc_url, quick, security=ClientSecurity(ca=tls["ca"], admin_key=ADMIN_KEY)
    )
    operator.load_model(MODEL_META.name)
    # Anyone may ask what is served and run it; only the operator changed it.
    assert anyone.ready_versions(MODEL_META.name) == [1]
    with pytest.raises(InferenceError, match="no_such_model v1 has no metadata"):
        anyone.version_meta("no_such_model", 1)  # answered by the model: inference runs
    wrong = TritonClient(
        secured.grpc_url, quick, security=ClientSecurity(ca=tls["ca"], admin_key="guess")
    )
    with pytest.raises(Restricted, match="the one given was refused"):
        wrong.unload_model(MODEL_META.name)
    plain = TritonClient(secured.grpc_url, quick)  # no TLS: no answer at all
    with pytest.raises(ServerUnavailable):
        plain.ready_versions(MODEL_META.name)
    for client in (anyone, operator, wrong, plain):
        client.close()


def test_mutual_tls_refuses_a_client_without_a_certificate(meta_repository, tls):
    security = ServerSecurity(tls["server_cert"], tls["server_key"], client_ca=tls["ca"])
    quick = RetryPolicy(retry_for_s=0.5, first_delay_s=0.1)
    with TritonServer(meta_repository, security=security) as server:
        holder = ClientSecurity(tls["ca"], tls["client_cert"], tls["client_key"])
        assert TritonClient(server.grpc_url, quick, security=holder).is_ready()
        stranger = TritonClient(server.grpc_url, quick, security=ClientSecurity(ca=tls["ca"]))
        assert not stranger.is_ready()


def test_a_missing_or_empty_admin_key_file_is_a_one_line_error(tmp_path, capsys):
    from client.cli import main

    empty = tmp_path / "key"
    empty.write_text("\n")
    for key_file, message in ((tmp_path / "none", "No such file"), (empty, "is empty")):
        code = main(["rollback", "--admin-key-file", str(key_file), "--repository", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 1 and message in err and err.count("\n") == 1, err
    with pytest.raises(BadArguments):
        from argparse import Namespace

        from client.cli.args import client_security

        client_security(Namespace(admin_key_file=empty, tls_ca=None, tls_cert=None, tls_key=None))
