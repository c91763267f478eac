"""Every Python code block of README.md and docs/*.md runs as written.

The blocks of one document run in order, each in its own Python process, in
one fresh directory (so a later block sees the files an earlier one made,
and "another process" in the text is one).  Conventions, for writers:

- a block whose first line is ``# file: NAME`` is a file the next blocks
  import (``models.py``): it is written to the directory, not run;
- a sync server runs for a document whose blocks name
  ``http://127.0.0.1:9090`` (the README's ``realmpy-server ... --port
  9090``), on a free port that replaces 9090 in the blocks' text;
- a block that is deliberately not runnable is preceded by the line
  ``<!-- doctest: skip: why -->`` (there is none today).
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.tools.conftest import ROOT, child_env

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SERVER_ADDRESS = "127.0.0.1:9090"
_FENCE = re.compile(r"^```python\s*$")
_SKIP = re.compile(r"^<!-- doctest: skip: .+ -->$")


@dataclass
class Block:
    doc: pathlib.Path
    line: int
    code: str
    skipped: bool

    @property
    def file_name(self) -> str | None:
        first = self.code.split("\n", 1)[0]
        return first[len("# file: ") :].strip() if first.startswith("# file: ") else None


def blocks(doc: pathlib.Path) -> list[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        if _FENCE.match(lines[i]):
            start = i + 1
            end = start
            while not lines[end].startswith("```"):
                end += 1
            skipped = i > 0 and bool(_SKIP.match(lines[i - 1].strip()))
            out.append(Block(doc, start + 1, "\n".join(lines[start:end]) + "\n", skipped))
            i = end
        i += 1
    return out


def _server(needed: bool, tmp: pathlib.Path) -> Iterator[str | None]:
    if not needed:
        yield None
        return
    from realmpy.server.testing import run_server

    data = tmp / "server-data"
    data.mkdir()
    with run_server(data) as (base, _proc):
        yield base.split("//", 1)[1]


@pytest.mark.parametrize("doc", [d for d in DOCS if blocks(d)], ids=lambda p: p.name)
def test_python_blocks_run_as_written(doc: pathlib.Path, tmp_path: pathlib.Path) -> None:
    found = blocks(doc)
    needs_server = any(SERVER_ADDRESS in b.code for b in found)
    for address in _server(needs_server, tmp_path):
        for n, block in enumerate(found):
            where = f"{doc.name} line {block.line}"
            code = block.code if address is None else block.code.replace(SERVER_ADDRESS, address)
            if block.skipped:
                continue
            if block.file_name is not None:
                (tmp_path / block.file_name).write_text(code, encoding="utf-8")
                continue
            script = tmp_path / f"block_{n}.py"
            script.write_text(code, encoding="utf-8")
            env = child_env()
            env["PYTHONPATH"] += f"{':'}{tmp_path}"
            done = subprocess.run(
                [sys.executable, str(script)],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert done.returncode == 0, f"{where} failed:\n{done.stderr}"


def test_the_conventions_are_found() -> None:
    readme = blocks(ROOT / "README.md")
    assert [b.file_name for b in readme if b.file_name] == ["models.py"]
    assert all(not b.skipped for b in readme)
    assert any(SERVER_ADDRESS in b.code for b in readme)  # the sync snippet runs against a server
