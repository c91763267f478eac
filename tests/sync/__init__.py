"""Tests of the sync client and the merge rules it shares with the server."""
