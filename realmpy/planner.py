"""The index planner: which index read, if any, narrows a query's candidates.

Planning: a top-level conjunct ``prop op value`` (``==``, ``IN``, ``<``,
``<=``, ``>``, ``>=``, ``BETWEEN``) on the primary key or an indexed
property narrows the candidates to one point lookup or one ordered scan of
the primary-key table or the property's index table; the whole predicate is
then checked on each candidate, so the index only has to over-approximate.
Candidates come back in table order, so results are the same with or
without an index.

The realm asks :func:`choose` for the conjunct to read by, then either
:func:`table_range` / :func:`index_prefix` (one engine scan, joined in C) or
:func:`plan` (the candidates' primary keys); the whole predicate is then
evaluated on each candidate (the engine's filter program, or the query
interpreter).
"""

from __future__ import annotations

import datetime as _dt
import math
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import realmpy.codec as codec
import realmpy.fulltextindex as fulltextindex
import realmpy.query as _query
from realmpy._native import key_suffixes as _key_suffixes
from realmpy.codec import MixedLink
from realmpy.errors import CodecError, ObjectTypeError
from realmpy.layout import index_name, table_name
from realmpy.objectid import ObjectId
from realmpy.schema import Object, ObjectSchema, Property
from realmpy.textsearch import pattern_terms

if TYPE_CHECKING:
    from realmpy.realm import Realm

__all__ = ["Chosen", "choose", "index_prefix", "plan", "table_range"]


# ----------------------------------------------------------------------------
# Index planning

_RANGE = ("<", "<=", ">", ">=")
# Candidate ops read as one key range (see _bounds).
_RANGES = frozenset({*_RANGE, "BETWEEN", "BOUNDS"})


def _coerce(prop: Property, v: Any) -> Any:
    """The value as stored for ``prop``, or raise ValueError if it cannot be."""
    if v is None:
        if prop.optional:
            return None
        raise ValueError
    t = prop.type
    if t in ("int", "counter"):
        if isinstance(v, bool):
            raise ValueError
        if isinstance(v, int):
            return v
        if isinstance(v, (float, Decimal)) and math.isfinite(v) and v == int(v):
            return int(v)
        raise ValueError
    if t == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError
        return float(v)
    if t == "decimal":
        if isinstance(v, bool) or not isinstance(v, (int, Decimal)):
            raise ValueError
        return Decimal(v)
    if t == "datetime":
        if not isinstance(v, _dt.datetime) or v.tzinfo is None:
            raise ValueError
        return v
    py = {"bool": bool, "str": str, "bytes": bytes}.get(t)
    if py is not None and type(v) is not py:
        raise ValueError
    return v


def _value(node: _query.Node, args: tuple[Any, ...]) -> Any:
    if isinstance(node, _query.Const):
        return node.value
    if isinstance(node, _query.Arg):
        return args[node.index]
    raise ValueError


def _candidates(
    schema: ObjectSchema, node: _query.Node, args: tuple[Any, ...]
) -> tuple[int, Property, str, list[Any]] | None:
    """(rank, prop, op, values) if ``node`` can use an index; lower rank wins."""
    if isinstance(node, _query.FullText):
        return _fulltext_candidate(schema, node, args)
    try:
        if isinstance(node, _query.Between) and node.quantifier is None:
            path, ops = node.value, [(">=", node.low), ("<=", node.high)]
        elif (
            isinstance(node, _query.Comparison)
            and node.quantifier is None
            and node.list_quantifier is None
            and not node.case_insensitive
            and not node.diacritic_insensitive
            and node.op in ("==", "IN", *_RANGE)
        ):
            path, ops = node.left, [(node.op, node.right)]
        else:
            return None
        if not isinstance(path, _query.KeyPath) or len(path.parts) != 1:
            return None
        prop = schema.get(path.parts[0])
        if prop is None or not prop.indexed or prop.collection is not None:
            return None
        if prop.type == "mixed":
            return _mixed_candidates(prop, ops[0], args) if len(ops) == 1 else None
        if isinstance(node, _query.Between):
            lo = _coerce(prop, _value(node.low, args))
            hi = _coerce(prop, _value(node.high, args))
            if lo is None or hi is None:
                return None
            return (3 if prop.primary_key else 4, prop, "BETWEEN", [lo, hi])
        op, rhs = ops[0]
        if op == "IN":
            if isinstance(rhs, _query.ListExpr):
                raw = [_value(i, args) for i in rhs.items]
            else:
                raw = list(_value(rhs, args))
            vals = []
            for v in raw:
                try:
                    vals.append(_coerce(prop, v))
                except ValueError:
                    continue  # cannot equal a stored value
            return (1 if prop.primary_key else 2, prop, "IN", vals)
        v = _coerce(prop, _value(rhs, args))
        if op == "==":
            return (0 if prop.primary_key else 2, prop, "IN", [v])
        if v is None:
            return None
        return (3 if prop.primary_key else 4, prop, op, [v])
    except (ValueError, TypeError, IndexError, CodecError):
        return None


