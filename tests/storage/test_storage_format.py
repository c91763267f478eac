"""Files of an older format (1 or 2) are refused with a typed error that
says how to convert them (format.h, FORMAT VERSIONS; docs/format.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from realmpy.errors import FormatTooOldError, FormatVersionError
from realmpy.storage import Environment

# The meta records of a format-2 file (realmpy before format 3: one table
# "t" holding b"k" -> b"v", version 2), as that realmpy wrote them: even
# version at page 0 offset 0 and its mirror at page 1 offset 2048, odd at
# page 1 offset 0 and its mirror at page 0 offset 2048.  Its other pages
# are left out: the refusal comes from the meta records alone.
_EVEN = bytes.fromhex(
    "f2ac786e100000000200000000000000000000000000000000000000010000007265616c6d707900"
    "02000000001000000500000000000000030000000000000002000000000000000400000000000000"
    "02000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
)
_ODD = bytes.fromhex(
    "e683943f100000000100000000000000010000000000000000000000010000007265616c6d707900"
    "02000000001000000200000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000300000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
)


def _format2_file(path: Path) -> None:
    data = bytearray(2 * 4096)
    data[0:128] = _EVEN
    data[4096 + 2048 : 4096 + 2048 + 128] = _EVEN
    data[4096 : 4096 + 128] = _ODD
    data[2048 : 2048 + 128] = _ODD
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("read_only", [False, True])
def test_format_2_file_is_refused_with_what_to_do(tmp_path: Path, read_only: bool) -> None:
    path = tmp_path / "old.realm"
    _format2_file(path)
    before = path.read_bytes()
    with pytest.raises(FormatTooOldError, match=r"realmpy dump.*realmpy load") as info:
        Environment(str(path), read_only=read_only)
    assert isinstance(info.value, FormatVersionError)
    assert path.read_bytes() == before  # refused before anything is written
