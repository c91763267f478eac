"""Running a child interpreter to its exit, for the tests that exiting is
prompt (tests/storage/test_storage_exit.py, tests/objects/test_exit.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Bounds the test only: a child that has not exited by then hung.
HANG_GUARD_S = 120


def exit_code(code: str, what: str) -> tuple[int, str]:
    """Run ``code`` in a new interpreter; its exit status and stderr.  Fails
    the test if it does not exit within :data:`HANG_GUARD_S`."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD_S
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the process hung at exit ({what})")
    return done.returncode, done.stderr
