"""``https`` base URLs: a real TLS server on 127.0.0.1 with a CA made here.

Proves that the client verifies certificates by default (a certificate from
an unknown CA is a typed ``ConnectionFailedError`` with code ``tls_error``,
not a silent success) and that ``AppConfiguration(verify=<CA bundle>)``
trusts that CA for every request: login, the agent's uploads and
downloads, and ``wait_for_download``'s health check.

The certificates come from the ``openssl`` command-line tool (the test is
skipped without it); the server is ``realmpy-server --tls-cert --tls-key``
(for deployments without a reverse proxy; behind one, the proxy ends TLS).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

pytest.importorskip(
    "uvicorn", reason="the server extra is not installed: pip install -e '.[test,server]'"
)

from realmpy import App, AppConfiguration, Configuration, Credentials, Realm
from realmpy.objectid import ObjectId
from realmpy.schema import Object, field
from realmpy.server.testing import run_server
from realmpy.sync.errors import ConnectionFailedError

T = 60.0


class Note(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    text: str = ""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_certs(d: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate for IP 127.0.0.1, server key), signed by that CA."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=realmpy test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )
    _openssl(
        "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d
    )
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        cwd=d,
    )
    return d / "ca.pem", d / "server.pem", d / "server.key"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(https base URL, CA bundle path) of a TLS sync server."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command-line tool is not installed")
    d = tmp_path_factory.mktemp("tls")
    ca, cert, key = _make_certs(d)
    data = d / "data"
    data.mkdir()
    with run_server(data, app_id="demo", tls=(cert, key, ca), timeout=60) as (base, _proc):
        yield base, ca


def test_unknown_ca_is_refused_by_default(tmp_path: Path, tls_server: tuple[str, Path]) -> None:
    base, _ca = tls_server
    app = App(AppConfiguration("demo", base, base_file_path=str(tmp_path / "app")))
    assert app.config.verify is True
    with pytest.raises(ConnectionFailedError) as info:
        app.log_in(Credentials.anonymous())
    assert info.value.code == "tls_error"
    assert "certificate" in str(info.value).lower()
    assert app.current_user is None


def test_verify_with_ca_bundle_syncs(tmp_path: Path, tls_server: tuple[str, Path]) -> None:
    base, ca = tls_server
    apps = [
        App(
            AppConfiguration(
                "demo", base, base_file_path=str(tmp_path / n), verify=str(ca), long_poll_seconds=2
            )
        )
        for n in ("a", "b")
    ]
    realms = []
    for app, name in zip(apps, ("a", "b")):
        user = app.log_in(Credentials.anonymous())
        realm = Realm(
            Configuration.flexible_sync(user, [Note], path=str(tmp_path / f"{name}.realm"))
        )
        with realm.subscriptions.update() as subs:
            subs.add(realm.all(Note), name="all")
        realm.subscriptions.wait_for_synchronization(timeout=T)
        realms.append(realm)
    a, b = realms
    with a.write():
        note = a.add(Note(text="over TLS"))
    a.sync_session.wait_for_upload(timeout=T)
    b.sync_session.wait_for_download(timeout=T)
    got = b.find(Note, note.id)
    assert got is not None and got.text == "over TLS"
    assert a.sync_session.connection_state.value == "connected"
    for r in realms:
        r.close()
    for app in apps:  # this thread's idle TLS connection would hold up the server's shutdown
        app._transport.close_thread_session()


def test_tls_flags_go_together(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "realmpy.server",
            "--data",
            str(tmp_path),
            "--port",
            "0",
            "--tls-cert",
            str(tmp_path / "c.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=T,
    )
    assert out.returncode == 2
    assert "--tls-cert and --tls-key go together" in out.stderr


def test_plain_http_to_the_tls_port_gets_no_answer(tls_server: tuple[str, Path]) -> None:
    base, _ca = tls_server
    with pytest.raises(requests.ConnectionError):
        requests.get(base.replace("https://", "http://") + "/health", timeout=T)
