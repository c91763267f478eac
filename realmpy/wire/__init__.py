"""The wire kernel: what the sync client and the server both speak.

``protocol`` (message and value encoding), ``merge`` (the deterministic merge
rule both sides apply) and ``error_codes`` (every wire error code, the HTTP
status the server answers with and what the client does about it).  The
client (``realmpy.sync``) and the server (``realmpy.server``) import this
package; it imports neither (docs/architecture.md, enforced by import-linter).
"""
