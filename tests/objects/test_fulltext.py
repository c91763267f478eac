"""Full-text search: ``field(indexed="fulltext")`` and ``prop TEXT '…'``.

The cases of realm-core's test/test_query2.cpp ``Query_FullText``,
``Query_FullTextMulti`` and ``Query_FullTextPrefix`` (same texts, same
expected objects), the index kept in step by every write path, and the
query reading the index instead of the records."""

from __future__ import annotations

from pathlib import Path

import pytest

import realmpy.fulltextindex as fulltextindex
from realmpy import codec, query
from realmpy.config import Configuration
from realmpy.errors import (
    CorruptError,
    QueryArgumentError,
    QuerySyntaxError,
    QueryTypeError,
    SchemaError,
)
from realmpy.layout import fulltext_name
from realmpy.realm import Realm
from realmpy.schema import Object, field, object_schema
from realmpy.sync.history import apply_record
from realmpy.textsearch import search_terms, tokens


class Doc(Object):
    id: int = field(primary_key=True)
    text: str | None = field(default=None, indexed="fulltext")
    plain: str = ""


class Holder(Object):
    id: int = field(primary_key=True)
    link: list[Doc] = field(default_factory=list)


MODELS = [Doc, Holder]


@pytest.fixture
def models() -> list[type]:
    return list(MODELS)


def ids(results: object) -> list[int]:
    return sorted(o.id for o in results)  # type: ignore[attr-defined]


def find(realm: Realm, terms: str) -> list[int]:
    return ids(realm.query(Doc, "text TEXT $0", terms))


MULTI = [
    "An object database (also object-oriented database management system) is a database "
    "management system in which information is represented in the form of objects as used in "
    "object-oriented programming. Object databases are different from relational databases "
    "which are table-oriented. Object-relational databases are a hybrid of both approaches.",
    "Object database management systems grew out of research during the early to mid-1970s "
    "into having intrinsic database management support for graph-structured objects. The term "
    "'object-oriented database system' first appeared around 1985.[4] Notable research "
    "projects included Encore-Ob/Server (Brown University), EXODUS (University of "
    "Wisconsin\u2013Madison), IRIS (Hewlett-Packard), ODE (Bell Labs), ORION (Microelectronics and "
    "Computer Technology Corporation or MCC), Vodak (GMD-IPSI), and Zeitgeist (Texas "
    "Instruments). The ORION project had more published papers than any of the other efforts. "
    "Won Kim of MCC compiled the best of those papers in a book published by The MIT Press.",
    "Early commercial products included Gemstone (Servio Logic, name changed to GemStone "
    "Systems), Gbase (Graphael), and Vbase (Ontologic). The early to mid-1990s saw additional "
    "commercial products enter the market. These included ITASCA (Itasca Systems), Jasmine "
    "(Fujitsu, marketed by Computer Associates), Matisse (Matisse Software), Objectivity/DB "
    "(Objectivity, Inc.), ObjectStore (Progress Software, acquired from eXcelon which was "
    "originally Object Design), ONTOS (Ontos, Inc., name changed from Ontologic), O2[6] (O2 "
    "Technology, merged with several companies, acquired by Informix, which was in turn "
    "acquired by IBM), POET (now FastObjects from Versant which acquired Poet Software), "
    "Versant Object Database (Versant Corporation), VOSS (Logic Arts) and JADE (Jade Software "
    "Corporation). Some of these products remain on the market and have been joined by new "
    "open source and commercial products such as InterSystems Caché.",
    "As the usage of web-based technology increases with the implementation of Intranets and "
    "extranets, companies have a vested interest in OODBMSs to display their complex data. "
    "Using a DBMS that has been specifically designed to store data as objects gives an "
    "advantage to those companies that are geared towards multimedia presentation or "
    "organizations that utilize computer-aided design (CAD).[3]",
    "Object database management systems added the concept of persistence to object "
    "programming languages. The early commercial products were integrated with various "
    "languages: GemStone (Smalltalk), Gbase (LISP), Vbase (COP) and VOSS (Virtual Object "
    "Storage System for Smalltalk). For much of the 1990s, C++ dominated the commercial object "
    "database management market. Vendors added Java in the late 1990s and more recently, C#.",
    "L\u2019archive ouverte pluridisciplinaire HAL, est destinée au dépôt et à la diffusion de "
    "documents scientifiques de niveau recherche, publiés ou non, émanant des établissements "
    "d\u2019enseignement et de recherche français ou étrangers, des laboratoires publics ou privés.",
    "object object object object object duplicates",
    "one two three",
    "three two one",
    "two one",
]


