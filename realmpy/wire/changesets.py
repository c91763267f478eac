"""Operations and changesets: the :class:`Stamp` that orders them, the
:class:`OpCode` s, one :class:`Op` (validated by ``from_wire``) and the
:class:`Changeset` a client uploads or downloads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, NamedTuple

from realmpy.schema import MAX_EMBEDDED_DEPTH
from realmpy.wire.errors import InvalidOpError, MalformedMessage, UnknownTableError, WrongTypeError
from realmpy.wire.shapes import _get, _map, _name, _path, _uint
from realmpy.wire.tables import (
    TableSpec,
    _check_scalar,
    _dict_key,
    check_value,
    check_whole,
    resolve_path,
)
from realmpy.wire.values import PrimaryKey, Value


class Stamp(NamedTuple):
    """Total order of operations: (timestamp ms, file ident, client version, op index)."""

    ts: int
    file_ident: int
    client_version: int
    op_index: int


class OpCode(IntEnum):
    """Operation codes; changing a number is a protocol-breaking change."""

    CREATE = 0  # [0, table, pk]
    ERASE = 1  # [1, table, pk]
    SET = 2  # [2, table, pk, field, value]
    ADD = 3  # [3, table, pk, field, delta]
    LIST_INSERT = 4  # [4, table, pk, field, after_elem | nil, value]
    LIST_ERASE = 5  # [5, table, pk, field, elem]
    SET_ADD = 6  # [6, table, pk, field, value]
    SET_ERASE = 7  # [7, table, pk, field, value]
    DICT_SET = 8  # [8, table, pk, field, key, value]
    DICT_ERASE = 9  # [9, table, pk, field, key]


_OP_ARITY: Final = {
    OpCode.CREATE: 3,
    OpCode.ERASE: 3,
    OpCode.SET: 5,
    OpCode.ADD: 5,
    OpCode.LIST_INSERT: 6,
    OpCode.LIST_ERASE: 5,
    OpCode.SET_ADD: 5,
    OpCode.SET_ERASE: 5,
    OpCode.DICT_SET: 6,
    OpCode.DICT_ERASE: 5,
}


def _stamp_from_wire(obj: object, what: str) -> Stamp:
    if not isinstance(obj, list) or len(obj) != 4:
        raise MalformedMessage(
            f"{what}: an element id is [ts, file_ident, client_version, op_index]"
        )
    for x in obj:
        if not isinstance(x, int) or isinstance(x, bool) or not 0 <= x < 2**63:
            raise MalformedMessage(f"{what}: element id parts are unsigned integers")
    return Stamp(*obj)


@dataclass(frozen=True)
class Op:
    """One operation on one object.  ``elem`` is the list element acted on
    (``after`` for LIST_INSERT, the erased element for LIST_ERASE); ``key`` is
    the dictionary key of DICT_SET / DICT_ERASE.  ``field`` of SET and ADD may
    be a dotted path into embedded objects (``address.city``)."""

    code: OpCode
    table: str
    pk: PrimaryKey
    field: str | None = None
    value: Value = None
    elem: Stamp | None = None
    key: str | None = None

    @classmethod
    def from_wire(cls, obj: object, what: str = "op") -> Op:
        if not isinstance(obj, list) or not obj:
            raise MalformedMessage(f"{what} must be a non-empty array")
        raw_code = obj[0]
        if (
            not isinstance(raw_code, int)
            or isinstance(raw_code, bool)
            or raw_code not in _OP_ARITY.keys()
        ):
            raise InvalidOpError(f"{what}: unknown op code {raw_code!r}")
        code = OpCode(raw_code)
        if len(obj) != _OP_ARITY[code]:
            raise MalformedMessage(f"{what}: {code.name} takes {_OP_ARITY[code]} items")
        table = _name(obj[1], f"{what} table")
        pk = obj[2]
        if code in (OpCode.CREATE, OpCode.ERASE):
            return cls(code, table, pk)
        fld = _path(obj[3], f"{what} field")
        if code in (OpCode.SET_ADD, OpCode.SET_ERASE):
            return cls(code, table, pk, fld, obj[4])
        if code == OpCode.DICT_SET:
            return cls(code, table, pk, fld, obj[5], key=_dict_key(obj[4], f"{what} key"))
        if code == OpCode.DICT_ERASE:
            return cls(code, table, pk, fld, key=_dict_key(obj[4], f"{what} key"))
        if code in (OpCode.SET, OpCode.ADD):
            if code == OpCode.ADD and (
                not isinstance(obj[4], (int, float)) or isinstance(obj[4], bool)
            ):
                raise WrongTypeError(f"{what}: ADD takes a number")
            return cls(code, table, pk, fld, obj[4])
        if code == OpCode.LIST_INSERT:
            after = None if obj[4] is None else _stamp_from_wire(obj[4], what)
            return cls(code, table, pk, fld, obj[5], after)
        return cls(code, table, pk, fld, None, _stamp_from_wire(obj[4], what))

    def to_wire(self) -> list[Any]:
        if self.code in (OpCode.CREATE, OpCode.ERASE):
            return [int(self.code), self.table, self.pk]
        if self.code == OpCode.DICT_SET:
            return [int(self.code), self.table, self.pk, self.field, self.key, self.value]
        if self.code == OpCode.DICT_ERASE:
            return [int(self.code), self.table, self.pk, self.field, self.key]
        if self.code in (OpCode.SET, OpCode.ADD, OpCode.SET_ADD, OpCode.SET_ERASE):
            return [int(self.code), self.table, self.pk, self.field, self.value]
        if self.code == OpCode.LIST_INSERT:
            return [
                int(self.code),
                self.table,
                self.pk,
                self.field,
                None if self.elem is None else list(self.elem),
                self.value,
            ]
        assert self.elem is not None
        return [int(self.code), self.table, self.pk, self.field, list(self.elem)]

    def validate(self, tables: Mapping[str, TableSpec], where: str) -> None:
        """Check the op against a schema: table, field, op kind and value types."""
        spec = tables.get(self.table)
        if spec is None or spec.embedded:
            raise UnknownTableError(
                f"{where}: unknown table {self.table!r}"
                + (" (embedded objects are written through their parent)" if spec else ""),
                table=self.table,
            )
        _check_scalar(spec.fields[spec.primary_key].type, self.pk, False, f"{where} primary key")
        if self.field is None:
            return
        fs, nested = resolve_path(tables, self.table, self.field, where)
        if self.field == spec.primary_key:
            raise InvalidOpError(f"{where}: the primary key cannot be changed")
        loc = f"{where} {self.table}.{self.field}"
        code = self.code
        inside = self.field.count(".")  # the embedded objects a path write is inside
        if inside >= MAX_EMBEDDED_DEPTH:
            raise WrongTypeError(
                f"{where}: a path through more than {MAX_EMBEDDED_DEPTH} embedded objects",
                limit=MAX_EMBEDDED_DEPTH,
            )
        if code == OpCode.SET:
            if fs.collection is not None and not nested:
                raise InvalidOpError(
                    f"{loc}: SET on a {fs.collection}; use its own ops "
                    "(LIST_INSERT/LIST_ERASE, SET_ADD/SET_ERASE, DICT_SET/DICT_ERASE)"
                )
            check_whole(tables, fs, self.value, loc, inside)
        elif code == OpCode.ADD:
            if fs.collection is not None or fs.type not in ("int", "counter", "float"):
                raise InvalidOpError(f"{loc}: ADD needs an int, float or counter field")
            if fs.type != "float" and not isinstance(self.value, int):
                raise WrongTypeError(f"{loc}: ADD to an integer field takes an integer")
            _check_scalar("float" if fs.type == "float" else "int", self.value, False, loc)
        else:
            want = {
                OpCode.LIST_INSERT: "list",
                OpCode.LIST_ERASE: "list",
                OpCode.SET_ADD: "set",
                OpCode.SET_ERASE: "set",
                OpCode.DICT_SET: "dict",
                OpCode.DICT_ERASE: "dict",
            }[code]
            if fs.collection != want:
                raise InvalidOpError(f"{loc}: {code.name} on a field that is not a {want}")
            if nested:
                raise InvalidOpError(
                    f"{loc}: a {want} inside an embedded object is replaced whole: SET its path"
                )
            if code in (OpCode.LIST_INSERT, OpCode.SET_ADD, OpCode.SET_ERASE, OpCode.DICT_SET):
                check_value(tables, fs, self.value, loc)


@dataclass(frozen=True)
class Changeset:
    """One local transaction's operations, as uploaded by a client."""

    client_version: int
    base_server_version: int
    timestamp: int
    ops: tuple[Op, ...]

    @classmethod
    def from_wire(cls, obj: object, what: str = "changeset") -> Changeset:
        m = _map(obj, what)
        cv = _uint(m, "client_version", what)
        if cv == 0:
            raise MalformedMessage(f"{what}: client_version starts at 1")
        base = _uint(m, "base_server_version", what)
        ts = _uint(m, "timestamp", what)
        raw_ops = _get(m, "ops", list, what)
        ops = tuple(Op.from_wire(o, f"{what} op {i}") for i, o in enumerate(raw_ops))
        return cls(cv, base, ts, ops)

    def to_wire(self) -> dict[str, Any]:
        return {
            "client_version": self.client_version,
            "base_server_version": self.base_server_version,
            "timestamp": self.timestamp,
            "ops": [o.to_wire() for o in self.ops],
        }
