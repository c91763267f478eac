"""The Studio web app: its JSON API, the live event stream, and ``realmpy studio``.

Threads: the realm is opened, read, written and listened to on the event
loop's thread only.  A live realm belongs to the thread that opened it, and
a results listener registered while a loop runs in that thread is called on
that loop with live results (docs/objects.md, "Notifications"), so every
handler is ``async`` and nothing crosses threads.  A long query blocks the
loop while it runs, which a one-user local tool can afford.

Objects are named in the API by their id: the primary key in the dump
encoding (:mod:`realmpy.tools.jsonformat`), or for a class without one the
sequence number the realm gave it (``#n`` on the page).  Links are
``{"$link": id}`` with the target class known from the schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import secrets
import socket
import sys
import webbrowser
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from realmpy.errors import QuerySyntaxError, RealmpyError
from realmpy.schema import ObjectSchema
from realmpy.tools import jsonformat as J
from realmpy.tools.dumpload import encode_object, write_csv
from realmpy.tools.filemodels import OpenedRealm, object_id, open_realm

__all__ = ["Studio", "main"]

STATIC = Path(__file__).parent / "static"
PAGE_LIMIT = 500
"""Most rows one page of a table may ask for."""
QUERY_CACHE = 16
"""Queries whose live results Studio keeps between requests."""
KEEPALIVE_SECONDS = 15.0
"""An SSE comment this often keeps proxies and the browser from closing an idle stream."""


class ApiError(Exception):
    def __init__(self, message: str, status: int = 400, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


@contextlib.contextmanager
def _api_errors() -> Iterator[None]:
    """The library's typed errors (bad values, queries, ids) as 400 answers that say why."""
    try:
        yield
    except QuerySyntaxError as exc:
        raise ApiError(exc.message, position=exc.position) from None
    except (RealmpyError, ValueError, TypeError, KeyError) as exc:
        raise ApiError(f"{type(exc).__name__}: {exc}") from None


