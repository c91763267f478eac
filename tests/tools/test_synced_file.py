"""``realmpy info`` and Studio on a synced file whose agent is another process."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from realmpy.server.testing import run_server
from tests.tools.conftest import ROOT, child_env, realmpy
from tests.tools.test_studio import _serve


def test_info_and_studio_show_the_agent_and_subscriptions(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "server"
    data.mkdir()
    path = str(tmp_path / "cars.realm")
    with run_server(data) as (base, _server):
        main = subprocess.Popen(
            [sys.executable, "-m", "tests.tools.appmodels", "sync-main", path, base],
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert main.stdout is not None and main.stdout.readline().strip() == "ready"
            info = json.loads(realmpy("info", path, "--json").stdout)
            assert info["history"] == "sync"
            assert info["classes"] == {"Trip": 1}
            assert info["sync"]["agent_pid"] == main.pid
            assert info["sync"]["connection_state"] == "connected"
            assert info["sync"]["pending_changesets"] == 0
            text = realmpy("info", path).stdout
            assert f"agent           pid {main.pid} (connected)" in text
            for served in _serve(path):
                sync = served.api("/api/info")["sync"]
                assert sync["agent_pid"] == main.pid
                assert [s["name"] for s in sync["subscriptions"]] == ["all-trips"]
                assert sync["subscription_set"]["state"] == "complete"
        finally:
            assert main.stdin is not None
            main.stdin.close()
            main.wait(timeout=60)
