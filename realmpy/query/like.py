"""``LIKE`` pattern matching without backtracking."""

from __future__ import annotations

import functools
import re

from realmpy.errors import QueryArgumentError
from realmpy.query.ast import MAX_QUERY_CHARS

# LIKE without backtracking.  A pattern is literal segments separated by
# ``*``; ``?`` stands for one character inside a segment, so every segment
# has a fixed length.  The first segment must match at the start, the last at
# the end, and each middle one is placed at its leftmost match after the one
# before: placing a segment earlier never leaves less room for the rest, so
# the leftmost placement finds a match whenever there is one.  Each segment
# is one ``str.find`` or, when it holds ``?``, one search of a regular
# expression made of literals and ``.`` only (no repetition, nothing to
# backtrack into): O(len(text) * len(pattern)) at worst, where translating
# the pattern to one ``.*`` regex took exponential time on ``*a*a*a*a*b``.
_Segment = tuple[str | re.Pattern[str], int]  # the segment, its length in characters


@functools.lru_cache(maxsize=256)
def _like_segments(pattern: str) -> tuple[int, tuple[_Segment, ...]]:
    """(fewest characters a match has, the segments); empty middle segments
    (``**``) are dropped, so each one the matcher visits consumes a character."""
    parts = pattern.split("*")
    kept = [parts[0], *(p for p in parts[1:-1] if p), parts[-1]] if len(parts) > 1 else parts
    segs = tuple(
        (
            part
            if "?" not in part
            else re.compile(".".join(re.escape(x) for x in part.split("?")), re.DOTALL),
            len(part),
        )
        for part in kept
    )
    return sum(n for _, n in segs), segs


def _segment_at(text: str, seg: str | re.Pattern[str], pos: int) -> bool:
    if isinstance(seg, str):
        return text.startswith(seg, pos)
    return seg.match(text, pos) is not None


def _segment_find(text: str, seg: str | re.Pattern[str], start: int, end: int) -> int:
    """Where ``seg`` first matches wholly inside ``text[start:end]`` (-1: nowhere)."""
    if isinstance(seg, str):
        return text.find(seg, start, end)
    m = seg.search(text, start, end)
    return -1 if m is None else m.start()


def like(text: str, pattern: str) -> bool:
    """Does all of ``text`` match the LIKE ``pattern`` (``*`` any run, ``?``
    one character)?  At worst O(len(text) * len(pattern)), never backtracking.
    A pattern is at most ``MAX_QUERY_CHARS`` characters (``QueryArgumentError``)."""
    if len(pattern) > MAX_QUERY_CHARS:
        raise QueryArgumentError(
            f"LIKE pattern of {len(pattern)} characters is longer than MAX_QUERY_CHARS "
            f"({MAX_QUERY_CHARS})"
        )
    least, segs = _like_segments(pattern)
    n = len(text)
    if n < least:
        return False
    (first, first_len), (last, last_len) = segs[0], segs[-1]
    if len(segs) == 1:
        return n == first_len and _segment_at(text, first, 0)
    pos, end = first_len, n - last_len
    if not _segment_at(text, first, 0) or not _segment_at(text, last, end):
        return False
    for seg, length in segs[1:-1]:
        found = _segment_find(text, seg, pos, end)
        if found < 0:
            return False
        pos = found + length
    return True