def fill_multi(realm: Realm) -> None:
    with realm.write():
        for i, text in enumerate(MULTI):
            doc = realm.add(Doc(id=i, text=text))
            realm.add(Holder(id=1000 + i, link=[doc]))


# realm-core's Query_FullTextMulti: terms -> the objects found.
MULTI_CASES = [
    ("ONE THREE", [7, 8]),
    ("three one", [7, 8]),
    ("1990s", [2, 4]),
    ("1990s c++", [4]),
    ("object gemstone", [2, 4]),
    ("depot emanant archive", [5]),
    ("object data", []),
    ("manage*", [0, 1, 4]),
    ("manage* virtu*", [4]),
    ("-three one", [9]),
    ("one -three", [9]),
    ("object -databases", [1, 2, 4, 6]),
    ("-databases object -duplicates", [1, 2, 4]),
    ("object -objects", [2, 4, 6]),
    ("-object objects", [3]),
    ("databases -database", []),
    ("-database databases", []),
    ("database -databases", [1, 2, 4]),
    ("-databases database", [1, 2, 4]),
    ("-database", [3, 5, 6, 7, 8, 9]),
    ("-object", [3, 5, 7, 8, 9]),
    ("-object -objects", [5, 7, 8, 9]),
    ("object database management brown", [1]),
]


def test_realm_cores_multi_term_cases(realm: Realm) -> None:
    fill_multi(realm)
    for terms, expected in MULTI_CASES:
        assert find(realm, terms) == expected, terms
        # The interpreter over plain records agrees with the index.
        q = query.parse("text TEXT $0")
        plain = [{"text": t} for t in MULTI]
        assert [i for i, r in enumerate(plain) if q.matches(r, args=(terms,))] == expected
    # Over links: no index on the way, the texts are read.
    assert ids(realm.query(Holder, "link.text TEXT 'object gemstone'")) == [1002, 1004]
    assert find(realm, "object database management brown") == [1]
    assert ids(realm.query(Doc, "text TEXT 'object database management brown'")) == [1]


@pytest.mark.parametrize(
    "terms",
    [
        "",
        "   ",
        "C# -c++",  # both end up as 'c'
        "-object object",
        "object -object",
        "objects -object object",
        "database -database",
        "object-oriented -database",
        "object-oriented -table-oriented",
        "-data*",
    ],
)
def test_bad_search_terms_are_refused(realm: Realm, terms: str) -> None:
    fill_multi(realm)
    with pytest.raises(QueryArgumentError):
        find(realm, terms)
    with pytest.raises(QuerySyntaxError):
        realm.query(Doc, f"text TEXT {codec_quote(terms)}")


def codec_quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def test_realm_cores_prefix_cases(realm: Realm) -> None:
    with realm.write():
        realm.add(Doc(id=0, text="Abby Abba Ada Adalee Baylee Bellamy Blaire Adalyn"))
        realm.add(Doc(id=1, text="Abigail Abba Barbara Beatrice Bella Blair Blake"))
        realm.add(Doc(id=2, text="Adaline Bellamy Blakely"))
    cases = {
        "ab*": 2,
        "ac*": 0,
        "abbe*": 0,
        "abbex*": 0,
        "Bel*": 3,
        "Blak*": 2,
        "Bellam*": 2,
        "Bel* Abba -Ada": 1,
    }
    for terms, count in cases.items():
        assert len(realm.query(Doc, "text TEXT $0", terms)) == count, terms


