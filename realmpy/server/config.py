"""Server configuration: a TOML file plus command-line flags; development mode without a file.

Why TOML: it is in the standard library (``tomllib``), readable, and maps
cleanly onto the few sections the server needs.  Example::

    app_id = "demo"

    [auth]
    anonymous = false
    email_password = true
    api_keys = true
    access_token_ttl = 900          # seconds
    refresh_token_ttl = 5184000

    [limits]                        # see docs/server.md for every setting and its default
    max_request_bytes = 8388608     # uploads, schemas, subscriptions
    max_request_values = 524288     # values such a body may decode to
    max_auth_request_bytes = 4096   # login, register and the other small requests
    header_timeout = 10             # seconds to send a request's headers
    body_timeout = 60               # seconds to send a request's body
    max_connections = 2048
    max_clock_skew_ms = 300000

    [rate_limits]                   # token buckets: <what>_burst, <what>_per_minute
    login_per_account_burst = 10
    login_per_address_per_minute = 60
    max_concurrent_hashes = 2       # default: half the cores (scrypt: ~16 MiB, a core each)

    [schema.Task]                   # optional; without it clients' additive schema is adopted
    primary_key = "id"
    fields = { id = "objectid", owner_id = "string", title = "string", done = "bool",
               tags = "string[]", likes = "counter", parent = "link:Task?" }

    [database]
    pool_size = 8                   # connections per server process (--pool-size overrides)

    [history]
    retention_days = 30             # optional: trim history/tombstones older than this; clients
                                    # offline longer get client_reset_required

    [rules]                         # the default for tables without their own rule
    read = "FALSEPREDICATE"
    write = "FALSEPREDICATE"

    [rules.Task]
    read = "owner_id == %user.id"
    write = "owner_id == %user.id"

A field type is a base type (``bool int float string binary timestamp decimal
objectid uuid counter``), ``link:Table`` or ``embedded:Table``, then ``?``
for optional, then ``[]`` for a list, ``{}`` for a set or ``[str]`` for a
dictionary with string keys.  An embedded table has ``embedded = true`` and
no primary key::

    [schema.Address]
    embedded = true
    fields = { city = "string?", visits = "counter" }
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python < 3.11 reads TOML with the tomli backport
    import tomli as tomllib

from realmpy.server.auth import AuthConfig
from realmpy.server.limits import Limits
from realmpy.server.permissions import Permissions
from realmpy.server.ratelimit import RateLimits
from realmpy.server.store import DEFAULT_POOL_SIZE
from realmpy.sync.merge import MAX_CLOCK_SKEW_MS
from realmpy.sync.protocol import (
    FIELD_TYPES,
    FieldSpec,
    MalformedMessage,
    TableSpec,
    tables_from_wire,
    tables_to_wire,
)

__all__ = ["ConfigError", "ServerConfig", "load_config", "parse_field_type"]


class ConfigError(ValueError):
    """The configuration file is invalid; the message names the setting."""


_FIELD_RE = re.compile(
    r"^(?:(?P<ref>link|embedded):(?P<target>[A-Za-z_][A-Za-z0-9_]*)|(?P<base>[a-z]+))"
    r"(?P<opt>\?)?(?P<coll>\[\]|\{\}|\[str\])?$"
)
_COLLECTION_SUFFIX = {"[]": "list", "{}": "set", "[str]": "dict"}


def parse_field_type(text: str) -> FieldSpec:
    """``"string?"`` → FieldSpec("string", optional=True), ``"link:Dog[]"`` → list of links,
    ``"string{}"`` → set, ``"int[str]"`` → dictionary, ``"embedded:Address?"`` → embedded object."""
    m = _FIELD_RE.match(text.strip())
    if m is None or (m["base"] is not None and m["base"] not in FIELD_TYPES - {"link", "embedded"}):
        raise ConfigError(f"unknown field type {text!r}")
    typ = str(m["ref"]) if m["target"] else str(m["base"])
    coll = _COLLECTION_SUFFIX[m["coll"]] if m["coll"] else None
    try:
        return FieldSpec.from_wire(
            {"type": typ, "optional": bool(m["opt"]), "collection": coll, "target": m["target"]},
            text,
        )
    except MalformedMessage as exc:
        raise ConfigError(f"field type {text!r}: {exc}") from None


@dataclass(frozen=True)
class ServerConfig:
    """Everything that shapes one served app."""

    app_id: str = "default"
    dev_mode: bool = True
    auth: AuthConfig = field(default_factory=AuthConfig)
    permissions: Permissions = field(default_factory=Permissions)
    schema: Mapping[str, TableSpec] | None = None
    """Fixed schema, or None to adopt clients' additive schema changes."""
    limits: Limits = field(default_factory=Limits)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    max_clock_skew_ms: int = MAX_CLOCK_SKEW_MS
    max_long_poll_ms: int = 60_000
    pool_size: int = DEFAULT_POOL_SIZE
    """Database connections per server process (``[database] pool_size``, ``--pool-size``)."""
    history_retention_ms: int | None = None
    """Trim history and tombstones older than this (None = keep forever); clients offline
    longer must reset (``[history] retention_days``)."""