def _mixed_candidates(
    prop: Property, op_rhs: tuple[str, _query.Node], args: tuple[Any, ...]
) -> tuple[int, Property, str, list[Any]] | None:
    """The index read of ``mixed == v`` / ``mixed IN {...}``: every stored
    value that can equal ``v`` (a number equals the int, float and Decimal
    of its value, as in Realm); ranges are not read from a mixed index
    (its values of different types do not order as numbers)."""
    op, rhs = op_rhs
    if op == "==":
        raw = [_value(rhs, args)]
    elif op == "IN" and isinstance(rhs, _query.ListExpr):
        raw = [_value(i, args) for i in rhs.items]
    else:
        return None
    vals: list[Any] = []
    for v in raw:
        if isinstance(v, Object):
            if v._rp_store is None:
                continue  # an unmanaged object equals no stored link
            vals.append(MixedLink(type(v).__realm_name__, v._rp_key))
        elif isinstance(v, (int, float, Decimal)) and not isinstance(v, bool):
            if v != v:
                return None  # NaN: leave it to the scan
            vals.extend(_numbers_equal_to(v))
        elif isinstance(v, (list, tuple, dict, set)):
            return None
        else:
            vals.append(v)
    return (2, prop, "IN", vals)


def _numbers_equal_to(v: float | Decimal) -> list[Any]:
    """The int, float and Decimal a mixed property may hold equal to ``v``
    (a superset: the predicate is checked on each candidate)."""
    out: list[Any] = []
    if math.isfinite(v) and v == int(v) and -(1 << 63) <= int(v) < (1 << 63):
        out.append(int(v))
    try:
        out.append(float(v))
    except OverflowError:
        pass
    out.append(Decimal(v))
    return out


def _fulltext_candidate(
    schema: ObjectSchema, node: _query.FullText, args: tuple[Any, ...]
) -> tuple[int, Property, str, list[Any]] | None:
    """``prop TEXT pattern`` on a full-text indexed property of the class:
    op ``TEXT`` with the parsed terms, which the index decides exactly."""
    if len(node.path.parts) != 1:
        return None
    prop = schema.get(node.path.parts[0])
    if prop is None or not prop.fulltext:
        return None
    try:
        pattern = _value(node.pattern, args)
    except (ValueError, IndexError):
        return None  # the evaluator reports a missing argument
    return (1, prop, "TEXT", [pattern_terms(pattern, str(node))])


def _bounds(op: str, values: list[Any]) -> tuple[bytes, bytes]:
    """Key range [start, stop) holding every value satisfying ``op``
    (``BOUNDS``: ``values`` are that range already)."""
    if op == "BOUNDS":
        return values[0], values[1]
    enc = codec.encode_key
    v = enc(values[0])
    # The open end is the end of the value's kind, not of its tag: an int's
    # tag also encodes its length (codec.kind_range).
    lo, hi = codec.kind_range(v)
    if op == "BETWEEN":
        return v, enc(values[1]) + b"\xff"
    if op == ">":
        return v + b"\xff", hi
    if op == ">=":
        return v, hi
    if op == "<":
        return lo, v
    return lo, v + b"\xff"


# Property types whose index equality is exactly the query's ``==``, for
# arguments of exactly that Python type (floats have -0.0 and NaN, decimals
# and datetimes several spellings of one value).
_EXACT_TYPES = {"str": str, "int": int, "objectid": ObjectId, "uuid": uuid.UUID, "bool": bool}


def _exact(node: _query.Node, prop: Property, args: tuple[Any, ...]) -> bool:
    """True if looking ``node`` up in ``prop``'s index decides it exactly."""
    if isinstance(node, _query.FullText):
        return True  # the full-text index holds every token of every text
    if not (
        isinstance(node, _query.Comparison)
        and node.op in ("==", "IN")
        and node.quantifier is None
        and node.list_quantifier is None
        and not node.case_insensitive
        and not node.diacritic_insensitive
    ):
        return False
    py = _EXACT_TYPES.get(prop.type)
    if py is None:
        return False
    rhs = node.right
    items = rhs.items if node.op == "IN" and isinstance(rhs, _query.ListExpr) else (rhs,)
    if node.op == "IN" and not isinstance(rhs, _query.ListExpr):
        return False
    try:
        return all(type(_value(i, args)) is py for i in items)
    except (ValueError, IndexError):
        return False


