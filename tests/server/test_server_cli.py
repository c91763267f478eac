"""The ``realmpy-server`` command: admin commands on SQLite and PostgreSQL, ``--version``,
``python -m realmpy.server``, a missing ``server`` extra, and the log formats.

The admin commands run through the console script while a server serves the
same store, and their effect is checked over HTTP: a user added by the
command logs in, a disabled one cannot (and their session ends), a reset
password replaces the old one, an API key created by the command logs in
until it is revoked, a deleted user is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

import realmpy
from realmpy.server.testing import run_server
from realmpy.wire.protocol import pack, unpack

P = "/api/v1/app/default"
MSGPACK = {"content-type": "application/msgpack"}
T = 60.0
CONFIG = '[auth]\nscrypt_n = 1024\n[rules]\nread = "TRUEPREDICATE"\nwrite = "TRUEPREDICATE"\n'


def console_script() -> list[str]:
    """The installed ``realmpy-server`` entry point (it imports the package on PYTHONPATH)."""
    found = shutil.which("realmpy-server") or str(Path(sys.executable).parent / "realmpy-server")
    if not Path(found).exists():
        pytest.skip("the realmpy-server console script is not installed (pip install -e .)")
    return [found]


def env() -> dict[str, str]:
    root = str(Path(realmpy.__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*console_script(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env(),
        timeout=T,
    )


@pytest.fixture
def store_args(database: str | None, tmp_path: Path) -> list[str]:
    """``--data DIR`` or ``--database URL`` (a fresh PostgreSQL schema)."""
    return ["--data", str(tmp_path)] + ([] if database is None else ["--database", database])


def test_admin_commands_act_on_the_served_store(tmp_path: Path, store_args: list[str]) -> None:
    config = tmp_path / "server.toml"
    config.write_text(CONFIG)
    common = [*store_args, "--config", str(config)]
    database = store_args[3] if len(store_args) > 2 else None
    with run_server(tmp_path, database=database, config=config) as (base, _proc):
        http = httpx.Client(base_url=base, timeout=T)

        def login(body: dict[str, Any]) -> tuple[int, Any]:
            r = http.post(P + "/auth/login", content=pack(body), headers=MSGPACK)
            return r.status_code, unpack(r.content)

        def pw(password: str) -> tuple[int, Any]:
            return login(
                {"provider": "email_password", "email": "ann@example.com", "password": password}
            )

        def profile(tok: str) -> int:
            return http.get(
                P + "/auth/profile", headers={"authorization": f"Bearer {tok}"}
            ).status_code

        added = run("users", "add", "Ann@Example.com", *common, stdin="first password\n")
        assert added.returncode == 0, added.stderr
        uid = added.stdout.strip()
        status, tokens = pw("first password")
        assert status == 200 and tokens["user_id"] == uid
        listed = json.loads(run("users", "list", "--json", *common).stdout)
        assert [(u["id"], u["email"], u["status"]) for u in listed] == [
            (uid, "ann@example.com", "active")
        ]
        assert "ann@example.com" in run("users", "list", *common).stdout

        # disable: logins refused, the live session ends at once; enable undoes the refusal
        assert run("users", "disable", "ann@example.com", *common).returncode == 0
        assert pw("first password")[1]["error"] == "account_disabled"
        assert profile(tokens["access_token"]) == 401
        assert json.loads(run("users", "list", "--json", *common).stdout)[0]["status"] == "disabled"
        assert run("users", "enable", uid, *common).returncode == 0
        status, tokens = pw("first password")
        assert status == 200

        # reset-password: the old password stops working, and so do the sessions
        short = run("users", "reset-password", uid, *common, stdin="short\n")
        assert short.returncode == 1 and "at least 8 characters" in short.stderr
        assert (
            run("users", "reset-password", uid, *common, stdin="second password\n").returncode == 0
        )
        assert pw("first password")[1]["error"] == "invalid_credentials"
        assert profile(tokens["access_token"]) == 401
        assert pw("second password")[0] == 200

        # api-keys: created for the user, logs in, listed, revoked
        created = run("api-keys", "create", "ann@example.com", "ci", *common)
        assert created.returncode == 0, created.stderr
        fields = dict(line.split(" ", 1) for line in created.stdout.splitlines()[:2])
        assert login({"provider": "api_key", "key": fields["key"]})[1]["user_id"] == uid
        keys = json.loads(run("api-keys", "list", "--user", uid, "--json", *common).stdout)
        assert [(k["id"], k["user"], k["name"]) for k in keys] == [(fields["id"], uid, "ci")]
        assert run("api-keys", "revoke", fields["id"], *common).returncode == 0
        assert (
            login({"provider": "api_key", "key": fields["key"]})[1]["error"]
            == "invalid_credentials"
        )
        again = run("api-keys", "revoke", fields["id"], *common)
        assert again.returncode == 1 and "no API key" in again.stderr

        # delete: gone from the list, cannot log in
        assert run("users", "delete", "ann@example.com", *common).returncode == 0
        assert json.loads(run("users", "list", "--json", *common).stdout) == []
        assert pw("second password")[1]["error"] == "invalid_credentials"
        missing = run("users", "disable", "ann@example.com", *common)
        assert missing.returncode == 1 and "no user" in missing.stderr
        http.close()


def test_admin_commands_need_a_store() -> None:
    out = run("users", "list")
    assert out.returncode == 2 and "--data DIR or --database URL" in out.stderr


def test_version_and_python_dash_m(tmp_path: Path) -> None:
    want = f"realmpy-server {realmpy.__version__}"
    assert run("--version").stdout.strip() == want
    out = subprocess.run(
        [sys.executable, "-m", "realmpy.server", "--version"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=T,
    )
    assert out.stdout.strip() == want


def test_without_the_server_extra_it_says_what_to_install(tmp_path: Path) -> None:
    # uvicorn made unimportable, as in an install without the 'server' extra.
    code = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "from realmpy.server.cli import main\n"
        f"sys.exit(main(['--data', {str(tmp_path)!r}, '--port', '0']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=T
    )
    assert out.returncode == 2
    assert "pip install 'realmpy[server]'" in out.stderr and "uvicorn" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_log_formats_carry_no_ansi_escapes(tmp_path: Path, fmt: str) -> None:
    with run_server(tmp_path, log_level="info", extra_args=["--log-format", fmt]) as (base, _p):
        httpx.get(base + "/health", timeout=T)
    text = next(tmp_path.glob("server-*.log")).read_text()
    assert "\x1b[" not in text and "\\u001b" not in text
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("*", " "))]
    started = [ln for ln in lines if "server started" in ln]
    assert started
    if fmt == "json":
        records = [json.loads(ln) for ln in lines]
        assert any(r["msg"] == "server started" and r["app_id"] == "default" for r in records)
        assert any(r["logger"].startswith("uvicorn") for r in records)
    else:
        assert " info realmpy.server: server started app_id=default" in started[0]
