"""Tests of the sync server: its HTTP API, permissions, process and command line."""