class Studio:
    """One file served to the browser."""

    def __init__(self, path: str, read_only: bool = False, token: str | None = None) -> None:
        self.path = os.path.abspath(path)
        self.read_only = read_only
        self.token = token or secrets.token_urlsafe(24)
        self._opened: OpenedRealm | None = None
        self._queues: set[asyncio.Queue[str]] = set()
        # class -> (realm.all(class), its listener token): the counts, and the
        # key-ordered list that finds an object of a class without a primary key
        self._all: dict[str, tuple[Any, Any]] = {}
        # (class, query, args) -> live Results: a Results re-evaluates only when
        # the realm moved, so paging through one costs a page, not a query
        self._queries: dict[tuple[str, str, str], Any] = {}
        self.app = Starlette(routes=self._routes(), lifespan=self._lifespan)

    # -- lifecycle --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        # Opened here, on the loop's thread: see the module docstring.
        opened = open_realm(self.path, read_only=self.read_only)
        self._opened = opened
        try:
            for name in opened.stored.counts:
                results = opened.realm.all(opened.model(name))
                token = results.add_listener(self._on_change(name), initial=False)
                self._all[name] = (results, token)
            yield
        finally:
            for _results, token in self._all.values():
                token.remove()
            self._all.clear()
            self._queries.clear()
            self.end_streams()
            opened.close()

    @property
    def opened(self) -> OpenedRealm:
        if self._opened is None:  # pragma: no cover - requests come after the lifespan
            raise ApiError("the realm is not open", 503)
        return self._opened

    def _on_change(self, name: str) -> Callable[[Any, Any], None]:
        def changed(results: Any, changes: Any) -> None:
            event = {
                "class": name,
                "count": len(results),
                "inserted": len(changes.inserted),
                "deleted": len(changes.deleted),
                "modified": len(changes.modified),
                "version": self.opened.realm.version,
            }
            self.broadcast(json.dumps(event))

        return changed

    def broadcast(self, data: str) -> None:
        for q in self._queues:
            q.put_nowait(data)

    def end_streams(self) -> None:
        """End every event stream (the server is stopping: open streams would hold it up)."""
        self.broadcast("")

    # -- plumbing ---------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        api: list[tuple[str, Callable[[Request], Awaitable[Any]], list[str]]] = [
            ("/api/info", self.info, ["GET"]),
            ("/api/objects", self.objects, ["GET"]),
            ("/api/object", self.object, ["GET"]),
            ("/api/update", self.update, ["POST"]),
            ("/api/add", self.add, ["POST"]),
            ("/api/delete", self.delete, ["POST"]),
        ]
        routes = [Route(path, self._json(fn), methods=m) for path, fn, m in api]
        routes += [
            Route("/", self._guard(self.page)),
            Route("/static/{name}", self._guard(self.static)),
            Route("/api/events", self._guard(self.events)),
            Route("/api/export", self._guard(self.export)),
        ]
        return routes

    def _authorised(self, request: Request) -> bool:
        given = request.query_params.get("token") or request.headers.get("x-studio-token") or ""
        return secrets.compare_digest(given.encode(), self.token.encode())

    def _guard(
        self, fn: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            if not self._authorised(request):
                return JSONResponse(
                    {"error": "missing or wrong token: open the URL realmpy studio printed"},
                    status_code=403,
                )
            try:
                return await fn(request)
            except ApiError as exc:
                return JSONResponse({"error": str(exc), **exc.extra}, status_code=exc.status)

        return guarded

    def _json(
        self, fn: Callable[[Request], Awaitable[Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            with _api_errors():
                return JSONResponse(await fn(request))

        return self._guard(handler)

    # -- pages ------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(html.replace("{{TOKEN}}", self.token))

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("studio.js", "studio.css"):
            raise ApiError(f"no static file {name!r}", 404)
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})

    async def events(self, request: Request) -> Response:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._queues.add(queue)

        async def stream() -> AsyncIterator[str]:
            try:
                yield f"event: hello\ndata: {json.dumps({'version': self.opened.realm.version})}\n\n"
                while True:
                    try:
                        data = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                    except asyncio.TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if not data:
                        return
                    yield f"event: change\ndata: {data}\n\n"
            finally:
                self._queues.discard(queue)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    # -- reading ----------------------------------------------------------------------

    def _class(self, name: str | None) -> tuple[ObjectSchema, type[Any]]:
        if not name:
            raise ApiError("name a class (class=...)")
        cls = self.opened.model(name)
        return self.opened.object_schema(name), cls

    def _link_id(self, class_name: str, target: Any) -> Any:
        return self._id_json(self.opened.object_schema(class_name), target)

    def _id_json(self, oschema: ObjectSchema, obj: Any) -> Any:
        pk = oschema.primary_key
        if pk is None:
            return object_id(obj)
        return J.encode_scalar(oschema.property(pk).type, getattr(obj, pk))

    def _find(self, oschema: ObjectSchema, cls: type[Any], ident: Any) -> Any:
        pk = oschema.primary_key
        realm = self.opened.realm
        if pk is not None:
            obj = realm.find(cls, J.decode_scalar(oschema.property(pk).type, ident, "id"))
        else:
            obj = self._by_sequence(oschema.name, ident)
        if obj is None:
            raise ApiError(f"no {oschema.name} with id {ident!r} (deleted?)", 404)
        return obj

    def _by_sequence(self, name: str, ident: Any) -> Any:
        """An object of a class without a primary key, by the sequence number
        its key encodes: a binary search of the class, which is in key order."""
        if isinstance(ident, bool) or not isinstance(ident, int):
            raise ApiError(f"{name} has no primary key: its objects are named by number")
        everything = self._all[name][0]
        lo, hi = 0, len(everything)
        while lo < hi:
            mid = (lo + hi) // 2
            if object_id(everything[mid]) < ident:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(everything) and object_id(everything[lo]) == ident:
            return everything[lo]
        return None

    def _row(self, oschema: ObjectSchema, obj: Any) -> dict[str, Any]:
        schema = self.opened.stored.schema
        return {
            "id": self._id_json(oschema, obj),
            "values": encode_object(schema, oschema, obj, self._link_id),
        }

    def _results(self, params: Any) -> tuple[ObjectSchema, Any]:
        oschema, cls = self._class(params.get("class"))
        text = (params.get("query") or "").strip()
        try:
            raw_args = json.loads(params.get("args") or "[]")
        except ValueError:
            raise ApiError("args must be a JSON array of the query's $0, $1, ...") from None
        if not isinstance(raw_args, list):
            raise ApiError("args must be a JSON array of the query's $0, $1, ...")
        args = [J.decode_arg(a) for a in raw_args]
        sort = params.get("sort")
        if sort:
            if oschema.get(sort) is None:
                raise ApiError(f"{oschema.name} has no property {sort!r} to sort by")
            if "SORT(" not in text.upper():  # the query's own SORT wins
                order = "DESC" if params.get("desc") in ("1", "true") else "ASC"
                text = f"{text or 'TRUEPREDICATE'} SORT({sort} {order})"
        if not text:
            return oschema, self._all[oschema.name][0]
        key = (oschema.name, text, json.dumps(raw_args))
        results = self._queries.get(key)
        if results is None:
            results = self.opened.realm.query(cls, text, *args)
            if len(self._queries) >= QUERY_CACHE:
                del self._queries[next(iter(self._queries))]  # the oldest
            self._queries[key] = results
        return oschema, results

    async def info(self, request: Request) -> Any:
        opened = self.opened
        stored = opened.stored
        realm = opened.realm
        classes = []
        for c in stored.schema.classes:
            count = None if c.embedded else len(self._all[c.name][0])
            classes.append(
                {
                    "name": c.name,
                    "embedded": c.embedded,
                    "count": count,
                    "primary_key": c.primary_key,
                    "properties": [p.to_dict() for p in c.properties],
                }
            )
        sync = None
        if stored.synced:
            from realmpy.tools.syncstate import realm_sync_state

            sync = realm_sync_state(realm)
        return {
            "path": self.path,
            "version": realm.version,
            "read_only": self.read_only,
            "schema_version": stored.schema_version,
            "classes": classes,
            "sync": sync,
        }

    async def objects(self, request: Request) -> Any:
        params = request.query_params
        oschema, results = self._results(params)
        offset = max(0, int(params.get("offset") or 0))
        limit = min(PAGE_LIMIT, max(1, int(params.get("limit") or 50)))
        total = len(results)
        rows = [self._row(oschema, results[i]) for i in range(offset, min(total, offset + limit))]
        return {"class": oschema.name, "total": total, "offset": offset, "rows": rows}

    async def object(self, request: Request) -> Any:
        params = request.query_params
        oschema, cls = self._class(params.get("class"))
        obj = self._find(oschema, cls, json.loads(params.get("id") or "null"))
        out = self._row(oschema, obj)
        out["class"] = oschema.name
        out["backlinks"] = self._backlinks(oschema, obj)
        return out

    def _backlinks(self, oschema: ObjectSchema, obj: Any) -> list[dict[str, Any]]:
        """Objects whose links point at ``obj``: one query per linking property."""
        opened = self.opened
        out = []
        for c in opened.stored.schema.classes:
            if c.embedded:
                continue  # links from inside embedded objects are not queryable by path here
            for p in c.properties:
                if p.type != "link" or p.target != oschema.name or p.collection == "dict":
                    continue
                found = opened.realm.query(opened.model(c.name), f"{p.name} == $0", obj)
                ids = [self._id_json(c, o) for o in found[:PAGE_LIMIT]]
                if ids:
                    out.append(
                        {"class": c.name, "property": p.name, "ids": ids, "total": len(found)}
                    )
        return out

    async def export(self, request: Request) -> Response:
        params = request.query_params
        with _api_errors():
            oschema, results = self._results(params)
            schema = self.opened.stored.schema
            lines = [encode_object(schema, oschema, o, self._link_id) for o in results]
        fmt = params.get("format") or "json"
        name = oschema.name
        if fmt == "csv":
            buf = io.StringIO()
            write_csv(buf, oschema, lines)
            body, media = buf.getvalue(), "text/csv"
        elif fmt == "json":
            body, media = json.dumps(lines, ensure_ascii=False, indent=1), "application/json"
        else:
            raise ApiError("format is json or csv")
        return Response(
            body,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
        )

    # -- writing: each request is one write transaction ---------------------------------

    async def _body(self, request: Request) -> dict[str, Any]:
        if self.read_only:
            raise ApiError("Studio was started with --read-only", 403)
        try:
            body = await request.json()
        except ValueError:
            raise ApiError("the request body must be JSON") from None
        if not isinstance(body, dict):
            raise ApiError("the request body must be a JSON object")
        return body

    def _decoder(self) -> tuple[Callable[[str, Any], Any], Callable[[str, dict[str, Any]], Any]]:
        opened = self.opened

        def link(class_name: str, ident: Any) -> Any:
            oschema = opened.object_schema(class_name)
            return self._find(oschema, opened.models[class_name], ident)

        def embedded(class_name: str, values: dict[str, Any]) -> Any:
            return opened.models[class_name](**values)

        return link, embedded

    async def update(self, request: Request) -> Any:
        body = await self._body(request)
        oschema, cls = self._class(body.get("class"))
        prop = oschema.get(str(body.get("property")))
        if prop is None:
            raise ApiError(f"{oschema.name} has no property {body.get('property')!r}")
        if prop.primary_key:
            raise ApiError("a primary key cannot change: add a new object instead")
        realm = self.opened.realm
        link, embedded = self._decoder()
        with realm.write(timeout=10):
            obj = self._find(oschema, cls, body.get("id"))
            value = J.decode_property(
                self.opened.stored.schema, oschema.name, prop, body.get("value"), link, embedded
            )
            setattr(obj, prop.name, value)
        return self._row(oschema, obj)

    async def add(self, request: Request) -> Any:
        body = await self._body(request)
        oschema, cls = self._class(body.get("class"))
        values = body.get("values")
        if not isinstance(values, dict):
            raise ApiError('"values" must be a JSON object of property values')
        schema = self.opened.stored.schema
        link, embedded = self._decoder()
        realm = self.opened.realm
        with realm.write(timeout=10):
            fields = {}
            for key, raw in values.items():
                prop = oschema.get(key)
                if prop is None:
                    raise ApiError(f"{oschema.name} has no property {key!r}")
                fields[key] = J.decode_property(schema, oschema.name, prop, raw, link, embedded)
            obj = realm.add(cls(**fields))
        return self._row(oschema, obj)

    async def delete(self, request: Request) -> Any:
        body = await self._body(request)
        oschema, cls = self._class(body.get("class"))
        realm = self.opened.realm
        with realm.write(timeout=10):
            realm.delete(self._find(oschema, cls, body.get("id")))
        return {"deleted": True}


# ----------------------------------------------------------------------------- command


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def main(argv: Sequence[str], out: TextIO) -> int:
    from realmpy.tools.commands import Parser, UsageError

    p = Parser(
        prog="realmpy studio",
        description="Browse, query, edit and watch a realm file in the browser.",
    )
    p.add_argument("path", help="the realm file")
    p.add_argument("--port", type=int, default=0, help="TCP port (default 0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--no-browser", action="store_true", help="only print the URL")
    p.add_argument("--read-only", action="store_true", help="turn editing off")
    args = p.parse_args(argv)
    try:
        import uvicorn
    except ImportError:
        raise UsageError("Studio needs the server extra: pip install 'realmpy[server]'") from None
    studio = Studio(args.path, read_only=args.read_only)
    open_realm(studio.path, read_only=True).close()  # fail here, as one line, if it cannot open
    try:
        sock = _listen(args.host, args.port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/?token={studio.token}"
    out.write(f"realmpy studio: serving {studio.path}\n{url}\n")
    out.flush()
    if not args.no_browser:
        webbrowser.open(url)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # A signal handler: let the loop end the streams between its callbacks.
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_soon_threadsafe(studio.end_streams)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(studio.app, log_level="warning", lifespan="on")
    server = Server(config)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    print("realmpy studio: stopped", file=sys.stderr)
    return 0
