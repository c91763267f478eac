"""Describe the machine a benchmark ran on.

Benchmark numbers mean little without the hardware, kernel, file system and
library versions behind them, so every run records them next to its results.
Run as a script to print the description: ``python bench/machine.py [DIR]``.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path

__all__ = [
    "describe",
    "filesystem_of",
    "format_description",
    "git_commit",
    "load_average",
]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _unescape_mount(field: str) -> str:
    # /proc/mounts escapes blanks and backslashes as octal (\040 etc.).
    return field.encode().decode("unicode_escape")


def filesystem_of(path: str | os.PathLike[str]) -> str:
    """'ext4 on /dev/vda (mounted at /)' for the mount holding *path*.

    Durable-commit timings depend entirely on the file system and device
    (tmpfs makes fdatasync free), so the bench reports where its files live.
    """
    real = os.path.realpath(path)
    best: tuple[str, str, str] | None = None
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        dev, mnt, fstype = (
            _unescape_mount(parts[0]),
            _unescape_mount(parts[1]),
            parts[2],
        )
        inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
        if inside and (best is None or len(mnt) >= len(best[1])):
            best = (dev, mnt, fstype)
    if best is None:
        return "unknown"
    dev, mnt, fstype = best
    return f"{fstype} on {dev} (mounted at {mnt})"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_commit(repo: str | os.PathLike[str]) -> str:
    """Short commit of *repo*, with '+dirty' when tracked files differ from it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def describe(bench_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Machine and software facts as an ordered mapping of label -> value."""
    repo = Path(__file__).resolve().parent.parent
    lmdb_version = _version("lmdb")
    try:
        import lmdb

        lmdb_version += " (LMDB " + ".".join(map(str, lmdb.version())) + ")"
    except ImportError:
        pass
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "ram": _ram_gib(),
        "kernel": f"{platform.system()} {platform.release()}",
        "bench dir": str(bench_dir) if bench_dir is not None else "-",
        "filesystem": filesystem_of(bench_dir) if bench_dir is not None else "-",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "cffi": _version("cffi"),
        "lmdb": lmdb_version,
        "sqlite": sqlite3.sqlite_version,
        "realmpy": _version("realmpy"),
        "commit": git_commit(repo),
        "load average": load_average(),
    }


def format_description(info: dict[str, str]) -> str:
    width = max(len(k) for k in info)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in info.items())


if __name__ == "__main__":
    print(format_description(describe(sys.argv[1] if len(sys.argv) > 1 else os.getcwd())))