# (rank, property, op, values) of the index read chosen, and whether that
# read alone decides the whole predicate.
Chosen = tuple[tuple[int, Property, str, list[Any]], bool]


def choose(schema: ObjectSchema, q: _query.Query, args: tuple[Any, ...]) -> Chosen | None:
    """The best index candidate among the top-level conjuncts, and whether
    its lookup alone decides the whole predicate; None → full scan.

    Range conjuncts on the chosen property narrow each other: ``a >= x AND
    a < y`` reads one key range, [x, y), as op ``BOUNDS``.  Each range holds
    every value its conjunct accepts, so their intersection holds every
    value the conjunction accepts."""
    pred = q.predicate
    conjuncts = pred.items if isinstance(pred, _query.And) else (pred,)
    cands = []
    best = None
    best_node: _query.Node | None = None
    for c in conjuncts:
        cand = _candidates(schema, c, args)
        if cand is None:
            continue
        cands.append(cand)
        if best is None or cand[0] < best[0]:
            best, best_node = cand, c
    if best is None or best_node is None:
        return None
    if best[2] in _RANGES and len(cands) > 1:
        try:
            start, stop = _bounds(best[2], best[3])
            for _rank, prop, op, values in cands:
                if prop is best[1] and op in _RANGES:
                    lo, hi = _bounds(op, values)
                    start, stop = max(start, lo), min(stop, hi)
        except (CodecError, ObjectTypeError):
            pass  # keep the one range
        else:
            best = (best[0], best[1], "BOUNDS", [start, stop])
    return best, best_node is pred and _exact(pred, best[1], args)


def table_range(chosen: Chosen | None) -> tuple[bytes, bytes] | None:
    """The primary-key range ``[start, stop)`` of the table holding every
    candidate, when :func:`plan` would read one (a range of the primary
    key): the engine can then scan and filter those records directly
    (``scan_filter_msgpack`` with bounds).  None otherwise."""
    if chosen is None:
        return None
    (_rank, prop, op, values), _ = chosen
    if not prop.primary_key or op not in _RANGES:
        return None
    try:
        return _bounds(op, values)
    except (CodecError, ObjectTypeError):
        return None


def index_prefix(schema: ObjectSchema, chosen: Chosen | None) -> tuple[str, bytes, bool] | None:
    """``(index table, prefix, exact)`` when :func:`plan` would read the
    candidates as one range of a secondary index (one ``==`` value): the
    primary keys are the index keys after ``prefix``, already in table
    order, so the engine can join them to the records in one call
    (``scan_join``).  None otherwise."""
    if chosen is None:
        return None
    (_rank, prop, op, values), exact = chosen
    if prop.primary_key or op != "IN" or len(values) != 1:
        return None
    try:
        return index_name(schema.name, prop.file_name), codec.encode_key(values[0]), exact
    except (CodecError, ObjectTypeError):
        return None


def plan(
    realm: Realm, schema: ObjectSchema, chosen: Chosen | None
) -> tuple[list[bytes], bool] | None:
    """Primary keys of the candidate objects of an index read
    :func:`choose` chose, in table order, and whether that read alone
    decides the whole predicate; None → full scan."""
    if chosen is None:
        return None
    (_rank, prop, op, values), exact = chosen
    txn = realm._reader()
    enc = codec.encode_key
    try:
        if op == "TEXT":
            return fulltextindex.search(txn, schema, prop, values[0]), exact
        if prop.primary_key:
            if op == "IN":
                return sorted({enc(v) for v in values}), exact
            start, stop = _bounds(op, values)
            return [k for k, _ in txn.scan(table_name(schema.name), start, stop)], False
        iname = index_name(schema.name, prop.file_name)
        if op == "IN" and len(values) == 1:
            # One value: the index range is already in primary-key order.
            prefix = enc(values[0])
            return _key_suffixes(txn.scan(iname, prefix, prefix + b"\xff"), len(prefix)), exact
        keys: set[bytes] = set()
        if op == "IN":
            for v in values:
                prefix = enc(v)
                n = len(prefix)
                for k, _ in txn.scan(iname, prefix, prefix + b"\xff"):
                    keys.add(k[n:])
        else:
            start, stop = _bounds(op, values)
            for k, _ in txn.scan(iname, start, stop):
                keys.add(enc(codec.decode_key(k)[1]))
        return sorted(keys), exact
    except (CodecError, ObjectTypeError):
        return None
