"""realmpy's self-hosted sync server (``realmpy-server``).

Layers inside, each one module: ``config`` (file + flags), ``store`` (abstract
base and shared SQL) with ``store_sqlite`` and ``store_postgres``, ``auth``
(logins and tokens), ``permissions`` (query rules), ``group_commit`` (uploads
integrated in batches), ``sync_service`` (upload
integration, subscriptions, downloads), ``app`` (ASGI routes), ``limits``
(request bodies), ``ratelimit`` (logins, registrations, password hashes),
``transport`` (header deadline, connection cap), ``metrics``, ``logs``,
``cli`` (command line) with ``options`` (shared flags, opening the store),
``serve`` (uvicorn) and ``admin`` (users, API keys).  The wire format and the merge rule come from
``realmpy.sync.protocol`` and ``realmpy.sync.merge``, shared with the client;
nothing here depends on the C engine.
"""

from __future__ import annotations

__all__: list[str] = []
