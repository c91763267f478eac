"""Reconnecting after an outage (issue 18, item 6): a device retries an unreachable server at
most ``RECONNECT_CAP_S`` apart, so a restarted server has it back within that bound, while a
server that answers with errors is still backed off up to the general cap."""

from __future__ import annotations

from realmpy.sync.agent import RECONNECT_CAP_S, Backoff


def test_an_unreachable_server_is_retried_within_the_reconnect_cap() -> None:
    b = Backoff()
    waits = [b.next(unreachable=True) for _ in range(40)]  # a long outage
    assert max(waits) <= RECONNECT_CAP_S
    assert min(waits[10:]) >= RECONNECT_CAP_S / 2  # jittered over the cap's second half
    assert waits[0] <= b.first  # a short blip is retried at once


def test_a_server_that_answers_errors_is_backed_off_to_the_general_cap() -> None:
    b = Backoff()
    waits = [b.next() for _ in range(40)]
    assert max(waits) <= b.cap
    assert min(waits[10:]) >= b.cap / 2 > RECONNECT_CAP_S
