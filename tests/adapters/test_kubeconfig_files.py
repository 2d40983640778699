"""A kubeconfig's inline credentials (``certificate-authority-data``, ``client-certificate-data``,
``client-key-data``, as AKS gives local accounts) reach the Kubernetes client without a file
on disk (workers/kube/cluster.py ``credentials_in_memory``): a worker process killed with
SIGKILL leaves no certificate or key behind, and a mutual-TLS API server still accepts the
client's certificate."""

from __future__ import annotations

import base64
import gc
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from kubernetes import client as k8s

from sandbox.certs import ClusterCa, make_cluster_ca
from tests.conftest import send_json
from workers.kube.cluster import api_client_from_kubeconfig, credentials_in_memory
from workflows.errors import ClusterApiError

ROOT = Path(__file__).resolve().parents[2]
#: ``GET /version`` of a Kubernetes 1.33 API server
VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.2",
           "gitCommit": "a57b6f7709f6c2722b92f07b8b4c48210a51fc40", "gitTreeState": "clean",
           "buildDate": "2025-06-17T18:32:40Z", "goVersion": "go1.24.4", "compiler": "gc",
           "platform": "linux/amd64"}

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"),
                                reason="memory files (memfd_create) are Linux's")


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig(files: ClusterCa, server: str) -> dict[str, object]:
    """A local account's kubeconfig as AKS's listClusterUserCredential gives it."""
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "aks-one",
        "clusters": [{"name": "aks-one", "cluster": {
            "server": server, "certificate-authority-data": b64(files.ca)}}],
        "contexts": [{"name": "aks-one", "context": {
            "cluster": "aks-one", "user": "clusterUser_rg_aks-one"}}],
        "users": [{"name": "clusterUser_rg_aks-one", "user": {
            "client-certificate-data": b64(files.client_cert),
            "client-key-data": b64(files.client_key), "token": "0123abcd"}}],
    }


