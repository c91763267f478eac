"""The tokenizer: query text to tokens, literals already converted to values."""

from __future__ import annotations

import base64
import datetime as _dt
import math
import re
import struct
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from realmpy.errors import QuerySyntaxError
from realmpy.objectid import ObjectId
from realmpy.query.ast import _EPOCH, AGGREGATES


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # op, arith, punct, ident, agg, links, lit, arg, subvar, var, mod, eof
    value: Any
    pos: int
    exact: Decimal | None = None  # a literal number with a fraction: what it spells


_TOKEN_RE: Final = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<date>-?\d{1,4}-\d{1,2}-\d{1,2}[@T]\d{1,2}:\d{1,2}:\d{1,2}(?::\d+)?(?![\w.]))
  | (?P<ts>T-?\d+:-?\d+(?![\w.]))
  | (?P<oid>oid\(\s*(?P<oidv>[0-9A-Fa-f]{24})\s*\))
  | (?P<uuid>uuid\(\s*(?P<uuidv>[0-9A-Fa-f-]{32,36})\s*\))
  | (?P<dec>decimal128\(\s*(?P<decv>[^)\s]*)\s*\))
  | (?P<b64>B64"(?P<b64v>[A-Za-z0-9+/=]*)")
  | (?P<bin>(?i:binary|bin)\(\s*(?:B64"(?P<binb64>[A-Za-z0-9+/=]*)"
        |(?P<binv>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"))\s*\))
  | (?P<hex>[-+]?0[xX][0-9A-Fa-f]+(?![\w.]))
  | (?P<num>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?!\.)(?P<f32>f(?!\w))?)
  | (?P<special>[-+]?(?i:infinity|inf|nan)(?!\w))
  | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<arg>\$\d+)
  | (?P<subvar>\$[^\W\d][\w-]*)
  | (?P<var>%[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_@][A-Za-z0-9_]*)*)
  | (?P<mod>\[(?:c|d|cd|dc)\])
  | (?P<op>==|!=|<>|<=|=<|>=|=>|&&|\|\||[=<>!])
  | (?P<arith>[-+*/])
  | (?P<agg>@[A-Za-z]+)
  | (?P<ident>(?:[^\W\d]|\$|\\\W|\\[ntr])(?:[\w$-]|\\\W|\\[ntr])*)
  | (?P<punct>[(){},.\[\]])
    """,
    re.VERBOSE,
)

_ESCAPES: Final = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "0": "\0",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "/": "/",
    "b": "\b",
    "f": "\f",
}
# Longest integer literal: Python's int() refuses more than 4,300 digits.
_MAX_INT_DIGITS: Final = 4_000


# In a property name, as realm-core's lexer: ``\t`` ``\n`` ``\r`` are white
# space characters; a backslash before any other non-word character is it.
_NAME_ESCAPES: Final = {"t": "\t", "n": "\n", "r": "\r"}


def _name_escape(m: re.Match[str]) -> str:
    return _NAME_ESCAPES.get(m.group(1), m.group(1))


def _unescape(body: str, pos: int, text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", body[i + 2 : i + 6]):
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        else:
            raise QuerySyntaxError(f"unknown escape '\\{nxt}'", text, pos + i + 1)
    return "".join(out)


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise QuerySyntaxError(f"unexpected character {text[pos]!r}", text, pos)
        kind = m.lastgroup
        assert kind is not None
        start = pos
        pos = m.end()
        if kind == "ws":
            continue
        raw = m.group(0)
        value: Any
        if kind == "num" and m.group("f32"):
            # As realm-core: ``1.1f`` is a 32-bit float (1.100000023841858).
            value = float(raw[:-1])
            try:
                value = struct.unpack("<f", struct.pack("<f", value))[0]
            except OverflowError:  # beyond a 32-bit float: its infinity, as strtof
                value = math.copysign(math.inf, value)
            toks.append(_Tok("lit", value, start))
        elif kind == "num":
            digits = raw.lstrip("+-")
            if digits.isdigit():
                if len(digits) > _MAX_INT_DIGITS:
                    raise QuerySyntaxError(
                        f"integer literal too long: {len(digits)} digits, at most {_MAX_INT_DIGITS}",
                        text,
                        start,
                    )
                toks.append(_Tok("lit", int(raw), start))
            else:
                toks.append(_Tok("lit", float(raw), start, Decimal(raw)))
        elif kind == "hex":
            if len(raw) > _MAX_INT_DIGITS:
                raise QuerySyntaxError("integer literal too long (hexadecimal)", text, start)
            toks.append(_Tok("lit", int(raw, 16), start))
        elif kind == "special":
            toks.append(_Tok("lit", float(raw), start, Decimal(raw)))
        elif kind == "str":
            toks.append(_Tok("lit", _unescape(raw[1:-1], start + 1, text), start))
        elif kind == "date":
            toks.append(_Tok("lit", _parse_date(raw, start, text), start))
        elif kind == "ts":
            secs, nanos = raw[1:].split(":")
            if (int(secs) < 0 < int(nanos)) or (int(nanos) < 0 < int(secs)):
                raise QuerySyntaxError(
                    "a timestamp's seconds and nanoseconds must have the same sign", text, start
                )
            try:
                micros = abs(int(nanos)) // 1000 * (1 if int(nanos) >= 0 else -1)  # toward 0
                value = _EPOCH + _dt.timedelta(seconds=int(secs), microseconds=micros)
            except OverflowError:
                raise QuerySyntaxError(
                    "timestamp out of range (years 1 to 9999)", text, start
                ) from None
            toks.append(_Tok("lit", value, start))
        elif kind == "oid":
            toks.append(_Tok("lit", ObjectId(m.group("oidv")), start))
        elif kind == "uuid":
            try:
                value = uuid.UUID(m.group("uuidv"))
            except ValueError:
                raise QuerySyntaxError("malformed uuid(...)", text, start) from None
            toks.append(_Tok("lit", value, start))
        elif kind == "dec":
            try:
                value = Decimal(m.group("decv"))
            except InvalidOperation:
                raise QuerySyntaxError("malformed decimal128(...)", text, start) from None
            toks.append(_Tok("lit", value, start))
        elif kind == "b64":
            # As realm-core: a B64"…" literal is a string (spelled in base64
            # so that any character can be written); bytes are bin(B64"…").
            try:
                value = _b64decode(m.group("b64v"), start, text).decode("utf-8")
            except UnicodeDecodeError:
                raise QuerySyntaxError(
                    'B64"..." is a string literal and its bytes are not UTF-8; '
                    'write bin(B64"...") for bytes',
                    text,
                    start,
                ) from None
            toks.append(_Tok("lit", value, start))
        elif kind == "bin":  # bin('text'), bin(B64"…"), binary(…), any case
            if m.group("binb64") is not None:
                value = _b64decode(m.group("binb64"), start, text)
            else:
                body = m.group("binv")
                value = _unescape(body[1:-1], m.start("binv") + 1, text).encode("utf-8")
            toks.append(_Tok("lit", value, start))
        elif kind == "arg":
            toks.append(_Tok("arg", int(raw[1:]), start))
        elif kind == "subvar":
            toks.append(_Tok("subvar", raw, start))
        elif kind == "var":
            toks.append(_Tok("var", raw[1:], start))
        elif kind == "mod":
            toks.append(_Tok("mod", raw[1:-1], start))
        elif kind == "agg":
            low = raw.lower()
            if low == "@links":
                toks.append(_Tok("links", raw, start))
                continue
            if low == "@length":
                raise QuerySyntaxError("write .length, not .@length", text, start)
            if low not in AGGREGATES:
                raise QuerySyntaxError(
                    f"unknown aggregate {raw!r} (supported: " + ", ".join(sorted(AGGREGATES)) + ")",
                    text,
                    start,
                )
            toks.append(_Tok("agg", low, start))
        else:
            if kind == "ident":
                if "\\" in raw:  # a backslash-escaped character in a property name
                    raw = re.sub(r"\\(.)", _name_escape, raw)
            toks.append(_Tok(kind, raw, start))
    toks.append(_Tok("eof", None, n))
    return toks


def _b64decode(digits: str, pos: int, text: str) -> bytes:
    try:
        return base64.b64decode(digits, validate=True)
    except ValueError:
        raise QuerySyntaxError('malformed B64"..."', text, pos) from None


def _parse_date(raw: str, pos: int, text: str) -> _dt.datetime:
    date, _, clock = raw.replace("T", "@", 1).partition("@")
    parts = clock.split(":")
    nanos = int(parts[3]) if len(parts) == 4 else 0
    try:
        y, mo, d = (int(x) for x in date.split("-"))
        when = _dt.datetime(
            y,
            mo,
            d,
            int(parts[0]),
            int(parts[1]),
            int(parts[2]),
            tzinfo=_dt.timezone.utc,
        )
    except ValueError as exc:
        raise QuerySyntaxError(f"invalid timestamp: {exc}", text, pos) from None
    return when + _dt.timedelta(microseconds=nanos // 1000)
