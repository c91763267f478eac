"""A secondary process with newer models extends the file's schema while the main process runs
the old ones (issue 12, item 1).  Real processes and a real server; every wait is a condition
with a deadline.

Before: the agent pushed its own models' schema, so the secondary's changesets were refused
(``400 unknown_table``) forever and every later upload queued behind them.  Now the agent
pushes the file's stored schema (the union of every process's models): a development-mode
server adopts it, and a server with a fixed schema gets the rest while the refused changesets
are quarantined, reported once, and do not block anything else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "uvicorn", reason="the server extra is not installed: pip install -e '.[test,server]'"
)

from realmpy.config import Configuration
from realmpy.realm import Realm
from realmpy.server.testing import run_server
from tests.sync.processes import Proc

_FIXED = """app_id = "demo"
[schema.Car]
primary_key = "id"
fields = { id = "objectid", make = "string", seq = "int", miles = "int" }
[rules]
read = "TRUEPREDICATE"
write = "TRUEPREDICATE"
"""


def _all_events(p: Proc) -> list[dict[str, Any]]:
    """Every event of a finished process (the ones a wait consumed and the rest)."""
    p.wait_for("closed")
    while not p.events.empty():
        p.seen.append(p.events.get())
    return p.seen


def _quarantined(path: str) -> list[Any]:
    from tests.sync.sync_worker import Car

    with Realm(Configuration.disconnected_sync([Car], path=path)) as realm:
        session = realm.sync_session
        assert session is not None and session.role == "secondary"
        quarantined: list[Any] = session.quarantined
        return quarantined


def _main_and_extender(tmp_path: Path, base: str, procs: list[Proc]) -> tuple[str, Proc]:
    """The main process (old models) syncing ``cars.realm``, and a secondary that wrote three
    objects of a class the main process does not know, then a car."""
    file_a = str(tmp_path / "cars.realm")
    main = Proc("main", file_a, str(tmp_path / "app-a"), base)
    procs.append(main)
    main.wait_for("role", lambda e: e["role"] == "agent")
    ext = Proc("extender", file_a, "3")
    procs.append(ext)
    ext.wait_for("wrote")
    return file_a, main


def test_secondary_extends_schema_in_development_mode(tmp_path: Path, procs: list[Proc]) -> None:
    data = tmp_path / "server"
    data.mkdir()
    with run_server(data, app_id="demo") as (base, _):
        file_a, main = _main_and_extender(tmp_path, base, procs)
        device = Proc("extra-device", str(tmp_path / "b.realm"), str(tmp_path / "app-b"), base, "3")
        procs.append(device)
        done = device.wait_for("done")
        assert done["ok"] and done["extras"] == 3, done  # the secondary's new class reached it
        main.stop()
        assert not [e for e in _all_events(main) if e["event"] == "sync_error"]
        assert _quarantined(file_a) == []


def test_secondary_extends_a_fixed_schema(tmp_path: Path, procs: list[Proc]) -> None:
    conf = tmp_path / "server.toml"
    conf.write_text(_FIXED)
    data = tmp_path / "server"
    data.mkdir()
    with run_server(data, app_id="demo", config=conf) as (base, _):
        file_a, main = _main_and_extender(tmp_path, base, procs)
        err = main.wait_for("sync_error")
        assert err["type"] == "SyncSchemaError" and err["code"] == "unknown_table", err
        assert ["Extra", None] in err["detail"]["refused"]
        # The car written after the refused objects still uploads: another device gets it.
        device = Proc("device", str(tmp_path / "b.realm"), str(tmp_path / "app-b"), base, "0", "1")
        procs.append(device)
        done = device.wait_for("done")
        assert done["ok"] and done["makes"] == {"after-extra": 1}, done
        # More of the same refused class: quarantined too, not reported again; later cars upload.
        ext2 = Proc("extender", file_a, "2")
        procs.append(ext2)
        ext2.wait_for("wrote")
        device2 = Proc("device", str(tmp_path / "c.realm"), str(tmp_path / "app-c"), base, "0", "2")
        procs.append(device2)
        done2 = device2.wait_for("done")
        assert done2["ok"] and done2["makes"] == {"after-extra": 2}, done2
        main.stop()
        errors = [e for e in _all_events(main) if e["event"] == "sync_error"]
        assert len(errors) == 1, errors
        quarantined = _quarantined(file_a)
        assert len(quarantined) == 5 and all(q.tables == ("Extra",) for q in quarantined)