def test_realm_cores_single_term_cases_follow_every_write(realm: Realm) -> None:
    """realm-core's Query_FullText: adds, an in-place change, deletes."""
    with realm.write():
        realm.add(Doc(id=1, text=" This is a test, with  spaces!"))
        obj2 = realm.add(Doc(id=2, text="Ål, ø og 你好世界Æbler"))
        obj3 = realm.add(Doc(id=3, text=MULTI[0]))
        realm.add(Doc(id=4, text=MULTI[1]))
        realm.add(
            Doc(
                id=5,
                text="Lilleø er i mange år blevet anvendt til græsning af Askø-bøndernes "
                "kreaturer. I 1788 blev en del af Askøs gårde flyttet til Lilleø, og tre gårde "
                "eksisterer fortsat på øen. Hovederhvervet på Lilleø er i dag frugtavl, og der "
                "dyrkes især æbler, pærer og blommer.",
            )
        )
        realm.add(Doc(id=6, text="Alle elsker John"))
        realm.add(Doc(id=7, text="Johns ven kender John godt"))
        realm.add(Doc(id=8, text="Ich wohne in Großarl"))
        realm.add(Doc(id=9, text="A short story about a dog running after two cats"))
    live = realm.query(Doc, "text TEXT 'object'")
    assert len(live) == 2
    with realm.write():
        k5 = realm.add(Doc(id=10, text=MULTI[2]))
    assert len(live) == 3
    with realm.write():
        realm.add(Doc(id=11, text=MULTI[3]))
    assert len(live) == 3
    with realm.write():
        realm.delete(k5)
    assert len(live) == 2
    assert len(realm.query(Doc, "text TEXT 'hybrid'")) == 1
    with realm.write():
        obj3.text = MULTI[4]  # a property write
    assert len(realm.query(Doc, "text TEXT 'hybrid'")) == 0
    assert len(realm.query(Doc, "text TEXT 'Gemstone'")) == 1
    assert len(realm.query(Doc, "text TEXT 'æbler'")) == 2
    with realm.write():
        realm.add(
            Doc(
                id=12,
                text='The song "Supercalifragilisticexpialidocious" is from the 1964 Disney '
                'musical film "Mary Poppins"',
            )
        )
    assert len(realm.query(Doc, "text TEXT 'supercalifragilisticexpialidocious mary'")) == 1
    with realm.write():
        realm.delete(obj2)
    assert len(realm.query(Doc, "text TEXT 'æbler'")) == 1
    assert len(realm.query(Doc, "text TEXT 'Johns'")) == 1
    assert len(realm.query(Doc, "text TEXT 'John'")) == 2
    assert len(realm.query(Doc, "text TEXT 'Großarl'")) == 1
    assert len(realm.query(Doc, "text TEXT 'catssadasdsa'")) == 0
    with realm.write():
        realm.add(Doc(id=3, text="replaced hybrid"), update=True)  # a replacement
        obj3.text = None
        realm.add(Doc(id=13, text="hybrid"))
    assert ids(realm.query(Doc, "text TEXT 'hybrid'")) == [13]
    assert stored(realm) == expected(realm)
    with realm.write():
        realm.delete_all(Doc)
    assert stored(realm) == set()


def stored(realm: Realm) -> set[bytes]:
    return {bytes(k) for k, _ in realm._reader().scan(fulltext_name("Doc", "text"))}


def expected(realm: Realm) -> set[bytes]:
    schema = realm._schema["Doc"]
    prop = schema.get("text")
    assert prop is not None
    out: set[bytes] = set()
    for d in realm.all(Doc):
        out |= fulltextindex.entries(schema, prop, codec.encode_key(d.id), d.text)
    return out


def test_tokens_are_realms() -> None:
    assert tokens(" This is a test, with  spaces!") == {"this", "is", "a", "test", "with", "spaces"}
    # Latin-1 letters lose their diacritics (not å æ ø ß); other scripts separate words.
    assert tokens("Ål, ø og 你好世界Æbler Großarl Émanant") == {
        "ål",
        "ø",
        "og",
        "æbler",
        "großarl",
        "emanant",
    }
    assert tokens("a\u00d7b \u00f7") == {"ab", ""}
    assert tokens("x" * 100) == {"x" * 64}
    assert search_terms("Bel* Abba -Ada").prefixes == {"bel"}


def test_the_query_reads_the_index_not_the_records(realm: Realm) -> None:
    fill_multi(realm)
    with realm.write():
        for i in range(100, 400):
            realm.add(Doc(id=i, text=f"filler text number {i}"))
    reads: list[int] = []
    txn = realm._reader()
    real_scan = type(txn).scan

    def counting_scan(self: object, table: str, *a: object, **k: object) -> object:
        rows = list(real_scan(self, table, *a, **k))  # type: ignore[arg-type]
        reads.append(len(rows))
        return rows

    import realmpy.execute as execute

    before = execute.evaluate
    calls: list[str] = []

    def spy(realm_: Realm, name: str, q: object, args: tuple[object, ...]) -> object:
        calls.append(name)
        return before(realm_, name, q, args)  # type: ignore[arg-type]

    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(type(txn), "scan", counting_scan)
        mp.setattr(type(txn), "scan_msgpack", None)  # a table scan would fail loudly
        mp.setattr(type(txn), "scan_filter_msgpack", None)
        got = ids(realm.query(Doc, "text TEXT 'object gemstone'"))
    finally:
        mp.undo()
    assert got == [2, 4]
    # Two index scans (one per word), nothing like the 310 records.
    assert len(reads) == 2 and sum(reads) < 20


