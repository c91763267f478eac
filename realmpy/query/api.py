"""``Query`` and ``parse``: the entry points (see the package docstring)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from realmpy.errors import QueryArgumentError, QuerySyntaxError
from realmpy.query.ast import (
    Descriptor,
    Distinct,
    Node,
    Resolver,
    Sort,
    _escape_name,
    default_resolver,
)
from realmpy.query.closures import _compile
from realmpy.query.codegen import _row_filter
from realmpy.query.evaluate import Direct, _Ctx, _eval, _hashable, _sort_rank, _walk
from realmpy.query.parser import _Parser
from realmpy.query.tokenizer import _tokenize

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: predicate plus SORT/DISTINCT/LIMIT descriptors.

    Immutable and shareable between threads; get one with :func:`parse`.
    """

    text: str
    predicate: Node
    descriptors: tuple[Descriptor, ...]
    arg_count: int
    terms: int = 1
    """Comparisons (and BETWEEN, TRUEPREDICATE, FALSEPREDICATE): see MAX_QUERY_TERMS."""

    def __str__(self) -> str:
        tail = "".join(" " + str(d) for d in self.descriptors)
        return f"{self.predicate}{tail}"

    def _ctx(
        self,
        args: Sequence[Any],
        variables: Mapping[str, Any] | None,
        resolver: Resolver | None,
    ) -> _Ctx:
        if len(args) < self.arg_count:
            raise QueryArgumentError(
                f"the query uses ${self.arg_count - 1} but only {len(args)} "
                f"argument(s) were given: {self.text!r}"
            )
        return _Ctx(args, variables or {}, resolver or default_resolver)

    def matches(
        self,
        record: Any,
        args: Sequence[Any] = (),
        variables: Mapping[str, Any] | None = None,
        resolver: Resolver | None = None,
    ) -> bool:
        """True if ``record`` satisfies the predicate (descriptors ignored)."""
        return _eval(self.predicate, record, self._ctx(args, variables, resolver))

    def matcher(
        self,
        args: Sequence[Any] = (),
        variables: Mapping[str, Any] | None = None,
        resolver: Resolver | None = None,
        direct: Direct | None = None,
        wrap: Callable[[Any], Any] | None = None,
    ) -> Callable[[Any], bool]:
        """A one-argument predicate with arguments bound (checked once).

        For speed over raw records: ``direct(name)`` returns ``(slot,)``
        when the one-name path ``name`` is a plain value read as
        ``record[slot]`` (e.g. a position in a positional record; else
        ``None``: the resolver is used), and ``wrap(record)`` gives what the
        resolver walks for everything else (e.g. an object that follows
        links)."""
        ctx = self._ctx(args, variables, resolver)
        ctx.direct = direct
        ctx.wrap = wrap
        return _compile(self.predicate, ctx)

    def row_filter(
        self,
        args: Sequence[Any] = (),
        resolver: Resolver | None = None,
        direct: Direct | None = None,
        wrap: Callable[[Any], Any] | None = None,
    ) -> Callable[[Iterable[tuple[Any, Any]]], list[Any]]:
        """Like :meth:`matcher`, for many records at once: a function from
        ``(key, record)`` pairs to the list of those whose record matches
        (one list comprehension; plain comparisons inline)."""
        ctx = self._ctx(args, None, resolver)
        ctx.direct = direct
        ctx.wrap = wrap
        return _row_filter(self.predicate, ctx)

    def filter(
        self,
        records: Iterable[T],
        args: Sequence[Any] = (),
        variables: Mapping[str, Any] | None = None,
        resolver: Resolver | None = None,
    ) -> list[T]:
        """Matching records, then SORT/DISTINCT/LIMIT in the order written."""
        match = _compile(self.predicate, self._ctx(args, variables, resolver))
        kept = [r for r in records if match(r)]
        return self.order(kept, resolver=resolver)

    def order(self, records: list[T], resolver: Resolver | None = None) -> list[T]:
        """Apply only the descriptors (SORT, DISTINCT, LIMIT) to ``records``."""
        ctx = _Ctx((), {}, resolver or default_resolver)
        out = records
        for d in self.descriptors:
            if isinstance(d, Sort):
                out = list(out)
                for path, asc in reversed(d.keys):
                    parts = path.parts

                    def sort_key(r: T, parts: tuple[str, ...] = parts) -> Any:
                        return _sort_rank(_walk([r], parts, ctx, False))

                    out.sort(key=sort_key, reverse=not asc)
            elif isinstance(d, Distinct):
                seen: set[Any] = set()
                kept: list[T] = []
                for r in out:
                    key = tuple(_hashable(_walk([r], p.parts, ctx, False)) for p in d.paths)
                    if key not in seen:
                        seen.add(key)
                        kept.append(r)
                out = kept
            else:
                out = out[: d.count]
        return out


def parse(text: str) -> Query:
    """Parse ``text`` once (cached); raise :class:`QuerySyntaxError` with the
    position of the first problem."""
    if not isinstance(text, str):
        raise TypeError(f"a query is a str, not {type(text).__name__}")
    return _parse_cached(text)


@functools.lru_cache(maxsize=1024)
def _parse_cached(text: str) -> Query:
    p = _Parser(text)
    predicate, descriptors = p.parse()
    return Query(text, predicate, descriptors, p.max_arg + 1, p.terms)


_KEY_PATH_ARG: Final = re.compile(r"\$K(\d+)")


def with_key_path_args(text: str, args: Sequence[Any]) -> str:
    """``text`` with each ``$K<n>`` (realm-core's key path argument) replaced
    by the key path argument ``n`` names: a str of property names joined by
    dots (``"owner.name"``).  The query is then parsed and type-checked as if
    written so.  A ``$K<n>`` can be a whole key path only, as in realm-core."""
    if "$K" not in text:
        return text
    out: list[str] = []
    done = 0
    toks = _tokenize(text)
    for i, tok in enumerate(toks):
        m = _KEY_PATH_ARG.fullmatch(tok.value) if tok.kind == "subvar" else None
        if m is None:
            continue
        nxt = toks[i + 1]
        if nxt.kind == "punct" and nxt.value in ".[" and nxt.pos == tok.pos + len(tok.value):
            raise QuerySyntaxError(
                f"{tok.value} is a whole key path: it cannot be followed by {nxt.value!r}",
                text,
                nxt.pos,
            )
        index = int(m.group(1))
        if index >= len(args):
            raise QueryArgumentError(
                f"the query uses {tok.value} but only {len(args)} argument(s) were given"
            )
        path = args[index]
        if not isinstance(path, str) or not all(path.split(".")):
            raise QueryArgumentError(
                f"{tok.value} takes a key path, a str of property names joined by dots "
                f"(such as 'owner.name'), not {type(path).__name__} {path!r:.40}"
            )
        out += [text[done : tok.pos], ".".join(_escape_name(n) for n in path.split("."))]
        done = tok.pos + len(tok.value)
    return "".join(out) + text[done:]
