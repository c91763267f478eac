"""The merge rule (realmpy.wire.merge): worked examples of each rule, and the algebra of ``join``.

Convergence of whole simulated systems lives in test_merge_convergence.py.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realmpy.wire.merge import ObjectState, check_clock, join, list_element_ids
from realmpy.wire.protocol import ClockSkewError, MalformedMessage, Op, OpCode, Stamp, pack, unpack

EXAMPLES = 300 if os.environ.get("CI") else 100
T = "Car"


def create() -> Op:
    return Op(OpCode.CREATE, T, 1)


def erase() -> Op:
    return Op(OpCode.ERASE, T, 1)


def set_(field: str, value: object) -> Op:
    return Op(OpCode.SET, T, 1, field, value)


def add(field: str, delta: int) -> Op:
    return Op(OpCode.ADD, T, 1, field, delta)


def ins(after: Stamp | None, value: object, field: str = "tags") -> Op:
    return Op(OpCode.LIST_INSERT, T, 1, field, value, after)


def s(ts: int, fi: int, cv: int = 1, i: int = 0) -> Stamp:
    return Stamp(ts, fi, cv, i)


def test_last_writer_wins_per_field_by_stamp() -> None:
    a = ObjectState()
    a.apply(create(), s(1, 1), 0, 1)
    a.apply(set_("make", "VW"), s(10, 1), 0, 1)
    a.apply(set_("make", "Audi"), s(9, 2), 0, 2)  # older stamp loses although applied later
    a.apply(set_("model", "A4"), s(9, 2, 1, 1), 0, 2)  # another field is independent
    assert a.materialize("id", 1) == {"id": 1, "make": "VW", "model": "A4"}


def test_equal_timestamps_break_ties_by_file_ident() -> None:
    a = ObjectState()
    a.apply(create(), s(1, 1), 0, 1)
    a.apply(set_("make", "from-2"), s(5, 2), 0, 1)
    a.apply(set_("make", "from-1"), s(5, 1), 0, 2)
    assert a.field_value("make") == "from-2"


def test_counter_increments_commute_and_count_after_the_winning_set() -> None:
    a = ObjectState()
    a.apply(create(), s(1, 1), 0, 1)
    a.apply(add("miles", 5), s(2, 1), 0, 1)
    a.apply(add("miles", 7), s(3, 2), 0, 2)
    assert a.field_value("miles") == 12
    a.apply(set_("miles", 100), s(4, 3), 0, 3)  # a set stamped after both adds wins over them
    a.apply(add("miles", 1), s(5, 2, 2), 0, 3)
    assert a.field_value("miles") == 101


def test_create_is_an_idempotent_upsert() -> None:
    a = ObjectState()
    a.apply(create(), s(1, 1), 0, 1)
    a.apply(set_("make", "VW"), s(2, 1), 0, 1)
    a.apply(create(), s(3, 2), 0, 2)  # a second create of the same key keeps the fields
    assert a.materialize("id", 1) == {"id": 1, "make": "VW"}


def test_erase_wins_over_a_concurrent_later_stamped_change() -> None:
    a = ObjectState()
    a.apply(create(), s(1, 1), 0, 1)  # sv 1
    a.apply(erase(), s(5, 2), 1, 2)  # client 2 saw sv 1, erases at sv 2
    a.apply(set_("make", "late"), s(9, 3), 1, 3)  # client 3 had only sv 1: concurrent
    assert a.materialize("id", 1) is None
    # the same set arriving *before* the erase is removed by it (order does not matter)
    b = ObjectState()
    b.apply(create(), s(1, 1), 0, 1)
    b.apply(set_("make", "late"), s(9, 3), 1, 2)
    b.apply(erase(), s(5, 2), 1, 3)
    assert b.materialize("id", 1) is None


def test_a_create_that_saw_the_erase_resurrects() -> None:
    a = ObjectState()
    a.apply(create(), s(1, 1), 0, 1)
    a.apply(erase(), s(5, 2), 1, 2)
    a.apply(create(), s(6, 3), 2, 3)  # client 3 had downloaded sv 2
    a.apply(set_("make", "new"), s(6, 3, 1, 1), 2, 3)
    assert a.materialize("id", 1) == {"id": 1, "make": "new"}


def test_erase_and_recreate_in_one_changeset() -> None:
    a = ObjectState()
    a.apply(create(), s(1, 1), 0, 1)
    a.apply(set_("make", "old"), s(1, 1, 1, 1), 0, 1)
    a.apply(erase(), s(2, 1, 2, 0), 1, 2)
    a.apply(create(), s(2, 1, 2, 1), 1, 2)
    assert a.materialize("id", 1) == {"id": 1}


def test_concurrent_list_inserts_are_all_kept_in_stamp_order() -> None:
    a = ObjectState()
    a.apply(create(), s(1, 1), 0, 1)
    head = s(1, 1, 1, 1)
    a.apply(ins(None, "x"), head, 0, 1)
    # three clients insert after "x" concurrently, applied in two different orders
    ops = [
        (ins(head, "from1"), s(5, 1, 2)),
        (ins(head, "from2"), s(5, 2)),
        (ins(head, "from3"), s(4, 3)),
    ]
    b = a.copy()
    for op, st_ in ops:
        a.apply(op, st_, 1, 2)
    for op, st_ in reversed(ops):
        b.apply(op, st_, 1, 2)
    assert a.list_value("tags") == b.list_value("tags") == ["x", "from2", "from1", "from3"]


def test_list_erase_hides_the_element_but_keeps_it_as_an_anchor() -> None:
    a = ObjectState()
    a.apply(create(), s(1, 1), 0, 1)
    e1 = s(1, 1, 1, 1)
    a.apply(ins(None, "a"), e1, 0, 1)
    a.apply(Op(OpCode.LIST_ERASE, T, 1, "tags", None, e1), s(2, 1, 2), 1, 2)
    a.apply(ins(e1, "b"), s(1, 2, 1), 1, 3)  # inserted after an element another client erased
    assert a.list_value("tags") == ["b"]
    assert list_element_ids(a, "tags") == [s(1, 2, 1)]


def test_clock_skew_is_refused() -> None:
    check_clock(1000 + 60_000, now=1000, max_skew_ms=60_000)
    with pytest.raises(ClockSkewError) as info:
        check_clock(1000 + 60_001, now=1000, max_skew_ms=60_000)
    assert info.value.code == "clock_skew"


def test_state_codec_round_trips_and_rejects_garbage() -> None:
    a = ObjectState()
    a.apply(create(), s(1, 1), 0, 1)
    a.apply(set_("make", "VW"), s(2, 1), 0, 1)
    a.apply(add("miles", 3), s(3, 1), 0, 1)
    a.apply(ins(None, "t"), s(4, 1), 0, 1)
    a.apply(erase(), s(5, 2), 0, None)
    b = ObjectState.from_wire(unpack(pack(a.to_wire())))
    assert a == b and pack(a.to_wire()) == pack(b.to_wire())
    for bad in ([], [1, 2, 3, 4, 5, 6], [[["x"]], [], {}, {}, {}, {}], "state"):
        with pytest.raises(MalformedMessage):
            ObjectState.from_wire(bad)


def sadd(value: object) -> Op:
    return Op(OpCode.SET_ADD, T, 1, "labels", value)


def serase(value: object) -> Op:
    return Op(OpCode.SET_ERASE, T, 1, "labels", value)


def test_set_concurrent_add_and_erase_keeps_the_element_add_wins() -> None:
    a = ObjectState()
    a.apply(create(), s(1, 1), 0, 1)
    a.apply(sadd("x"), s(2, 1), 0, 2)  # client 1 adds x at sv 2
    a.apply(serase("x"), s(9, 2), 1, 3)  # client 2 (had sv 1 only) erases x: did not observe it
    assert a.set_value("labels") == ["x"]
    a.apply(serase("x"), s(10, 3), 2, 4)  # client 3 had sv 2: observed the add, removes it
    assert a.set_value("labels") == []
    a.apply(
        sadd("x"), s(3, 2, 2), 1, 5
    )  # an add nobody erased after: back (stamp order irrelevant)
    assert a.set_value("labels") == ["x"]


def test_set_erase_of_own_earlier_add_and_local_adds_before_integration() -> None:
    local = ObjectState()
    local.apply(create(), s(1, 7), 0, None)
    local.apply(sadd("x"), s(2, 7), 0, None)  # not integrated yet: nobody else observed it
    local.apply(serase("x"), s(3, 7, 2), 0, None)  # same file, later: observed
    assert local.set_value("labels") == []
    remote = ObjectState()
    remote.apply(sadd("y"), s(1, 7, 3), 0, None)
    remote.apply(serase("y"), s(9, 8), 5, 6)  # another file at sv 5; the add is unintegrated
    assert remote.set_value("labels") == ["y"]
    server = ObjectState()
    server.apply(sadd("y"), s(1, 7, 3), 0, 4)  # integrated at sv 4 <= the erase's base 5
    merged = join(remote, server)
    assert merged.set_value("labels") == [] == join(server, remote).set_value("labels")


def test_dictionary_keys_are_last_writer_wins_with_erase() -> None:
    a = ObjectState()
    a.apply(create(), s(1, 1), 0, 1)
    a.apply(Op(OpCode.DICT_SET, T, 1, "prefs", "dark", key="theme"), s(5, 1), 0, 1)
    a.apply(Op(OpCode.DICT_SET, T, 1, "prefs", "light", key="theme"), s(4, 2), 0, 2)
    a.apply(Op(OpCode.DICT_SET, T, 1, "prefs", 3, key="size"), s(4, 2, 1, 1), 0, 2)
    assert a.dict_value("prefs") == {"size": 3, "theme": "dark"}
    a.apply(Op(OpCode.DICT_ERASE, T, 1, "prefs", key="theme"), s(6, 3), 2, 3)
    assert a.materialize("id", 1) == {"id": 1, "prefs": {"size": 3}}
    a.apply(Op(OpCode.DICT_SET, T, 1, "prefs", "blue", key="theme"), s(7, 2, 2), 2, 4)
    assert a.dict_value("prefs") == {"size": 3, "theme": "blue"}


def test_embedded_objects_merge_per_path() -> None:
    a = ObjectState()
    a.apply(create(), s(1, 1), 0, 1)
    a.apply(set_("addr", {"city": "Oslo", "zip": "0150", "n": 1}), s(2, 1), 0, 1)
    a.apply(set_("addr.city", "Bergen"), s(5, 2), 1, 2)  # one path, newer: wins
    a.apply(set_("addr.zip", "9999"), s(1, 3), 0, 3)  # older than the whole object: loses
    a.apply(add("addr.n", 2), s(6, 3, 2), 1, 4)  # a counter inside an embedded object
    assert a.materialize("id", 1) == {"id": 1, "addr": {"city": "Bergen", "zip": "0150", "n": 3}}
    a.apply(set_("addr", {"city": "Rome"}), s(7, 1, 2), 2, 5)  # a new object replaces all paths
    assert a.materialize("id", 1) == {"id": 1, "addr": {"city": "Rome"}}
    a.apply(set_("addr", None), s(8, 2, 2), 5, 6)
    a.apply(set_("addr.city", "Lost"), s(9, 3, 3), 5, 7)  # under a null object: ignored
    assert a.materialize("id", 1) == {"id": 1, "addr": None}


def test_erase_wins_over_concurrent_collection_changes() -> None:
    a = ObjectState()
    a.apply(create(), s(1, 1), 0, 1)
    a.apply(erase(), s(5, 2), 1, 2)
    a.apply(sadd("x"), s(9, 3), 1, 3)
    a.apply(Op(OpCode.DICT_SET, T, 1, "prefs", 1, key="k"), s(9, 3, 1, 1), 1, 3)
    a.apply(create(), s(10, 1, 2), 2, 4)  # saw the erase: resurrects, without the dropped writes
    assert a.materialize("id", 1) == {"id": 1}


def test_state_with_collections_round_trips_and_old_shape_is_unchanged() -> None:
    a = ObjectState()
    a.apply(create(), s(1, 1), 0, 1)
    assert len(a.to_wire()) == 6  # states without sets/dictionaries keep the v1 shape
    a.apply(sadd("x"), s(2, 1), 0, 2)
    a.apply(serase("y"), s(2, 1, 1, 1), 0, 2)
    a.apply(Op(OpCode.DICT_ERASE, T, 1, "prefs", key="k"), s(3, 2), 0, None)
    a.apply(set_("addr", {"city": "Oslo"}), s(4, 2, 2), 0, None)
    w = a.to_wire()
    assert len(w) == 7
    b = ObjectState.from_wire(unpack(pack(w)))
    assert a == b and pack(b.to_wire()) == pack(w)
    assert b.without_origin(2) == build(
        [(create(), s(1, 1), 0, 1), (sadd("x"), s(2, 1), 0, 2), (serase("y"), s(2, 1, 1, 1), 0, 2)]
    )
    for bad in (
        [*w[:6], {"sets": 1}],
        [*w[:6], {"other": {}}],
        [*w[:6], {"dicts": {"f": [[1, []]]}}],
    ):
        with pytest.raises(MalformedMessage):
            ObjectState.from_wire(bad)


# --------------------------------------------------------------------------- algebra of join


@st.composite
def causal_ops(draw: st.DrawFn) -> list[tuple[Op, Stamp, int, int]]:
    """A causally plausible history on one object: (op, stamp, base_sv, sv), sv = position + 1.

    Each file's clock runs independently but never backwards (the server refuses an upload
    stamped before the file's previous one), so files are concurrent in any order while
    every file's own stamps grow with its client versions, as the merge rule requires.
    """
    n = draw(st.integers(1, 12))
    out: list[tuple[Op, Stamp, int, int]] = []
    cv = {1: 0, 2: 0, 3: 0}
    clock = {1: 0, 2: 0, 3: 0}
    base = {1: 0, 2: 0, 3: 0}
    elems: list[Stamp] = []
    for sv in range(1, n + 1):
        fi = draw(st.integers(1, 3))
        cv[fi] += 1
        base[fi] = draw(st.integers(base[fi], sv - 1))  # a client has downloaded some prefix
        clock[fi] += draw(st.integers(0, 60))  # equal timestamps within a file are allowed
        stamp = Stamp(clock[fi], fi, cv[fi], 0)
        kind = draw(
            st.sampled_from(
                [
                    "create",
                    "erase",
                    "set",
                    "add",
                    "ins",
                    "lerase",
                    "sadd",
                    "serase",
                    "dset",
                    "derase",
                    "eset",
                    "epath",
                    "eadd",
                ]
            )
        )
        if kind == "create":
            op = create()
        elif kind == "erase":
            op = erase()
        elif kind == "set":
            op = set_(draw(st.sampled_from(["a", "b"])), draw(st.integers(0, 3)))
        elif kind == "add":
            op = add("a", draw(st.integers(-3, 3)))
        elif kind == "ins":
            op = ins(
                draw(st.sampled_from([None, *elems])) if elems else None, draw(st.integers(0, 9))
            )
            elems.append(stamp)
        elif kind == "sadd":
            op = Op(OpCode.SET_ADD, T, 1, "labels", draw(st.sampled_from(["x", "y"])))
        elif kind == "serase":
            op = Op(OpCode.SET_ERASE, T, 1, "labels", draw(st.sampled_from(["x", "y"])))
        elif kind == "dset":
            key = draw(st.sampled_from(["k1", "k2"]))
            op = Op(OpCode.DICT_SET, T, 1, "prefs", draw(st.integers(0, 3)), key=key)
        elif kind == "derase":
            op = Op(OpCode.DICT_ERASE, T, 1, "prefs", key=draw(st.sampled_from(["k1", "k2"])))
        elif kind == "eset":
            op = set_("addr", draw(st.sampled_from([None, {"city": "A", "n": 1}, {"city": "B"}])))
        elif kind == "epath":
            op = set_("addr.city", draw(st.sampled_from(["C", "D"])))
        elif kind == "eadd":
            op = add("addr.n", draw(st.integers(-2, 2)))
        else:
            if not elems:
                continue
            op = Op(OpCode.LIST_ERASE, T, 1, "tags", None, draw(st.sampled_from(elems)))
        out.append((op, stamp, base[fi], sv))
    return out


def build(ops: list[tuple[Op, Stamp, int, int]]) -> ObjectState:
    st_ = ObjectState()
    for op, stamp, base, sv in ops:
        st_.apply(op, stamp, base, sv)
    return st_


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(causal_ops(), st.data())
def test_join_is_commutative_associative_idempotent(
    ops: list[tuple[Op, Stamp, int, int]], data: st.DataObject
) -> None:
    parts = [build(ops[i::3]) for i in range(3)]
    a, b, c = parts
    assert join(a, b) == join(b, a)
    assert join(join(a, b), c) == join(a, join(b, c))
    assert join(a, a) == a
    assert join(join(a, b), b) == join(a, b)


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(causal_ops(), st.randoms(use_true_random=False))
def test_any_order_with_duplicates_gives_the_same_state(
    ops: list[tuple[Op, Stamp, int, int]], rnd: object
) -> None:
    import random

    assert isinstance(rnd, random.Random)
    reference = build(ops)
    shuffled = ops + [rnd.choice(ops) for _ in range(len(ops) // 2)]  # duplicates
    rnd.shuffle(shuffled)
    assert build(shuffled) == reference
    # apply == join with the op's singleton state
    folded = ObjectState()
    for op, stamp, base, sv in shuffled:
        single = ObjectState()
        single.apply(op, stamp, base, sv)
        folded = join(folded, single)
    assert folded == reference


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(causal_ops(), st.data())
def test_reader_states_converge_like_full_ones(
    ops: list[tuple[Op, Stamp, int, int]], data: st.DataObject
) -> None:
    """A download carries ``for_reader()``: a client joining it with what it held before, and
    merging whatever comes later, sees the object exactly as with the full state."""
    k = data.draw(st.integers(0, len(ops)))
    j = data.draw(st.integers(0, k))
    server = build(ops[:k])
    held = build(ops[:j]).for_reader()  # what the client received earlier
    full, reader = join(held, server), join(held, server.for_reader())
    assert reader.materialize("id", 1) == full.materialize("id", 1)
    for op, stamp, base, sv in ops[k:]:
        full.apply(op, stamp, base, sv)
        reader.apply(op, stamp, base, sv)
        assert reader.materialize("id", 1) == full.materialize("id", 1)
    assert ObjectState.from_wire(unpack(pack(reader.to_wire()))) == reader


def test_reader_state_of_an_overwritten_field_converges_after_more_writes_of_the_winner() -> None:
    """Regression (hypothesis once found it with a file clock running backwards): file 1
    overwrites file 2's value, the reader state nulls file 2's value, then file 1 writes again
    and creates twice.  The reader must keep seeing what a full replica sees."""
    history = [
        (create(), s(1, 1, 1), 0, 1),
        (set_("a", "from-2"), s(11, 2, 1), 0, 2),
        (set_("a", "from-1"), s(12, 1, 2), 0, 3),
        (set_("a", "again-1"), s(12, 1, 3), 0, 4),  # same millisecond: the clock is clamped
        (create(), s(12, 1, 4), 0, 5),
        (create(), s(13, 1, 5), 0, 6),
    ]
    server = build(history[:3])
    assert server.for_reader().regs["a"][2][1] is None  # file 2's value is not sent
    full, reader = server.copy(), server.for_reader()
    for op, stamp, base, sv in history[3:]:
        full.apply(op, stamp, base, sv)
        reader.apply(op, stamp, base, sv)
        assert reader.materialize("id", 1) == full.materialize("id", 1)
    assert full.materialize("id", 1) == {"id": 1, "a": "again-1"}


def test_a_file_clock_running_backwards_would_bring_an_overwritten_value_back() -> None:
    """Why the server refuses an upload stamped before the file's previous one (see
    test_server_api.test_timestamps_must_not_go_backwards_within_a_file): a register keeps
    each file's newest write, so a newer write with an older stamp would replace that file's
    winner and revive a value already overwritten, which ``for_reader`` no longer sends."""
    a = build(
        [
            (create(), s(1, 1, 1), 0, 1),
            (set_("a", "from-2"), s(11, 2, 1), 0, 2),
            (set_("a", "from-1"), s(12, 1, 2), 0, 3),
            (set_("a", "back-1"), s(3, 1, 3), 0, 4),  # the history the server refuses
        ]
    )
    assert a.field_value("a") == "from-2"


def test_reader_state_drops_overwritten_values() -> None:
    st_ = ObjectState()
    st_.apply(create(), s(10, 1), 0, 1)
    st_.apply(set_("title", "draft-secret-K3"), s(11, 1), 0, 1)
    st_.apply(set_("addr", {"city": "old-secret"}), s(12, 1), 0, 1)
    st_.apply(ins(None, "erased-secret"), s(13, 1), 0, 1)
    st_.apply(Op(OpCode.LIST_ERASE, T, 1, "tags", None, s(13, 1)), s(14, 1), 0, 1)
    st_.apply(Op(OpCode.DICT_SET, T, 1, "prefs", "dict-secret", key="k"), s(15, 1), 0, 1)
    st_.apply(add("miles", 5), s(16, 1), 0, 1)
    st_.apply(set_("title", "final text"), s(20, 2), 1, 2)
    st_.apply(set_("addr", {"city": "new"}), s(21, 2), 1, 2)
    st_.apply(Op(OpCode.DICT_SET, T, 1, "prefs", "v2", key="k"), s(22, 2), 1, 2)
    st_.apply(set_("miles", 1), s(23, 2), 1, 2)
    wire = pack(st_.for_reader().to_wire())
    for secret in (b"draft-secret-K3", b"old-secret", b"erased-secret", b"dict-secret"):
        assert secret in pack(st_.to_wire()) and secret not in wire
    assert ObjectState.from_wire(unpack(wire)).materialize("id", 1) == st_.materialize("id", 1)
    assert st_.materialize("id", 1) == {
        "id": 1,
        "title": "final text",
        "addr": {"city": "new"},
        "miles": 1,
        "tags": [],
        "prefs": {"k": "v2"},
    }
