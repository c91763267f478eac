"""realm-core's ``Parser_string_binary_encoding``: every string of a list of
awkward ones (quotes, numbers' look-alikes, every single character, a run of
NULs) stored in a string and a bytes property, each found again by the text
realm-core's query descriptions give for it.

realm-core builds its queries with its C++ query API and re-runs their
descriptions; here the cases are those descriptions, written the way
realm-core's serializer writes a value: a string as ``"text"`` when each
character is a letter, a digit, one of `` {|}~:;<=>?@!#$%&()*+,-./[]^_` ``
or part of a multi-byte UTF-8 character, else as ``B64"<base64>"``; bytes as
``binary(…)`` around the same.  The harness then re-runs realmpy's own
description too.  realm-core's strings are bytes: its 256 one-character
strings are the 256 byte values, of which 128..255 are not UTF-8.  realmpy's
strings are Unicode, so there the string property holds ``chr(i)`` (the
character of that number) and the bytes property the byte itself.
"""

from __future__ import annotations

import base64

from realmpy.realm import Realm
from realmpy.schema import Object, field
from tests.objects.parser_port.cases import section

# From https://github.com/minimaxir/big-list-of-naughty-strings (MIT), the
# selection realm-core's test makes.
NAUGHTY = [
    "undefined",
    "undef",
    "null",
    "NULL",
    "(null)",
    "nil",
    "NIL",
    "true",
    "false",
    "True",
    "False",
    "TRUE",
    "FALSE",
    "None",
    "hasOwnProperty",
    "\\\\",
    "1.00",
    "$1.00",
    "1/2",
    "1E2",
    "1E02",
    "1E+02",
    "-1",
    "-1.00",
    "-$1.00",
    "-1/2",
    "-1E2",
    "-1E02",
    "-1E+02",
    "1/0",
    "0/0",
    "-2147483648/-1",
    "-9223372036854775808/-1",
    "-0",
    "-0.0",
    "+0",
    "+0.0",
    "0.00",
    "0..0",
    "0.0.0",
    "0,00",
    "0,,0",
    "0,0,0",
    "0.0/0",
    "1.0/0.0",
    "0.0/0.0",
    "1,0/0,0",
    "0,0/0,0",
    "--1",
    "-.",
    "-,",
    "9" * 96,
    "NaN",
    "Infinity",
    "-Infinity",
    "INF",
    "1#INF",
    "-1#IND",
    "1#QNAN",
    "1#SNAN",
    "1#IND",
    "0x0",
    "0xffffffff",
    "0xffffffffffffffff",
    "0xabad1dea",
    "123456789012345678901234567890123456789",
    "1,000.00",
    "1 000.00",
    "1'000.00",
    "1,000,000.00",
    "1 000 000.00",
    "1'000'000.00",
    "1.000,00",
    "1 000,00",
    "1'000,00",
    "1.000.000,00",
    "1 000 000,00",
    "1'000'000,00",
    "01000",
    "08",
    "09",
    "2.2250738585072011e-308",
    ",./;'[]\\-=",
    '<>?:"{}|_+',
    "!@#$%^&*()`~",
    "''",
    '""',
    "'\"'",
    "\"''''\"'\"",
    "\"'\"'\"''''\"",
    "<foo val=\u201cbar\u201d />",
    "<foo val=`bar' />",
]
# (string, bytes) pairs: the list, each single character, 100 NULs.
VALUES = (
    [(s, s.encode("utf-8")) for s in NAUGHTY]
    + [(chr(i), bytes([i])) for i in range(256)]
    + [("\0" * 100, b"\0" * 100)]
)

_PLAIN = frozenset(" {|}~:;<=>?@!#$%&()*+,-./[]^_`")


def realm_core_literal(data: bytes) -> str:
    """``data`` as realm-core's serializer writes a string value."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(not c.isascii() or c.isalnum() or c in _PLAIN for c in text):
        return f'"{text}"'
    return 'B64"' + base64.b64encode(data).decode("ascii") + '"'


class EncPerson(Object, name="person"):
    k: int = field(primary_key=True)
    string_col: str | None = None
    binary_col: bytes | None = None


def _fill(r: Realm) -> None:
    r.add(EncPerson(k=0))  # nulls
    r.add_all([EncPerson(k=i, string_col=s, binary_col=b) for i, (s, b) in enumerate(VALUES, 1)])


s = section("Parser_string_binary_encoding", "strings", [EncPerson], EncPerson)
s.fill = _fill
for text, data in VALUES:
    s.add(f"string_col == {realm_core_literal(text.encode('utf-8'))}", 1)
    s.add(f"binary_col == binary({realm_core_literal(data)})", 1)
