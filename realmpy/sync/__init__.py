"""Sync: the wire protocol and merge rule (shared with the server) and, later, the client.

``protocol`` and ``merge`` import nothing from the server or the engine, so
the server can use them without a built C extension.
"""
