"""The ``realmpy`` command on files whose models it has never seen (console script, subprocesses)."""

from __future__ import annotations

import json
import pathlib
import shutil
import sys
import types

import pytest

from realmpy import Realm, __version__, codec
from realmpy.schema import Schema
from realmpy.storage import Environment
from realmpy.tools.filemodels import model_classes, realm_configuration
from realmpy.tools.storedfile import read_stored
from tests.tools.conftest import realmpy, run_app


def _one_line_error(done: object, status: int) -> str:
    assert done.returncode == status, (done.stdout, done.stderr)  # type: ignore[attr-defined]
    err: str = done.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_version_of_both_commands() -> None:
    assert realmpy("--version").stdout.strip() == f"realmpy {__version__}"
    server = realmpy("--version", script_name="realmpy-server")
    assert server.returncode == 0
    assert __version__ in server.stdout


def test_help_lists_the_commands_and_demo_help_has_no_rst() -> None:
    out = realmpy("--help").stdout
    for command in ("info", "schema", "query", "dump", "load", "check", "compact", "studio"):
        assert f"\n  {command} " in out
    demo = realmpy("demo", "--help")
    assert demo.returncode == 0
    assert "``" not in demo.stdout and "::" not in demo.stdout


def test_info_reads_counts_and_state_from_the_file(app_file: str) -> None:
    done = realmpy("info", app_file, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["classes"] == {"Person": 3, "Car": 3, "Place": 1}
    assert info["embedded_classes"] == ["Stop"]
    assert info["history"] == "local" and info["format"] >= 1
    assert info["file_size"] > 0 and "sync" not in info
    text = realmpy("info", app_file).stdout
    assert "Person" in text and "(embedded)" in text


def test_schema_python_prints_models_that_match_the_stored_schema(app_file: str) -> None:
    stored = read_stored(app_file)
    source = realmpy("schema", app_file, "--python").stdout
    assert "class Person(Object):" in source and "class Stop(EmbeddedObject):" in source
    # the printed classes, imported as a module, describe exactly the stored schema
    module = types.ModuleType("printed_models")
    sys.modules[module.__name__] = module
    try:
        exec(compile(source, "printed_models.py", "exec"), module.__dict__)
        printed = [getattr(module, name) for name in stored.schema.names()]
        assert Schema.from_models(printed) == stored.schema
    finally:
        del sys.modules[module.__name__]
    text = realmpy("schema", app_file).stdout
    assert "id: objectid primary key" in text and "name: str indexed" in text


def test_query_prints_json_lines_with_tagged_arguments(app_file: str) -> None:
    done = realmpy("query", app_file, "Person", "age > $0 SORT(age DESC)", "30")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["name"] for r in rows] == ["Cé", "Bob"]
    assert rows[1]["token"] == {"$uuid": "00000000-0000-0000-0000-000000000002"}
    by_id = realmpy("query", app_file, "Person", "id == $0", '{"$oid": "000000000000000000000002"}')
    assert [json.loads(x)["name"] for x in by_id.stdout.splitlines()] == ["Bob"]
    limited = realmpy("query", app_file, "Car", "miles >= 0", "--limit", "1")
    assert len(limited.stdout.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["query", "{file}", "Person", "age >"], "position 5"),
        (["query", "{file}", "Nobody", "TRUEPREDICATE"], "no class 'Nobody'"),
        (["query", "{file}", "Person", "age > $0"], "QueryArgumentError"),
        (["info", "{dir}/missing.realm"], "no such realm file"),
        (["dump", "{file}", "--format", "csv"], "--class"),
        (["dump", "{file}", "--format", "xml"], "invalid choice"),
        (["load", "{file}", "{dir}/nothing.jsonl"], "No such file"),
        (["bogus"], "unknown command"),
    ],
)
def test_errors_are_one_line_with_status_2(
    app_file: str, tmp_path: pathlib.Path, args: list[str], says: str
) -> None:
    argv = [a.format(file=app_file, dir=tmp_path) for a in args]
    err = _one_line_error(realmpy(*argv), 2)
    assert says in err


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_dump_then_load_round_trips_exactly(
    app_file: str, tmp_path: pathlib.Path, fmt: str
) -> None:
    first = realmpy("dump", app_file, "--format", fmt)
    assert first.returncode == 0, first.stderr
    dump_file = tmp_path / f"dump.{fmt}"
    dump_file.write_text(first.stdout)
    copy = str(tmp_path / "copy.realm")
    loaded = realmpy("load", copy, str(dump_file))
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded 7 objects" in loaded.stdout
    again = realmpy("dump", copy, "--format", fmt)
    assert again.stdout == first.stdout
    # and the app, with its own models, reads the same values from both files
    assert run_app("show", copy) == run_app("show", app_file)