def _section(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    v = doc.get(name, {})
    if not isinstance(v, dict):
        raise ConfigError(f"[{name}] must be a table")
    return v


_T = TypeVar("_T")


def _settings(cls: type[_T], section: str, doc: Mapping[str, Any], others: set[str]) -> _T:
    """A settings dataclass from its TOML section (``others``: keys the section may also hold)."""
    fields = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    unknown = set(doc) - fields - others
    if unknown:
        raise ConfigError(f"[{section}]: unknown settings {sorted(unknown)}")
    try:
        return cls(**{k: v for k, v in doc.items() if k in fields})
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def load_config(path: str | Path | None, *, app_id: str | None = None) -> ServerConfig:
    """Read a configuration file (None = development mode)."""
    if path is None:
        return ServerConfig(app_id=app_id or "default")
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    auth_doc = _section(doc, "auth")
    auth = _settings(AuthConfig, "auth", auth_doc, set())
    limits = _section(doc, "limits")
    transport = _settings(Limits, "limits", limits, {"max_clock_skew_ms", "max_long_poll_ms"})
    rate_limits = _settings(RateLimits, "rate_limits", _section(doc, "rate_limits"), set())
    schema: dict[str, TableSpec] | None = None
    if "schema" in doc:
        raw: dict[str, Any] = {}
        for table, spec in _section(doc, "schema").items():
            if not isinstance(spec, dict) or not isinstance(spec.get("fields"), dict):
                raise ConfigError(f"[schema.{table}] needs primary_key and fields")
            raw[table] = {
                "primary_key": spec.get("primary_key"),
                "embedded": bool(spec.get("embedded", False)),
                "fields": {
                    k: parse_field_type(str(v)).to_wire() for k, v in spec["fields"].items()
                },
            }
        try:
            schema = tables_from_wire(raw)
        except MalformedMessage as exc:
            raise ConfigError(f"[schema]: {exc}") from None
        for table, spec in schema.items():
            for fname, fs in spec.fields.items():
                tgt = None if fs.target is None else schema.get(fs.target)
                if fs.target is not None and (
                    tgt is None or tgt.embedded != (fs.type == "embedded")
                ):
                    raise ConfigError(
                        f"[schema.{table}] {fname}: unknown {fs.type} target {fs.target!r}"
                    )
        tables_to_wire(schema)
    database = _section(doc, "database")
    if set(database) - {"pool_size"}:
        raise ConfigError(f"[database]: unknown settings {sorted(set(database) - {'pool_size'})}")
    pool_size = database.get("pool_size", DEFAULT_POOL_SIZE)
    if not isinstance(pool_size, int) or isinstance(pool_size, bool) or pool_size < 2:
        raise ConfigError("[database] pool_size must be an integer of at least 2")
    history = _section(doc, "history")
    retention = history.get("retention_days")
    if retention is not None and (not isinstance(retention, (int, float)) or retention <= 0):
        raise ConfigError("[history] retention_days must be a positive number")
    rules = _section(doc, "rules")
    default = (rules.get("read"), rules.get("write"))
    per_table = {
        k: (v.get("read", default[0]), v.get("write", default[1]))
        for k, v in rules.items()
        if isinstance(v, dict)
    }
    try:
        perms = Permissions(per_table, default)
    except ValueError as exc:
        raise ConfigError(f"[rules]: {exc}") from None
    return ServerConfig(
        app_id=app_id or str(doc.get("app_id", "default")),
        dev_mode=False,
        auth=auth,
        permissions=perms,
        schema=schema,
        limits=transport,
        rate_limits=rate_limits,
        max_clock_skew_ms=int(limits.get("max_clock_skew_ms", MAX_CLOCK_SKEW_MS)),
        max_long_poll_ms=int(limits.get("max_long_poll_ms", 60_000)),
        pool_size=pool_size,
        history_retention_ms=None if retention is None else int(retention * 86_400_000),
    )
