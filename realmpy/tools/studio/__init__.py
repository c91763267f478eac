"""realmpy Studio: ``realmpy studio PATH`` browses, queries, edits and watches a
realm file in the browser.

A Starlette app under uvicorn (the server extra) serving one page of plain
HTML/JS/CSS from ``static/`` (no CDN, no build step) and a small JSON API
(:mod:`realmpy.tools.studio.server`).  It listens on 127.0.0.1 by default,
and every request must carry the random token printed in the URL (as
Jupyter's): a query parameter ``token`` or the ``X-Studio-Token`` header.
The page stays live through Server-Sent Events fed by the library's own
notifications: a results listener per class, called on the server's event
loop when any process commits (docs/tools.md).
"""
