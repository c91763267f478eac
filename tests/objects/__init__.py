"""Tests of the object layer: schema, codec, query, realm, results, notifier."""
