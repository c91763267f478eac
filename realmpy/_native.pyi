# Type stub for realmpy._native (csrc/py/*.c, built by build.py
# and setup.py): the object layer's per-object hot paths in C.
import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar, final, overload

_T = TypeVar("_T")

# Beyond this many keys a write transaction's change record says "any key" of a table.
CHANGED_KEYS_MAX: int
_P = TypeVar("_P", bound=PropertyBase)

class RealmState:
    """Hot state of a Realm (its base class), read by PropertyBase.__get__."""

    _stamp: int
    _version: int
    _guard: int | None
    # Address of the shared version counter (Environment.version_address)
    # while a live snapshot is open; None: nothing to check.
    _vh: int | None
    # (write transaction, its change record, {model class: add plan}) while
    # add() writes new objects in one native call (csrc/py/add.c), or None.
    _adder: tuple[Any, dict[str, set[bytes] | None], dict[type, Any]] | None
    def _moved(self) -> bool: ...
    def _owned(self) -> bool: ...

class ModelBase:
    """Base of every model: a managed object's state in C fields."""

    # The realm (store) of a managed object; None while unmanaged.
    _rp_store: Any
    # A managed object's primary-key bytes (AttributeError until set).
    _rp_key: bytes
    # (stamp, record by position, positions by name), or None.
    _rp_cache: tuple[int, Sequence[Any], dict[str, int]] | None

class PropertyBase:
    """Base of the model property descriptors: __get__ in C; subclasses
    define ``_slow_get(obj, owner)`` (the reference semantics)."""

    name: str
    plain: bool | None
    @overload
    def __get__(self: _P, obj: None, owner: type | None = None) -> _P: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> Any: ...

@final
class ModelInit:
    """A model's __init__ (keyword-only properties), in C."""

    __qualname__: str
    __model__: type
    __signature__: inspect.Signature | None
    # Called at the first read of __signature__ (inspect loads then).
    _rp_signature_of: Callable[[], inspect.Signature] | None
    def __new__(
        cls,
        model: type,
        fields: tuple[tuple[str, int, int, type | None, Callable[[Any], Any], Any], ...],
        missing: Callable[[Any, str], object],
        unknown: Callable[[Any, dict[str, Any]], object],
        fallback: Callable[..., object],
        qualname: str,
        /,
    ) -> ModelInit: ...
    def __call__(self, obj: Any, /, **kwargs: Any) -> None: ...
    @overload
    def __get__(self, obj: None, owner: type | None = None) -> ModelInit: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> Callable[..., None]: ...

@final
class ObjectIter(Iterator[Any]):
    def __next__(self) -> Any: ...

def make_object(
    cls: type[_T],
    realm: RealmState,
    key: bytes,
    rec: Sequence[Any] | None,
    stamp: int,
    pos: dict[str, int],
) -> _T: ...
def iter_objects(
    cls: type[_T],
    realm: RealmState,
    rows: list[tuple[bytes, Any]],
    stamp: int,
    pos: dict[str, int],
) -> Iterator[_T]: ...
def manage(
    objs: list[Any],
    realm: RealmState,
    keys: list[bytes],
    recs: list[Any],
    stamp: int,
    pos: dict[str, int],
) -> None: ...
def pack_keys(keys: list[bytes]) -> bytes: ...
def key_suffixes(pairs: Iterable[tuple[bytes, Any]], n: int) -> list[bytes]: ...
def all_full(recs: list[Any], n: int) -> bool: ...
def pack_records(
    keys: list[bytes], values: list[bytes] | None, start: int, max_bytes: int
) -> tuple[bytes, int]: ...
def int_key(v: object) -> bytes | None: ...
def encode_key_list(values: list[Any], max_key: int) -> list[bytes] | None: ...
def pack_rows(
    dicts: list[dict[str, Any]], names: tuple[str, ...]
) -> tuple[list[tuple[Any, ...]], list[bytes]] | None: ...
def column_keys(
    dicts: list[dict[str, Any]], name: str, suffixes: list[bytes] | None, max_key: int
) -> list[bytes] | None: ...
def strictly_increasing(keys: list[bytes]) -> bool: ...
def found_rows(keys: list[bytes], recs: list[_T | None]) -> list[tuple[bytes, _T]]: ...
def unmanaged_dicts(objs: list[Any]) -> list[dict[str, Any]] | None: ...
def columns_ok(keys: list[Any], values: list[Any] | None, max_key: int) -> bool: ...
def rows_full(rows: list[Any], n: int) -> bool: ...

@final
class Record(Sequence[Any]):
    """A stored record decoded field by field as it is read: reads as the
    padded list ``info.full(codec.unpack_row(data))``."""

    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Any]: ...
    def tolist(self) -> list[Any]: ...
    def __eq__(self, other: object) -> bool: ...
    def __ne__(self, other: object) -> bool: ...

def record(
    data: bytes, n: int, fill: list[Any], decode: Callable[[bytes], Any], error: type[Exception], /
) -> Record: ...
def record_pairs(
    data: bytes, n: int, fill: list[Any], decode: Callable[[bytes], Any], error: type[Exception], /
) -> list[tuple[bytes, Record]]: ...

# ---- the storage layer's hot paths (csrc/py/storage.c) ---------------------------

_Self = TypeVar("_Self")

def bind_engine(
    addresses: dict[str, int],
    raise_error: Callable[[int, str, str | None], None],
    as_bytes: Callable[[object, str], bytes],
    make_pointer: Callable[[int], Any],
    transaction_error: type[Exception],
    wrong_thread_error: type[Exception],
    /,
) -> None:
    """The engine functions the types below call (realmpy.binding)."""

class EnvCore:
    """The C half of storage.Environment."""

    _closing: bool
    _live: set[Any]
    _names: dict[str, bytes]
    _path: str
    @property
    def _handle(self) -> int | None: ...
    def read(self) -> ReadTxn: ...
    def _attach(self, address: int, snapshot_type: type[ReadTxn], /) -> None: ...
    def _detach(self, end_parked: bool, /) -> None: ...
    def _adopt(self, cls: type[_Self], address: int, /) -> _Self: ...

class TxnBase:
    """What snapshots and write transactions share."""

    @property
    def _env(self) -> Any: ...
    @property
    def _state(self) -> str: ...
    @property
    def _owner(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def active(self) -> bool: ...
    # Only None may be set: forgets the cached version.
    _version: None
    _observer: Any
    def get(self, table: str, key: bytes | bytearray | memoryview, /) -> bytes | None: ...
    def abort(self) -> None: ...
    def _end(self, state: str, /) -> None: ...
    def _handle(self) -> Any: ...
    def _set_shared(self) -> None: ...

class ReadTxn(TxnBase):
    """The C half of storage.Snapshot."""

    def end(self, *exc_info: object) -> None: ...
    def __enter__(self: _Self) -> _Self: ...
    def __exit__(self, *exc_info: object) -> None: ...
    def latest_version(self) -> int: ...

class WriteTxn(TxnBase):
    """The C half of storage.WriteTransaction."""

    def put(
        self,
        table: str,
        key: bytes | bytearray | memoryview,
        value: bytes | bytearray | memoryview,
        /,
    ) -> None: ...
    def delete(self, table: str, key: bytes | bytearray | memoryview, /) -> bool: ...
    def _commit(self) -> int: ...
