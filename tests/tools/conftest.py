"""Fixtures of the tools' tests: the console scripts, and files made by another process.

Every command runs as a user would run it: the installed ``realmpy`` console
script in a subprocess, importing this tree (``PYTHONPATH``), on a file
written by a separate process with its own models (``tests/tools/appmodels.py``),
which the command has never seen.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def script(name: str) -> str:
    """The installed console script ``name`` (``pip install -e .`` puts it there)."""
    here = pathlib.Path(sysconfig.get_path("scripts")) / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.fail(
            f"the console script {name!r} is not installed: pip install -e '.[test,server]'"
        )
    return found


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_app(*args: str) -> str:
    """Run tests/tools/appmodels.py in its own process; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.tools.appmodels", *args],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def realmpy(
    *args: str, input: str | None = None, script_name: str = "realmpy"
) -> subprocess.CompletedProcess[str]:
    """``realmpy ARGS`` through the console script."""
    return subprocess.run(
        [script(script_name), *args],
        cwd=ROOT,
        env=child_env(),
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def app_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A realm written by the app's own process (read-only for the tests that share it)."""
    path = str(tmp_path_factory.mktemp("app") / "app.realm")
    run_app("make", path)
    return path
