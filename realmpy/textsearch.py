"""Full-text search as Realm's: the tokenizer of indexed text and of
``prop TEXT 'words -excluded prefix*'`` search terms, and the matching of
one text against parsed terms.  Shared by the query interpreter
(realmpy.query) and the full-text index (realmpy/fulltextindex.py, which
must agree with it), and free of both, so that writing an indexed object
does not load the query compiler.

Tokens (realm-core's ``DefaultTokenizer``): runs of ASCII letters and
digits and Latin-1 letters (U+00C0 to U+00FE), lower-cased, with
diacritics removed (``é`` → ``e``; ``å æ ð ø þ ß`` are kept as such;
U+00D7 and U+00F7, the multiplication and division signs, belong to a word
but are dropped from it); every other character separates words (so text
in other scripts is not indexed), and a token is cut after 64 UTF-8 bytes.  Search terms are separated by white
space; ``-word`` excludes the objects holding ``word``, ``word*`` matches
every token starting with ``word``, and an object matches when it holds
every other term.
"""

from __future__ import annotations

import functools
from typing import Final

from realmpy.errors import QueryArgumentError
from realmpy.valueclass import ValueClass

__all__ = ["SearchTerms", "matches", "pattern_terms", "search_terms", "tokens"]

# Latin-1 letters U+00C0..U+00FE, lower-cased without diacritics ("" for
# the two signs that join a word but are not part of it).
_LATIN1: Final = dict(
    zip(
        range(0xC0, 0xFF),
        "aaaaaåæceeeeiiiiðnooooo\0øuuuuyþß" + "aaaaaåæceeeeiiiiðnooooo\0øuuuuyþ",
        strict=True,
    )
)
_MAP: Final = {
    **{c: chr(c) for c in range(ord("a"), ord("z") + 1)},
    **{c: chr(c + 32) for c in range(ord("A"), ord("Z") + 1)},
    **{c: chr(c) for c in range(ord("0"), ord("9") + 1)},
    **{c: ("" if v == "\0" else v) for c, v in _LATIN1.items()},
}
# realm-core's token buffer: a longer word is cut (whole characters only).
_MAX_TOKEN_BYTES: Final = 64


def _words(text: str) -> list[str]:
    """The tokens of ``text`` in order, repeats included."""
    out: list[str] = []
    cur: list[str] = []
    size = 0
    building = False
    for ch in text:
        m = _MAP.get(ord(ch))
        if m is None:
            if building:
                out.append("".join(cur))
                cur, size, building = [], 0, False
            continue
        building = True
        n = len(m.encode("utf-8"))
        if size + n <= _MAX_TOKEN_BYTES:
            cur.append(m)
            size += n
    if building:
        out.append("".join(cur))
    return out


def tokens(text: str | None) -> frozenset[str]:
    """The distinct tokens of ``text`` (none for ``None``)."""
    return frozenset(_words(text)) if text else frozenset()


class SearchTerms(ValueClass):
    """Parsed ``TEXT`` terms: every token of ``words`` and a token starting
    with each of ``prefixes`` must be present, none of ``excluded``."""

    words: frozenset[str]
    prefixes: frozenset[str]
    excluded: frozenset[str]


@functools.lru_cache(maxsize=256)
def search_terms(pattern: str) -> SearchTerms:
    """Parse a ``TEXT`` pattern; ``ValueError`` says what is wrong with it
    (the callers turn it into their typed error)."""
    words: set[str] = set()
    prefixes: set[str] = set()
    excluded: set[str] = set()
    raw = pattern.split()
    if not raw:
        raise ValueError("a full-text search needs at least one word")
    for term in raw:
        exclude = term.startswith("-")
        body = term[1:] if exclude else term
        prefix = body.endswith("*")
        toks = _words(body)
        if len(toks) > 1:
            raise ValueError(
                f"{term!r}: a search word holds only letters and digits "
                "(search for each part as its own word)"
            )
        tok = toks[0] if toks else ""
        if exclude:
            if prefix:
                raise ValueError(f"{term!r}: excluding by prefix is not supported (as in Realm)")
            excluded.add(tok)
        elif prefix:
            prefixes.add(tok)
        else:
            words.add(tok)
    both = excluded & (words | prefixes)
    if both:
        raise ValueError(f"{sorted(both)[0]!r} is both searched for and excluded")
    return SearchTerms(frozenset(words), frozenset(prefixes), frozenset(excluded))


def pattern_terms(pattern: object, where: str) -> SearchTerms:
    """The terms of a ``TEXT`` argument ``pattern`` of the query ``where``;
    :class:`QueryArgumentError` if it is no string or not valid terms."""
    if not isinstance(pattern, str):
        raise QueryArgumentError(
            f"{where}: TEXT needs a string of search words, got {type(pattern).__name__}"
        )
    try:
        return search_terms(pattern)
    except ValueError as exc:
        raise QueryArgumentError(f"{where}: {exc}") from None


def matches(text: object, terms: SearchTerms) -> bool:
    """Whether ``text`` holds every word and prefix of ``terms`` and none
    of its excluded words (a value that is no string holds no word)."""
    have = tokens(text) if isinstance(text, str) else frozenset()
    return (
        terms.words <= have
        and all(any(t.startswith(p) for t in have) for p in terms.prefixes)
        and not (terms.excluded & have)
    )