def test_text_needs_a_fulltext_index(realm: Realm) -> None:
    with pytest.raises(QueryTypeError, match=r'has no full-text index.*indexed="fulltext"'):
        realm.query(Doc, "plain TEXT 'word'")
    with pytest.raises(QueryTypeError, match="TEXT needs a string property"):
        realm.query(Doc, "id TEXT 'word'")
    with pytest.raises(QueryArgumentError, match="TEXT needs a string"):
        list(realm.query(Doc, "text TEXT $0", 5))


def test_field_refuses_a_fulltext_index_on_other_types() -> None:
    class Bad(Object):
        n: int = field(indexed="fulltext")

    with pytest.raises(SchemaError, match="fulltext"):
        object_schema(Bad)

    with pytest.raises(SchemaError, match="fulltext"):
        field(indexed="full")


def test_adding_the_index_builds_it_and_check_verifies_it(tmp_path: Path) -> None:
    from realmpy.storage import Environment
    from realmpy.tools.checkfile import check_file

    class Note(Object, name="Doc"):  # the class before it had the index
        id: int = field(primary_key=True)
        text: str | None = None
        plain: str = ""

    path = tmp_path / "t.realm"
    with Realm(Configuration.local([Note], path=path)) as realm, realm.write():
        for i, text in enumerate(MULTI):
            realm.add(Note(id=i, text=text))
    with Realm(Configuration.local([Doc, Holder], path=path)) as realm:
        assert stored(realm) == expected(realm) != set()
        assert ids(realm.query(Doc, "text TEXT 'gemstone'")) == [2, 4]
        assert realm._schema["Doc"].get("text").fulltext  # type: ignore[union-attr]
    assert "sound" in check_file(str(path))
    with Environment(str(path)) as env, env.write(record_history=False) as txn:
        txn.delete("f:Doc:text", b"gemstone\x00" + codec.encode_key(2))
        txn.put("f:Doc:text", b"zebra\x00" + codec.encode_key(1), b"")
    with pytest.raises(CorruptError) as err:
        check_file(str(path))
    assert "missing entry 'gemstone' of 2" in str(err.value)
    assert "entry 'zebra' of 1 has no such word" in str(err.value)
    with Realm(Configuration.local([Note], path=path)) as realm:  # index removed: dropped
        assert "f:Doc:text" not in realm._reader().tables()


def test_the_sync_clients_apply_keeps_the_index(realm: Realm) -> None:
    schema = realm._schema["Doc"]
    with realm.write():
        txn = realm._require_write()
        apply_record(txn, schema, 1, {"id": 1, "text": "synced words", "plain": ""})
        apply_record(txn, schema, 2, {"id": 2, "text": "more words", "plain": ""})
        apply_record(txn, schema, 1, None)
    assert ids(realm.query(Doc, "text TEXT 'words'")) == [2]
    assert stored(realm) == expected(realm)


def test_tools_show_and_regenerate_the_index(tmp_path: Path) -> None:
    """``realmpy schema`` names the index; the models generated from a file
    declare it, and a realm opened with them queries it."""
    import io

    from realmpy.tools.commands import cmd_schema
    from realmpy.tools.filemodels import model_classes, model_source

    path = tmp_path / "t.realm"
    with Realm(Configuration.local(MODELS, path=path)) as realm, realm.write():
        realm.add(Doc(id=1, text="generated models search too"))
    out = io.StringIO()
    assert cmd_schema([str(path)], out) == 0
    assert "text: str | None full-text indexed" in out.getvalue()
    schema = Configuration.local(MODELS, path=path).model_schema
    assert 'indexed="fulltext"' in model_source(schema)
    classes = model_classes(schema)
    with Realm(Configuration.local(list(classes.values()), path=path)) as realm:
        assert len(realm.query(classes["Doc"], "text TEXT 'search'")) == 1