@pytest.fixture
def mtls_server(tmp_path: Path) -> Iterator[tuple[ClusterCa, str]]:
    """An HTTPS server that requires a client certificate the cluster CA signed, answering
    ``GET /version`` as the API server does."""
    files = make_cluster_ca(tmp_path / "tls")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            send_json(self, VERSION)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files.cert, files.key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(files.ca)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield files, f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_client_authenticates_with_credentials_held_in_memory(
        mtls_server: tuple[ClusterCa, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    files, url = mtls_server
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the client's files go
    client = api_client_from_kubeconfig(yaml.safe_dump(kubeconfig(files, url)))
    cfg = client.configuration
    assert k8s.VersionApi(client).get_code().git_version == "v1.33.2"  # mutual TLS
    paths = (cfg.ssl_ca_cert, cfg.cert_file, cfg.key_file)
    assert all(p.startswith("/proc/self/fd/") for p in paths), paths
    assert Path(cfg.key_file).read_bytes() == files.client_key.read_bytes()
    assert list(scratch.iterdir()) == []  # nothing written for the client to read
    fds = [int(p.rsplit("/", 1)[1]) for p in paths]
    del client, cfg
    gc.collect()
    for fd in fds:  # the memory files end with the client
        with pytest.raises(OSError):
            os.fstat(fd)


def test_a_killed_worker_leaves_no_certificate_or_key_on_disk(
        mtls_server: tuple[ClusterCa, str], tmp_path: Path) -> None:
    """The Kubernetes client's own files are removed only at interpreter exit; a process
    killed with SIGKILL (a pool process the worker's supervisor kills) never gets there."""
    files, url = mtls_server
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig(files, url)))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    script = (
        "import sys\n"
        "from kubernetes import client as k8s\n"
        "from workers.kube.cluster import api_client_from_kubeconfig\n"
        f"c = api_client_from_kubeconfig(open({str(tmp_path / 'kubeconfig')!r}).read())\n"
        "print(k8s.VersionApi(c).get_code().git_version, flush=True)\n"
        "sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                            env={**os.environ, "TMPDIR": str(scratch)},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "v1.33.2"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert list(scratch.iterdir()) == []


def test_only_the_contexts_inline_credentials_move_and_the_kubeconfig_is_kept(
        tmp_path: Path) -> None:
    files = make_cluster_ca(tmp_path)
    data = kubeconfig(files, "https://aks-one.hcp.westeurope.azmk8s.io:443")
    other = {"name": "aks-two", "cluster": {"server": "https://two:443",
                                            "certificate-authority-data": b64(files.ca)}}
    data["clusters"] = [*data["clusters"], other]  # type: ignore[misc]
    before = json.dumps(data, sort_keys=True)
    moved, fds = credentials_in_memory(data)
    try:
        assert json.dumps(data, sort_keys=True) == before  # the caller's dict unchanged
        cluster = moved["clusters"][0]["cluster"]
        user = moved["users"][0]["user"]
        assert set(cluster) == {"server", "certificate-authority"}
        assert set(user) == {"client-certificate", "client-key", "token"}
        assert Path(user["client-key"]).read_bytes() == files.client_key.read_bytes()
        assert moved["clusters"][1] == other and len(fds) == 3
        # a value that is not base64 is named (the client would drop the stray characters
        # and write the rest to a file on disk), and the memory files made so far closed
        bad = json.loads(before)
        bad["users"][0]["user"]["client-key-data"] = "not base64!"
        opened = len(os.listdir("/proc/self/fd"))
        with pytest.raises(ClusterApiError, match="client-key-data is not base64"):
            credentials_in_memory(bad)
        assert len(os.listdir("/proc/self/fd")) == opened
    finally:
        for fd in fds:
            os.close(fd)


def test_an_exec_plugin_given_the_cluster_info_keeps_the_clusters_ca_inline(
        tmp_path: Path) -> None:
    """A plugin with ``provideClusterInfo`` reads the cluster's certificate-authority-data
    (ExecCredential ``spec.cluster``): a path to this process' memory file would mean
    nothing in the plugin's. Line-wrapped base64 (as some tools write it) moves as well."""
    files = make_cluster_ca(tmp_path)
    data = kubeconfig(files, "https://aks-one:443")
    user = data["users"][0]["user"]  # type: ignore[index]
    wrapped = b64(files.client_key)
    user["client-key-data"] = "\n".join(wrapped[i:i + 64] for i in range(0, len(wrapped), 64))
    user["exec"] = {"apiVersion": "client.authentication.k8s.io/v1", "command": "plugin",
                    "provideClusterInfo": True}
    moved, fds = credentials_in_memory(data)
    try:
        assert moved["clusters"][0]["cluster"]["certificate-authority-data"] == b64(files.ca)
        key = moved["users"][0]["user"]["client-key"]
        assert Path(key).read_bytes() == files.client_key.read_bytes()
    finally:
        for fd in fds:
            os.close(fd)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_no_memory_file_outlives_a_kubeconfig_that_fails(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    files = make_cluster_ca(tmp_path)
    broken = kubeconfig(files, "https://aks-one:443")
    # the loader fails after the memory files are made: an OIDC token it cannot parse
    broken["users"][0]["user"]["auth-provider"] = {  # type: ignore[index]
        "name": "oidc", "config": {"id-token": "a.!!!.c", "idp-issuer-url": "https://idp"}}
    moved, fds = credentials_in_memory(broken)
    assert len(fds) == 3
    for fd in fds:
        os.close(fd)
    before = open_fds()
    for _ in range(5):
        with pytest.raises(ClusterApiError, match="kubeconfig cannot be used"):
            api_client_from_kubeconfig(yaml.safe_dump(broken))
    assert open_fds() == before
    # no memory files to be had (a seccomp profile, out of descriptors): the kubeconfig as
    # it is, for the client's own files, and none of those made so far left open
    made: list[int] = []

    def refused(name: str, flags: int = 0) -> int:
        if made:
            raise OSError(24, "Too many open files")
        made.append(real(name))
        return made[-1]

    real = os.memfd_create
    monkeypatch.setattr(os, "memfd_create", refused)
    data = kubeconfig(files, "https://aks-one:443")
    kept, fds = credentials_in_memory(data)
    assert kept is data and fds == []
    with pytest.raises(OSError):
        os.fstat(made[0])


def test_credentials_that_are_base64_but_not_pem_are_refused_at_load(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Base64 of something that is not a PEM certificate, or a key that is not the
    certificate's, is refused when the kubeconfig is loaded, naming the entry and the key
    and never the value. The client would take them, and every request would then fail
    its TLS handshake as if the API server were unreachable: a retry forever instead of a
    fix."""
    files = make_cluster_ca(tmp_path / "one")
    other = make_cluster_ca(tmp_path / "two")
    secret = base64.b64encode(b"s3cr3t: not a certificate").decode()
    good = kubeconfig(files, "https://aks-one:443")
    assert api_client_from_kubeconfig(yaml.safe_dump(good)).configuration.host == \
        "https://aks-one:443"

    def broken(section: str, key: str, value: str) -> str:
        data = json.loads(json.dumps(good))
        data[section][0]["cluster" if section == "clusters" else "user"][key] = value
        return yaml.safe_dump(data)

    cases = [
        (broken("clusters", "certificate-authority-data", secret),
         r"^the kubeconfig's cluster 'aks-one': certificate-authority-data is base64 but not "
         r"of a PEM certificate"),
        # a PEM block whose body is not a certificate
        (broken("clusters", "certificate-authority-data", base64.b64encode(
            b"-----BEGIN CERTIFICATE-----\nczNjcjN0\n-----END CERTIFICATE-----\n").decode()),
         "certificate-authority-data is base64 but not of a PEM certificate"),
        # DER: the client's TLS reads a CA file as PEM only
        (broken("clusters", "certificate-authority-data", base64.b64encode(
            ssl.PEM_cert_to_DER_cert(files.ca.read_text())).decode()),
         "certificate-authority-data is base64 but not of a PEM certificate"),
        (broken("users", "client-certificate-data", b64(files.client_key)),
         "user 'clusterUser_rg_aks-one': client-certificate-data is base64 but not of a PEM "
         "certificate"),
        # another cluster's client key: a pair that does not match
        (broken("users", "client-key-data", b64(other.client_key)),
         "user 'clusterUser_rg_aks-one': client-key-data is not the private key of "
         "client-certificate-data"),
        (broken("users", "client-key-data", secret), "client-key-data is not the private key"),
        # an encrypted key: the client has no password to give
        (broken("users", "client-key-data", base64.b64encode(
            serialization.load_pem_private_key(files.client_key.read_bytes(), None)
            .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.BestAvailableEncryption(b"pw"))).decode()),
         "client-key-data is not the private key .* the key unencrypted"),
    ]
    before = open_fds()
    for text, says in cases:
        with pytest.raises(ClusterApiError, match=says) as raised:
            api_client_from_kubeconfig(text)
        assert "s3cr3t" not in str(raised.value) and "czNjcjN0" not in str(raised.value)
        # no value in a chained exception either
        assert raised.value.__cause__ is None and raised.value.__context__ is None
    assert open_fds() == before  # no memory file left behind by a refusal
    # what OpenSSL takes is taken: a CA bundle of two certificates with UTF-8 text around
    # them (certifi-style comments), CRLF line ends and no newline at the end; a key in
    # the traditional format (BEGIN EC PRIVATE KEY) as well as PKCS#8
    bundle = ("# Issuer: CN=NetLock Arany (Class Gold) Főtanúsítvány\n".encode()
              + other.ca.read_bytes() + b"\n# the cluster CA\n"
              + files.ca.read_bytes().replace(b"\n", b"\r\n").rstrip())
    traditional = serialization.load_pem_private_key(files.client_key.read_bytes(), None) \
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                       serialization.NoEncryption())
    assert traditional.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    taken = [broken("clusters", "certificate-authority-data", base64.b64encode(bundle).decode()),
             broken("users", "client-key-data", base64.b64encode(traditional).decode())]
    for text in taken:
        assert api_client_from_kubeconfig(text).configuration.host == "https://aks-one:443"
    # no memory files to be had: the certificates are checked all the same, from their
    # PEM blocks, and the client writes its own files
    monkeypatch.delattr(os, "memfd_create")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    for text, says in cases[:4]:
        with pytest.raises(ClusterApiError, match=says):
            api_client_from_kubeconfig(text)
    assert api_client_from_kubeconfig(taken[0]).configuration.host == "https://aks-one:443"
    loaded = api_client_from_kubeconfig(yaml.safe_dump(good)).configuration
    assert Path(loaded.ssl_ca_cert).parent == scratch  # the client's own files, as before
