"""Key paths through links in permission rules and subscription queries (``owner.name``).

Why wrapped primary keys: on the server a link's value is the target's primary
key, and rules such as ``owner == %user.id`` compare exactly that, so a link
must still *be* its key at the end of a path.  Each link value in a record
handed to a query is therefore a subclass of its key's type (``str``,
``int``, ``ObjectId``, ``UUID``) that also remembers the target table; it
compares, hashes and sorts as the key.  The query's resolver, asked for a
name *on* such a value, loads the target's current merged state (once per
request) and continues the walk there, so ``owner.name``, ``owner.team.name``
and ``ANY dogs.name == 'Rex'`` work through to-one links, lists, sets and
dictionaries of links and links inside embedded objects.

Why links are filtered by the read rules: a query evaluated *for a user*
(a rule or a subscription) must not answer a question about an object that
user may not read, or ``parent.secret BEGINSWITH $0`` on her own object tells
her B's secret one probe at a time.  So reading a link field through the
resolver (the one step every key path, aggregate and ``@count`` takes) hands
back only links to objects that exist and that the user may read: a to-one
link is null otherwise, a list or set leaves the element out, a dictionary
keeps the key with a null value.  Deciding that runs the target table's read
rule, which may follow links in turn: a cycle back to an object being decided,
or a chain deeper than :data:`MAX_LINK_DEPTH`, reads as null.

Evaluated when the object itself is uploaded or downloaded: a change to a
linked object alone does not re-evaluate the objects that link to it (see
docs/protocol.md, "Permissions and subscriptions through links").
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from realmpy.objectid import ObjectId
from realmpy.query import default_resolver
from realmpy.server.permissions import Permissions
from realmpy.sync.merge import ObjectState
from realmpy.sync.protocol import FieldSpec, TableSpec, pk_key

__all__ = ["MAX_LINK_DEPTH", "LinkResolver"]

MAX_LINK_DEPTH = 16
"""Read rules decided inside read rules (a rule through a link whose target's
rule goes through a link...) deeper than this read the link as null."""


class _Record(dict[str, Any]):
    """A record handed to a query: knows its table, so the resolver knows which
    of its fields are links."""

    __slots__ = ("_rp_table",)

    def __init__(self, table: str, fields: Mapping[str, Any]) -> None:
        super().__init__(fields)
        self._rp_table = table


class _StrLink(str):
    _rp_table: str


class _IntLink(int):
    _rp_table: str


class _OidLink(ObjectId):
    __slots__ = ("_rp_table",)


class _UuidLink(uuid.UUID):
    __slots__ = ("_rp_table",)


def _link(table: str, pk: Any) -> Any:
    """``pk`` tagged with its target table (or unchanged when it cannot be tagged)."""
    out: Any
    if isinstance(pk, bool) or pk is None:
        return pk
    if isinstance(pk, str):
        out = _StrLink(pk)
    elif isinstance(pk, int):
        out = _IntLink(pk)
    elif isinstance(pk, ObjectId):
        out = _OidLink(bytes(pk))
    elif isinstance(pk, uuid.UUID):
        out = _UuidLink(bytes=pk.bytes)
    else:
        return pk
    object.__setattr__(out, "_rp_table", table)
    return out


def _plain(pk: Any) -> Any:
    """The untagged key (for storage lookups)."""
    if isinstance(pk, _StrLink):
        return str.__str__(pk)
    if isinstance(pk, _IntLink):
        return int(pk)
    if isinstance(pk, _OidLink):
        return ObjectId(bytes(pk))
    if isinstance(pk, _UuidLink):
        return uuid.UUID(bytes=pk.bytes)
    return pk


class LinkResolver:
    """Tags link values in records and follows them on demand; one per request."""

    def __init__(
        self,
        schema: Mapping[str, TableSpec],
        load: Callable[[str, bytes], ObjectState | None],
        perms: Permissions | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> None:
        """``perms`` and ``variables`` say what the user may read (None: anything that exists)."""
        self._schema = schema
        self._load = load
        self._perms = None if perms is None or perms.allows_everything else perms
        self._variables = variables or {}
        self._cache: dict[tuple[str, bytes], Any] = {}
        self._readable: dict[tuple[str, bytes], bool] = {}
        self._depth = 0
        self._link_fields: dict[str, list[tuple[str, FieldSpec]]] = {}
        self._link_names: dict[str, frozenset[str]] = {}

    def _fields(self, table: str) -> list[tuple[str, FieldSpec]]:
        got = self._link_fields.get(table)
        if got is None:
            spec = self._schema.get(table)
            got = (
                []
                if spec is None
                else [(n, f) for n, f in spec.fields.items() if f.type in ("link", "embedded")]
            )
            self._link_fields[table] = got
            self._link_names[table] = frozenset(n for n, f in got if f.type == "link")
        return got

    def wrap(self, table: str, record: Mapping[str, Any] | None) -> Any:
        """``record`` with every link value tagged (a new dict; None stays None)."""
        if record is None:
            return None
        fields = self._fields(table)
        if not fields:
            return record
        out = _Record(table, record)
        for name, fs in fields:
            target = fs.target
            if name not in out or target is None:
                continue
            if fs.type == "link":
                out[name] = _map_collection(out[name], fs, functools.partial(_link, target))
            else:
                out[name] = _map_collection(
                    out[name], fs, functools.partial(self._wrap_embedded, target)
                )
        return out

    def _wrap_embedded(self, table: str, value: Any) -> Any:
        return self.wrap(table, value) if isinstance(value, Mapping) else value

    def _target(self, table: str, pk: Any) -> Any:
        plain = _plain(pk)
        key = (table, pk_key(plain))
        if key not in self._cache:
            spec = self._schema.get(table)
            state = self._load(table, key[1]) if spec is not None else None
            rec = (
                None
                if state is None or spec is None
                else state.materialize(spec.primary_key, plain)
            )
            self._cache[key] = self.wrap(table, rec)
        return self._cache[key]

    def _may_read(self, link: Any) -> bool:
        """Does the link's target exist, and may the user read it?"""
        table: str = link._rp_table
        key = (table, pk_key(_plain(link)))
        got = self._readable.get(key)
        if got is None:
            target = self._target(table, link)
            if target is None or self._perms is None:
                got = target is not None
            elif self._depth >= MAX_LINK_DEPTH:
                return False  # not cached: a shallower path may still decide it
            else:
                self._readable[key] = False  # a cycle back to this object reads as null
                self._depth += 1
                try:
                    got = self._perms.can_read(table, target, self._variables, self)
                finally:
                    self._depth -= 1
            self._readable[key] = got
        return got

    def _follow(self, link: Any) -> Any:
        """``link`` if the user may follow it, else None (so is a value not tagged as a link)."""
        if link is None or getattr(link, "_rp_table", None) is None:
            return None
        return link if self._may_read(link) else None

    def _readable_links(self, value: Any) -> Any:
        """A link field's value with the links the user may not follow nulled or left out."""
        if isinstance(value, list):
            return [v for v in value if v is None or self._follow(v) is not None]
        if isinstance(value, dict):
            return {k: self._follow(v) for k, v in value.items()}
        return self._follow(value)

    def __call__(self, value: Any, name: str) -> Any:
        if isinstance(value, _Record):
            got = value.get(name)
            if name in self._link_names[value._rp_table]:
                got = self._readable_links(got)
            return got
        table = getattr(value, "_rp_table", None) if value is not None else None
        if table is not None:
            return self(self._target(table, value), name)
        return default_resolver(value, name)


def _map_collection(value: Any, fs: FieldSpec, fn: Callable[[Any], Any]) -> Any:
    if value is None:
        return None
    if fs.collection in ("list", "set") and isinstance(value, list):
        return [fn(v) for v in value]
    if fs.collection == "dict" and isinstance(value, dict):
        return {k: fn(v) for k, v in value.items()}
    if fs.collection is None:
        return fn(value)
    return value
