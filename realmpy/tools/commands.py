"""The ``realmpy`` subcommands that inspect a realm file: info, schema,
query, dump, load, check, compact, upgrade (studio lives in :mod:`realmpy.tools.studio`).

Each works on a file whose models it has never seen (the schema stored in
the file, :mod:`realmpy.tools.storedfile`).  Errors are one line on stderr,
never a traceback: exit status 2 for bad arguments or a file the command
cannot use, 1 for a check that found damage (docs/tools.md).

Each command imports the modules it needs when it runs (function-level
imports, on purpose): ``realmpy info`` then loads the storage layer only,
not the object layer and query engine that ``query`` and ``dump`` need, and
``realmpy --help`` needs neither.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

from realmpy.errors import (
    ConfigurationError,
    CorruptError,
    QuerySyntaxError,
    RealmpyError,
)
from realmpy.tools import jsonformat as J

__all__ = ["COMMANDS", "UsageError", "one_line", "run"]


class UsageError(Exception):
    """Bad arguments: printed as one line, exit status 2."""


class CheckFailed(Exception):
    """``realmpy check`` found a problem: printed as one line, exit status 1."""


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (and exit status 2 through :func:`run`)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (realmpy {self.prog.split()[-1]} --help)")


def one_line(exc: BaseException) -> str:
    """An error as one line: the library's message, without the caret display."""
    if isinstance(exc, QuerySyntaxError):
        return f"{type(exc).__name__}: {exc.message} at position {exc.position} in {exc.text!r}"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, UsageError) else text


def _path_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="the realm file")


# ----------------------------------------------------------------------------- info


def _file_format(path: str) -> int:
    """The format version in the first meta record (docs/format.md: byte 40 of page 0)."""
    with open(path, "rb") as f:
        head = f.read(44)
    return int.from_bytes(head[40:44], "little") if len(head) == 44 else 0


def info_data(path: str) -> dict[str, Any]:
    from realmpy.tools.storedfile import stored_env

    with stored_env(path) as (env, stored):
        stats = env.stats()
        readers = [r for r in env.readers() if r.version and r.alive]
        out: dict[str, Any] = {
            "path": os.path.abspath(path),
            "format": _file_format(path),
            "file_size": stats.file_size,
            "page_size": stats.page_size,
            "pages_used": stats.pages_used,
            "free_pages": stats.free_pages,
            "version": stats.version,
            "oldest_version": stats.oldest_version,
            "active_versions": stats.active_versions,
            "readers": len(readers),
            "reader_pids": sorted({r.pid for r in readers}),
            "history": stored.history,
            "schema_version": stored.schema_version,
            "classes": stored.counts,
            "embedded_classes": [c.name for c in stored.schema.classes if c.embedded],
        }
        if stored.synced:
            from realmpy.tools.syncstate import sync_state

            with env.read() as snap:
                out["sync"] = sync_state(path, snap)
        return out


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)  # pragma: no cover


def cmd_info(argv: Sequence[str], out: TextIO) -> int:
    p = Parser(
        prog="realmpy info",
        description="What a realm file holds: format, size, "
        "versions, readers, history, classes with object counts, sync state.",
    )
    _path_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    data = info_data(args.path)
    if args.json:
        out.write(json.dumps(data, indent=2) + "\n")
        return 0
    used = data["pages_used"] * data["page_size"]
    lines = [
        f"path            {data['path']}",
        f"format          {data['format']}",
        f"size            {_human_size(data['file_size'])} ({_human_size(used)} used, "
        f"{data['free_pages']} free pages)",
        f"version         {data['version']} (oldest pinned {data['oldest_version']}, "
        f"{data['active_versions']} active)",
        f"readers         {data['readers']}"
        + (f" (pids {', '.join(map(str, data['reader_pids']))})" if data["reader_pids"] else ""),
        f"history         {data['history']}",
        f"schema_version  {data['schema_version']}",
        "classes",
    ]
    width = max((len(n) for n in [*data["classes"], *data["embedded_classes"]]), default=0)
    for name, count in data["classes"].items():
        lines.append(f"  {name.ljust(width)}  {count}")
    for name in data["embedded_classes"]:
        lines.append(f"  {name.ljust(width)}  (embedded)")
    sync = data.get("sync")
    if sync is not None:
        agent = sync["agent_pid"]
        lines.append("sync")
        lines.append(
            f"  agent           {'pid ' + str(agent) if agent else 'none running'}"
            f" ({sync['connection_state']})"
        )
        lines.append(f"  pending upload  {sync['pending_changesets']} changesets")
        if sync["error"]:
            lines.append(f"  final error     {sync['error']}")
    out.write("\n".join(lines) + "\n")
    return 0