def test_load_reads_stdin_and_refuses_a_realm_that_holds_objects(
    app_file: str, tmp_path: pathlib.Path
) -> None:
    dump = realmpy(
        "dump", app_file, "--class", "Place", "--class", "Person", "--class", "Car"
    ).stdout
    copy = str(tmp_path / "copy.realm")
    assert realmpy("load", copy, "-", input=dump).returncode == 0
    assert "already holds 7 objects" in _one_line_error(realmpy("load", copy, input=dump), 2)
    bad = _one_line_error(realmpy("load", str(tmp_path / "x.realm"), input='{"a": 1}\n'), 2)
    assert "not a realmpy dump" in bad


def test_dump_csv_flattens_one_class(app_file: str) -> None:
    done = realmpy("dump", app_file, "--class", "Car", "--format", "csv")
    lines = done.stdout.splitlines()
    assert lines[0] == "$id,make,miles,owner,extra"
    assert lines[1].startswith("1,Saab,0,")
    assert lines[3].endswith(',"""5"""')  # a mixed value's cell is its JSON: a str
    assert len(lines) == 4


def test_check_passes_a_sound_file_and_names_damage(app_file: str, tmp_path: pathlib.Path) -> None:
    done = realmpy("check", app_file)
    assert done.returncode == 0, done.stderr
    assert "sound" in done.stdout and "7 objects" in done.stdout
    damaged = tmp_path / "damaged.realm"
    shutil.copy(app_file, damaged)
    with Environment(str(damaged)) as env, env.write() as txn:
        txn.put("i:Person:name", codec.encode_keys("Zed", "nobody"), b"")
        txn.put("o:Car", codec.encode_key(99), b"\xc1")
    err = _one_line_error(realmpy("check", str(damaged)), 1)
    assert "index i:Person:name" in err and "names no stored Person" in err
    assert "Car 99" in err and "corrupt object record" in err
    # damaged bytes in every page but the two meta pages: the engine names a page
    torn = tmp_path / "torn.realm"
    shutil.copy(app_file, torn)
    with Environment(str(torn)) as env:
        stats = env.stats()
    with open(torn, "r+b") as f:
        for page in range(2, stats.pages_used):
            f.seek(page * stats.page_size + 100)
            f.write(b"\xde\xad" * 16)
    err = _one_line_error(realmpy("check", str(torn)), 1)
    assert "CorruptError" in err and "page" in err


def test_compact_says_what_it_saved_and_waits_for_other_processes(
    tmp_path: pathlib.Path,
) -> None:
    path = str(tmp_path / "big.realm")
    run_app("make", path, "400")
    stored = read_stored(path)
    config = realm_configuration(path, stored, model_classes(stored.schema), read_only=False)
    with Realm(config) as realm, realm.write():
        realm.delete_all()  # most pages become free
    done = realmpy("compact", path)
    assert done.returncode == 0, done.stderr
    assert "saved" in done.stdout and "(saved 0 B)" not in done.stdout
    with Realm(config):  # another process has it open: refused, nothing done
        err = _one_line_error(realmpy("compact", path), 2)
    assert "open in another process" in err
