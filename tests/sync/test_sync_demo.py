"""``realmpy demo`` (the README's main job) runs end to end, and the CLI dispatches."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip(
    "uvicorn", reason="the server extra is not installed: pip install -e '.[test,server]'"
)


def test_demo_runs_end_to_end() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "realmpy", "demo", "--objects", "20", "--device-objects", "5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "OK: every car reached every process." in out
    assert "phone file holds 45 cars" in out and "commit in a secondary → on phone" in out


def test_cli_usage() -> None:
    from realmpy.cli import main

    assert main(["--help"]) == 0
    assert main(["nope"]) == 2