# ----------------------------------------------------------------------------- schema


def cmd_schema(argv: Sequence[str], out: TextIO) -> int:
    from realmpy.tools.filemodels import model_source
    from realmpy.tools.storedfile import read_stored

    p = Parser(prog="realmpy schema", description="The schema stored in a realm file.")
    _path_arg(p)
    p.add_argument("--python", action="store_true", help="print model classes that match it")
    p.add_argument("--json", action="store_true", help="print it as JSON (Schema.to_dict)")
    args = p.parse_args(argv)
    stored = read_stored(args.path)
    if args.python:
        out.write(model_source(stored.schema, os.path.basename(args.path), stored.schema_version))
        return 0
    if args.json:
        out.write(json.dumps(stored.schema.to_dict(), indent=2) + "\n")
        return 0
    out.write(f"schema_version {stored.schema_version}\n")
    for c in stored.schema.classes:
        kind = " (embedded)" if c.embedded else ""
        out.write(f"\n{c.name}{kind}\n")
        for prop in c.properties:
            flags = " primary key" if prop.primary_key else (" indexed" if prop.indexed else "")
            flags += " full-text indexed" if prop.fulltext else ""
            out.write(f"  {prop.name}: {prop.describe()}{flags}\n")
    return 0


# ----------------------------------------------------------------------------- query


def cmd_query(argv: Sequence[str], out: TextIO) -> int:
    from realmpy.tools.dumpload import DumpLinks, encode_object, json_line
    from realmpy.tools.filemodels import open_realm

    p = Parser(
        prog="realmpy query",
        description="Objects of CLASS matching an RQL query, as JSON Lines. Each ARG "
        "($0, $1, ...) is a JSON value in the dump encoding (docs/tools.md), or else "
        "taken as a string.",
    )
    _path_arg(p)
    p.add_argument("class_name", metavar="CLASS")
    p.add_argument("rql", metavar="RQL")
    p.add_argument("args", metavar="ARG", nargs="*")
    p.add_argument("--limit", type=int, default=None, help="print at most N objects")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit must be >= 0")
    values = [J.parse_arg(a) for a in args.args]
    opened = open_realm(args.path)
    try:
        cls = opened.model(args.class_name)
        results = opened.realm.query(cls, args.rql, *values)
        schema = opened.stored.schema
        oschema = schema[args.class_name]
        links = DumpLinks(opened)
        for n, obj in enumerate(results):
            if args.limit is not None and n >= args.limit:
                break
            line = encode_object(schema, oschema, obj, links)
            out.write(json_line(line) + "\n")
    finally:
        opened.close()
    return 0


# ----------------------------------------------------------------------------- dump / load


def cmd_dump(argv: Sequence[str], out: TextIO) -> int:
    from realmpy.tools.dumpload import dump
    from realmpy.tools.filemodels import open_realm

    p = Parser(
        prog="realmpy dump",
        description="Every object, streamed: JSON Lines (a header with the schema, then "
        "one object a line), one JSON document, or CSV of one class (docs/tools.md).",
    )
    _path_arg(p)
    p.add_argument(
        "--class",
        dest="classes",
        action="append",
        metavar="C",
        help="only this class (repeatable; CSV needs exactly one)",
    )
    p.add_argument("--format", choices=("jsonl", "json", "csv"), default="jsonl")
    args = p.parse_args(argv)
    opened = open_realm(args.path)
    try:
        classes = args.classes or list(opened.stored.counts)
        for name in classes:
            opened.model(name)
        if args.format == "csv" and len(classes) != 1:
            raise UsageError("--format csv writes one class: name it with --class")
        dump(opened, out, args.format, classes)
    finally:
        opened.close()
    return 0


def cmd_load(argv: Sequence[str], out: TextIO) -> int:
    from realmpy.tools.dumpload import load

    p = Parser(
        prog="realmpy load",
        description="Load a dump (from `realmpy dump`) into a new or empty realm.",
    )
    _path_arg(p)
    p.add_argument("file", nargs="?", default="-", help="the dump (default -: stdin)")
    p.add_argument(
        "--format",
        choices=("jsonl", "json"),
        default=None,
        help="default: json for a .json file, else jsonl",
    )
    args = p.parse_args(argv)
    fmt = args.format or ("json" if args.file.endswith(".json") else "jsonl")
    if args.file == "-":
        count = load(args.path, sys.stdin, fmt)
    else:
        with open(args.file, encoding="utf-8") as f:
            count = load(args.path, f, fmt)
    out.write(f"loaded {count} objects into {args.path}\n")
    return 0


# ----------------------------------------------------------------------------- check / compact


def cmd_check(argv: Sequence[str], out: TextIO) -> int:
    from realmpy.tools.checkfile import check_file

    p = Parser(
        prog="realmpy check",
        description="Verify a realm file: every page and tree (checksums), every record "
        "against the stored schema, every index entry. Exit 0 if sound, 1 if not.",
    )
    _path_arg(p)
    args = p.parse_args(argv)
    try:
        summary = check_file(args.path)
    except CorruptError as exc:
        raise CheckFailed(one_line(exc)) from None
    out.write(summary + "\n")
    return 0


def cmd_compact(argv: Sequence[str], out: TextIO) -> int:
    from realmpy.realm import Realm
    from realmpy.sharedfile import upgrade_alone
    from realmpy.tools.filemodels import model_classes, realm_configuration
    from realmpy.tools.storedfile import read_stored

    p = Parser(
        prog="realmpy compact",
        description="Compact a realm file in place (only when no other process has it open).",
    )
    _path_arg(p)
    args = p.parse_args(argv)
    path = os.path.abspath(args.path)
    if os.path.exists(path) and upgrade_alone(path):
        out.write(f"converted {path} to the current file format\n")
    stored = read_stored(path)
    before = os.path.getsize(path)
    config = realm_configuration(path, stored, model_classes(stored.schema, path), False)
    if not Realm.compact(config):
        raise ConfigurationError(
            f"{path} is open in another process: compact it when no process has it open"
        )
    after = os.path.getsize(path)
    if after >= before:
        out.write(f"compacted {path}: nothing to save (it stays {_human_size(after)})\n")
    else:
        out.write(
            f"compacted {path}: {_human_size(before)} -> {_human_size(after)} "
            f"(saved {_human_size(before - after)})\n"
        )
    return 0


def cmd_upgrade(argv: Sequence[str], out: TextIO) -> int:
    from realmpy.sharedfile import upgrade_alone

    p = Parser(
        prog="realmpy upgrade",
        description="Convert a realm file written in file format 1 or 2 (realmpy before "
        "format 3) to the current format, in place, when no other process has it open. "
        "The old file stays whole until the converted copy is complete and durable.",
    )
    _path_arg(p)
    args = p.parse_args(argv)
    path = os.path.abspath(args.path)
    if not os.path.exists(path):
        raise ConfigurationError(f"{path}: no such file")
    if upgrade_alone(path):
        out.write(f"converted {path} to the current file format\n")
    else:
        out.write(f"{path} is already in the current file format: nothing to do\n")
    return 0


def cmd_studio(argv: Sequence[str], out: TextIO) -> int:
    from realmpy.tools.studio.server import main as studio_main

    return studio_main(argv, out)


COMMANDS: dict[str, tuple[Callable[[Sequence[str], TextIO], int], str]] = {
    "info": (cmd_info, "format, size, versions, readers, classes with counts, sync state"),
    "schema": (cmd_schema, "the stored schema (--python: model classes that match it)"),
    "query": (cmd_query, "objects matching an RQL query, as JSON Lines"),
    "dump": (cmd_dump, "every object as JSON Lines, JSON or CSV (streamed)"),
    "load": (cmd_load, "load a dump into a new or empty realm"),
    "check": (cmd_check, "verify pages, records and indexes (exit 1 if damaged)"),
    "compact": (cmd_compact, "compact in place when no other process has it open"),
    "upgrade": (
        cmd_upgrade,
        "convert a file of format 1 or 2 in place (when no process has it open)",
    ),
    "studio": (cmd_studio, "browse, query, edit and watch the file in a browser"),
}


def run(command: str, argv: Sequence[str]) -> int:
    """Run one subcommand; the exit status (errors printed as one line)."""
    fn, _ = COMMANDS[command]
    try:
        return fn(argv, sys.stdout)
    except CheckFailed as exc:
        print(f"realmpy {command}: {exc}", file=sys.stderr)
        return 1
    except (UsageError, RealmpyError, OSError, ValueError) as exc:
        if isinstance(exc, BrokenPipeError):  # `realmpy dump f | head`
            _quiet_stdout()
            return 0
        print(f"realmpy {command}: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: still one line, and how to see more
        if os.environ.get("REALMPY_TRACEBACK"):
            raise
        print(
            f"realmpy {command}: internal error, please report it: {one_line(exc)} "
            "(REALMPY_TRACEBACK=1 shows where)",
            file=sys.stderr,
        )
        return 1


def _quiet_stdout() -> None:
    # Python flushes stdout at exit and would report the broken pipe again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
