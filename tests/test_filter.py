"""The filter language (simsearch.index._filter): Filter.mask over Columns, Filter.matches and an
independent brute-force evaluator of the documented semantics agree on random documents and
filters; every kind of bad filter names its position; the limits hold at their edges; and
train_classifier takes the language, its old equality dicts included, locally and over gRPC."""

from __future__ import annotations

import json
import math
import operator

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simsearch.errors import (
    FailedPreconditionError, InvalidArgumentError, InvalidTypeError, StorageCorruptionError, UnsupportedFormatError,
)
from simsearch.index import Column, Document, Index, build_columns, parse_filter
from simsearch.index import _filter as F
from simsearch.wire import pb

# -- an independent evaluator: the module docstring's semantics, written out ---------------------
ABSENT = object()


def _lookup(field, metadata, id_, label):
    if field == "$id":
        return id_
    if field == "$label":
        return ABSENT if label is None else label
    node = metadata
    for key in field.removeprefix("$metadata.").split("."):
        if type(node) is not dict or key not in node:
            return ABSENT
        node = node[key]
    return ABSENT if node is None else node


def _type(v):
    if v is ABSENT or v is None:
        return "missing"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return "str" if isinstance(v, str) else "other"


def _f64(v):
    return float(v) if abs(v) < 2**1024 else (math.inf if v > 0 else -math.inf)


def _holds(op, arg, value):
    if op == "eq":
        if _type(arg) != _type(value):
            return False
        if _type(arg) == "missing":
            return True
        return _f64(value) == _f64(arg) if _type(arg) == "number" else value == arg
    if op == "in":
        return any(_holds("eq", a, value) for a in arg)
    if op == "exists":
        return (_type(value) != "missing") is arg
    cmp = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}[op]
    return _type(value) == "number" and cmp(_f64(value), arg)


def oracle(flt, metadata, id_, label) -> bool:
    for key, arg in flt.items():
        if key == "and":
            ok = all(oracle(c, metadata, id_, label) for c in arg)
        elif key == "or":
            ok = any(oracle(c, metadata, id_, label) for c in arg)
        elif key == "not":
            ok = not oracle(arg, metadata, id_, label)
        else:
            value = _lookup(key, metadata, id_, label)
            ok = all(_holds(op, a, value) for op, a in (arg.items() if isinstance(arg, dict) else [("eq", arg)]))
        if not ok:
            return False
    return True


# -- random documents and filters ----------------------------------------------------------------
KEYS = ["a", "b", "id", "and"]
BIG = [2**53, 2**53 + 1, 2**60, -(2**70)]
scalars = st.one_of(
    st.none(), st.booleans(), st.sampled_from([0, 1, -1, 2, 2020, 1.0, 0.5, -0.0, 1e300] + BIG),
    st.integers(-3, 3), st.floats(-3, 3, width=16), st.sampled_from(["", "x", "en", "1", "é", "\ud800"]),
)
values = st.recursive(
    scalars | st.just(10**400),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
    max_leaves=8,
)
metadatas = st.dictionaries(st.sampled_from(KEYS), values, min_size=1, max_size=4)
documents = st.lists(st.tuples(metadatas, st.sampled_from(["d1", "d2", "id", "x"]), st.none() | st.sampled_from(["x", "spam", "en"])),
                     min_size=1, max_size=16)


@st.composite
def field_names(draw):
    if draw(st.integers(0, 5)) == 0:
        return draw(st.sampled_from(["$id", "$label"]))
    path = ".".join(draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3)))
    return "$metadata." + path if path.split(".")[0] == "and" or draw(st.integers(0, 4)) == 0 else path


def _operand(field):
    if field in ("$id", "$label"):
        return st.sampled_from(["d1", "id", "x", "spam"] + ([None] if field == "$label" else []))
    return scalars


@st.composite
def leaves(draw):
    field = draw(field_names())
    op = draw(st.sampled_from(["short", "eq", "in", "exists"] + (["gt", "gte", "lt", "lte"] if field[0] != "$" or field.startswith("$metadata") else [])))
    if op == "short":
        return {field: draw(_operand(field))}
    if op in ("eq",):
        return {field: {"eq": draw(_operand(field))}}
    if op == "in":
        return {field: {"in": draw(st.lists(_operand(field), max_size=4))}}
    if op == "exists":
        return {field: {"exists": draw(st.booleans())}}
    ops = draw(st.lists(st.sampled_from(["gt", "gte", "lt", "lte"]), min_size=1, max_size=2, unique=True))
    return {field: {o: draw(st.sampled_from([0, 1, 2020, -0.5, 2**53, 1e300])) for o in ops}}


filters = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.builds(lambda cs: {"and": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda cs: {"or": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, inner),
        st.lists(inner, min_size=2, max_size=3).map(lambda cs: {k: v for c in cs for k, v in c.items() if k not in ("and", "or", "not")} or cs[0]),
    ),
    max_leaves=8,
)


@settings(max_examples=200)
@given(docs=documents, flt=filters)
def test_mask_equals_matches_equals_brute_force(docs, flt):
    f = parse_filter(flt)
    expected = [oracle(flt, m, i, lab) for m, i, lab in docs]
    assert [f.matches(m, id=i, label=lab) for m, i, lab in docs] == expected
    metadata, ids, labels = map(list, zip(*docs))
    columns = build_columns(metadata, f.fields, ids=ids, labels=labels)
    assert f.mask(columns, len(docs)).tolist() == expected
    # the stored form of the columns, and metadata given as JSON text, give the same rows
    stored = {k: Column.from_bytes(c.to_bytes()) for k, c in columns.items()}
    assert f.mask(stored, len(docs)).tolist() == expected
    texts = [json.dumps(m) for m in metadata]
    assert f.mask(build_columns(texts, f.fields, ids=ids, labels=labels), len(docs)).tolist() == expected
    rows = np.arange(len(docs))[::2]
    assert f.mask({k: c.take(rows) for k, c in columns.items()}, len(rows)).tolist() == expected[::2]
    # one filter whichever form it came in
    assert parse_filter(json.dumps(flt)) == f == parse_filter(f.to_dict()) == parse_filter(f.to_json())
    assert hash(parse_filter(json.dumps(flt))) == hash(f)


# -- the type rules, by example ------------------------------------------------------------------
DOCS = [
    ({"lang": "en", "year": 2021, "n": 1, "meta": {"src": "web", "id": "m1"}, "flag": True}, "d0", "news"),
    ({"lang": "de", "year": 2019.5, "n": 1.0, "meta": {"src": "pdf"}, "flag": 1}, "d1", None),
    ({"lang": "en", "year": "2022", "n": True, "meta": "web", "tags": ["a", "b"], "flag": "b"}, "d2", "spam"),
    ({"year": None, "id": "d0", "and": 3, "n": 2**53 + 1, "flag": "a"}, "d3", "news"),
]


@pytest.mark.parametrize("flt, rows", [
    ({}, [0, 1, 2, 3]),
    ({"lang": "en"}, [0, 2]),
    ({"and": [{"lang": "en"}, {"year": {"gte": 2020}}]}, [0]),  # "2022" is a string: no range matches it
    ({"year": {"gt": 2019, "lt": 2020}}, [1]),
    ({"n": 1}, [0, 1]),  # 1 == 1.0, true is not 1
    ({"flag": True}, [0]),  # not 1, not the string coded 1
    ({"flag": {"in": [False, "a"]}}, [3]),
    ({"n": 2**53}, [3]),  # numbers compare as float64
    ({"n": {"in": ["1", True]}}, [2]),
    ({"meta.src": "web"}, [0]),  # "meta" is a string in d2: nothing inside it
    ({"year": None}, [3]),  # null is missing
    ({"year": {"exists": False}}, [3]),
    ({"not": {"year": {"gte": 2020}}}, [1, 2, 3]),  # not keeps documents without a number
    ({"tags": {"exists": True}}, [2]),
    ({"tags": "a"}, []),  # arrays only ever match exists
    ({"$id": "d0"}, [0]),
    ({"id": "d0"}, [3]),  # the metadata key "id", not the document id
    ({"$metadata.id": "d0"}, [3]),
    ({"$metadata.and": 3}, [3]),
    ({"meta.id": "m1"}, [0]),
    ({"$label": {"in": ["spam", None]}}, [1, 2]),
    ({"or": [{"$label": "news"}, {"lang": "de"}], "n": {"lte": 1}}, [0, 1]),
    ({"lang": {"in": []}}, []),
])
def test_type_rules(flt, rows):
    f = parse_filter(flt)
    md, ids, labels = map(list, zip(*DOCS))
    got = list(range(len(DOCS))) if f is None else [i for i, (m, d, lab) in enumerate(DOCS) if f.matches(m, id=d, label=lab)]
    assert got == rows
    if f is not None:
        assert np.flatnonzero(f.mask(build_columns(md, f.fields, ids=ids, labels=labels), len(DOCS))).tolist() == rows


def test_parse_normalises():
    assert parse_filter(None) is None and parse_filter({}) is None and parse_filter("") is None
    f = parse_filter({"and": [{"a": 1}, {"and": [{"b": {"in": [2, 2.0]}}]}], "c": None})
    assert f.to_dict() == {"and": [{"a": 1}, {"b": {"in": [2]}}, {"c": {"exists": False}}]}
    assert f.fields == ("a", "b", "c") and parse_filter(f) is f
    assert parse_filter({"a": True}) != parse_filter({"a": 1}) and parse_filter({"a": 1}) == parse_filter({"a": 1.0})
    assert parse_filter({"a": np.int64(3), "b": np.bool_(True)}) == parse_filter({"a": 3, "b": True})
    assert parse_filter({"$metadata.a.b": 1}) == parse_filter({"a.b": 1})
    assert parse_filter({"$metadata.and": 1}).fields == ("$metadata.and",)
    assert repr(parse_filter('{"lang": "en"}')) == 'Filter({"lang": "en"})'


# -- errors name their position ------------------------------------------------------------------
DEEP = {"a": 1}
for _ in range(F.MAX_DEPTH):
    DEEP = {"not": DEEP}

BAD = [
    ({"and": [{"lang": "en"}, {"year": {"regex": "x"}}]}, "filter.and[1].year.regex", "unknown operator 'regex'"),
    ({"and": [{"lang": "en"}, {"year": {"gte": "2020"}}]}, "filter.and[1].year.gte", "must be a number"),
    ({"year": {"lt": True}}, "filter.year.lt", "must be a number"),
    ({"year": {"lt": None}}, "filter.year.lt", "must be a number"),
    ({"or": [{"a.b.c.d.e.f.g.h.i": 1}]}, "filter.or[0].a.b.c.d.e.f.g.h.i", "too deep: 9 keys"),
    ({"x" * 257: 1}, "filter." + "x" * 257, "over 256 UTF-8 bytes"),
    ({"é" * 129: 1}, "filter[" + json.dumps("é" * 129, ensure_ascii=False) + "]", "over 256 UTF-8 bytes"),
    ({"a..b": 1}, "filter.a..b", "empty key"),
    ({"$metadata.": 1}, "filter.$metadata.", "empty key"),
    ({"$foo": 1}, "filter.$foo", "unknown reserved field"),
    ({"$id.x": 1}, "filter.$id.x", "unknown reserved field"),
    ({"and": {"a": 1}}, "filter.and", "non-empty list"),
    ({"or": []}, "filter.or", "non-empty list"),
    ({"and": [{"a": 1}, 3]}, "filter.and[1]", "must be an object"),
    ({"not": [{"a": 1}]}, "filter.not", "must be an object"),
    ({"not": {}}, "filter.not", "empty condition"),
    ({"a": {}}, "filter.a", "no operator"),
    ({"a": {"in": "xy"}}, "filter.a.in", "takes a list"),
    ({"a": {"in": [1, [2]]}}, "filter.a.in[1]", "Got list"),
    ({"a": {"in": [1, {"b": 2}]}}, "filter.a.in[1]", "Got dict"),
    ({"a": {"in": list(range(F.MAX_IN_VALUES + 1))}}, "filter.a.in", "the limit is 1024"),
    ({"a": {"exists": 1}}, "filter.a.exists", "true or false"),
    ({"a": [1, 2]}, "filter.a", 'use {"in": [...]}'),
    ({"a": math.nan}, "filter.a", "must be finite"),
    ({"a": {"gte": math.inf}}, "filter.a.gte", "must be finite"),
    ({"a": 10**400}, "filter.a", "must be finite"),
    ({"a": "x" * (F.MAX_STRING_BYTES + 1)}, "filter.a", "over 4096 UTF-8 bytes"),
    ({"$id": 5}, "filter.$id", "compares with strings"),
    ({"$id": None}, "filter.$id", "compares with strings"),
    ({"$label": {"in": ["x", 1]}}, "filter.$label.in[1]", "strings or null"),
    ({"$label": {"gte": 1}}, "filter.$label.gte", "ranges apply to numbers"),
    ({1: 2}, "filter", "a key must be a str"),
    ({"a": {1: 2}}, "filter.a", "an operator must be a str"),
    ({"x y": {"eq": {"z": 1}}}, 'filter["x y"].eq', "Got dict"),
    ({"not": DEEP}, "filter" + ".not" * F.MAX_DEPTH, "more than 16 objects deep"),  # the 17th object
    ({"or": [{"a": i} for i in range(F.MAX_CLAUSES)]}, "filter.or[255].a", "more than 256 clauses"),
    ({"and": [{"a": 1}] * (F.MAX_CLAUSES + 1)}, "filter.and", "the limit is 256"),
    ('{"a": ', "filter", "not valid JSON"),
    ('{"a": NaN}', "filter", "NaN is not a JSON number"),
    ('{"a": 1e999}', "filter.a", "must be finite"),
    ('{"a": 1, "a": 2}', "filter", "appears twice"),
    ("[1]", "filter", "must hold an object"),
    ("[" * 100_000, "filter", "not valid JSON"),
    (json.dumps({"a": "x" * F.MAX_JSON_BYTES}), "filter", "over 262144 bytes"),
    ('{"year": {"gte": "2020"}}', "filter.year.gte", "must be a number"),
]


@pytest.mark.parametrize("flt, pos, what", BAD, ids=[f"{i}-{b[1][:30]}" for i, b in enumerate(BAD)])
def test_errors_name_their_position(flt, pos, what):
    with pytest.raises(InvalidArgumentError) as info:
        parse_filter(flt)
    assert str(info.value).startswith(pos + ": ") and what in str(info.value), str(info.value)
    if not isinstance(flt, str):  # the JSON form of a dict says the same, where JSON can carry it
        try:
            text = json.dumps(flt, allow_nan=False)
        except (TypeError, ValueError):
            return
        if json.loads(text) != flt:  # int keys become strings
            return
        with pytest.raises(InvalidArgumentError, match="^" + pos.replace("[", r"\[").replace("$", r"\$")):
            parse_filter(text)


@pytest.mark.parametrize("flt", [[{"a": 1}], 5, b'{"a": 1}', ("a", 1)])
def test_a_filter_that_is_not_a_dict_or_str_is_a_type_error(flt):
    with pytest.raises(InvalidTypeError, match="must be a dict, its JSON text"):
        parse_filter(flt)


def test_limits_hold_at_their_edges():
    deep = {"a": 1}
    for _ in range(F.MAX_DEPTH - 1):
        deep = {"not": deep}
    assert parse_filter(deep) is not None
    assert parse_filter({"or": [{"a": i} for i in range(F.MAX_CLAUSES - 1)]}) is not None  # + the "or"
    assert parse_filter({"a": {"in": list(range(F.MAX_IN_VALUES))}}) is not None
    assert parse_filter({".".join("k" * F.MAX_PATH_KEYS): 1}) is not None
    assert parse_filter({"é" * (F.MAX_PATH_BYTES // 2): 1}) is not None
    assert parse_filter({"a": "é" * (F.MAX_STRING_BYTES // 2)}) is not None
    text = json.dumps({"a": {"in": ["x" * 4000] * 65}})
    assert len(text) <= F.MAX_JSON_BYTES and parse_filter(text) is not None


# -- columns -------------------------------------------------------------------------------------
def test_column_layout_and_storage():
    col = Column.from_values(["b", None, 2, True, [1], "a", 1.5, "b", "\ud800é", False])
    assert col.kind.tolist() == [3, 0, 2, 1, 4, 3, 2, 3, 3, 1] and col.strings == ("a", "b", "\ud800é")
    assert col.code.tolist() == [1, -1, -1, 1, -1, 0, -1, 1, 2, 0] and col.present.sum() == 9
    assert np.array_equal(col.number, [np.nan, np.nan, 2, np.nan, np.nan, np.nan, 1.5, np.nan, np.nan, np.nan], equal_nan=True)
    back = Column.from_bytes(col.to_bytes())
    assert back.strings == col.strings and all(np.array_equal(getattr(back, a), getattr(col, a), equal_nan=True)
                                                for a in ("kind", "number", "code"))
    data = bytearray(col.to_bytes())
    data[-3] ^= 0xFF
    with pytest.raises(StorageCorruptionError, match="checksum"):
        Column.from_bytes(bytes(data))
    with pytest.raises(StorageCorruptionError, match="not in the simsearch column format"):
        Column.from_bytes(b"garbage")
    newer = bytearray(col.to_bytes())
    newer[8:10] = (F.FORMAT_VERSION + 1).to_bytes(2, "little")
    with pytest.raises(UnsupportedFormatError, match="upgrade simsearch"):
        Column.from_bytes(bytes(newer))
    assert len(Column.from_bytes(Column.from_values([]).to_bytes())) == 0


def test_mask_and_build_columns_check_their_inputs():
    f = parse_filter({"a": 1, "$id": "x"})
    cols = build_columns([{"a": 1}, {"a": 2}], ["a", "$id"], ids=["x", "y"])
    assert f.mask(cols, 2).tolist() == [True, False]
    with pytest.raises(InvalidArgumentError, match=r"needs a Column of 2 rows for '\$id'; got none"):
        f.mask({"a": cols["a"]}, 2)
    with pytest.raises(InvalidArgumentError, match="got one of 2 rows"):
        f.mask(cols, 3)
    with pytest.raises(InvalidArgumentError, match=r"\$label needs 2 labels"):
        build_columns([{}, {}], ["$label"])
    with pytest.raises(InvalidArgumentError, match=r"^fields\[1\]: unknown reserved field"):
        build_columns([{}], ["a", "$x"])
    with pytest.raises(InvalidTypeError):
        build_columns([{}], "a")
    assert set(build_columns([{}], ["$metadata.a", "$metadata.and"])) == {"a", "$metadata.and"}


def test_mask_is_vectorised():
    """100,000 documents: the columns are built once, and each query's mask is numpy work."""
    import time

    n = 100_000
    rng = np.random.default_rng(0)
    metadata = [{"lang": ["en", "de", "fr"][i % 3], "year": int(y)} for i, y in enumerate(rng.integers(2000, 2030, n))]
    f = parse_filter({"and": [{"lang": {"in": ["en", "fr"]}}, {"year": {"gte": 2020}}, {"not": {"lang": "de"}}]})
    cols = build_columns(metadata, f.fields)
    elapsed = []
    for _ in range(3):
        t = time.perf_counter()
        mask = f.mask(cols, n)
        elapsed.append(time.perf_counter() - t)
    assert mask.sum() == sum(m["lang"] != "de" and m["year"] >= 2020 for m in metadata)
    assert min(elapsed) < 0.05, elapsed  # ~1 ms; a Python loop over the documents takes ~100 ms


# -- train_classifier takes the language ---------------------------------------------------------
def _labelled_docs():
    rng = np.random.default_rng(1)
    docs = []
    for i in range(60):
        label = "abc"[i % 3]
        vec = rng.standard_normal(3).astype(np.float32) + 4 * np.eye(3, dtype=np.float32)[i % 3]
        meta = {"split": "train" if i < 40 else "test", "year": 2015 + i % 10, "src": {"kind": "web" if i % 2 else "pdf"}}
        docs.append(Document(id=f"d{i}", vector=vec, label=label, metadata=meta))
    return docs


TRAIN_FILTERS = [
    ({"split": "train"}, 40),  # the old equality dict
    ({"split": "train", "year": 2016}, 4),
    ({"year": {"gte": 2020}}, 30),
    ({"and": [{"src.kind": "web"}, {"not": {"$label": "c"}}]}, 20),
    ({"$id": {"in": ["d0", "d1", "d2", "d4"]}}, 4),
    ('{"or": [{"year": {"lt": 2016}}, {"split": "test"}]}', 24),
]


def test_train_classifier_takes_the_filter_language(tmp_path):
    with Index(tmp_path / "idx") as idx:
        coll = idx.create_collection("c", dim=3, metric="euclidean")
        coll.upsert(_labelled_docs())
        for flt, n in TRAIN_FILTERS:
            assert coll.train_classifier("m", kind="svm", params={"kernel": "linear"}, filter=flt).n_samples == n, flt
        assert coll.train_classifier("g", kind="gmm", params={"n_components": 2}, filter={"year": {"lt": 2017}}).n_samples == 12
        before = coll.list_classifiers()
        with pytest.raises(InvalidArgumentError, match=r"^filter\.and\[1\]\.year\.gte: "):
            coll.train_classifier("m", filter={"and": [{"split": "train"}, {"year": {"gte": "2020"}}]})
        with pytest.raises(FailedPreconditionError, match="after the filter"):
            coll.train_classifier("m", filter={"year": {"gt": 3000}})
        assert coll.list_classifiers() == before


def test_train_classifier_filter_over_grpc(tmp_path, grpc_server):
    from simsearch import Client

    with Client(grpc_server.address) as client:
        coll = client.create_collection("c", dim=3, metric="euclidean")
        coll.upsert(_labelled_docs())
        for flt, n in TRAIN_FILTERS:
            assert coll.train_classifier("m", params={"kernel": "linear"}, filter=flt).n_samples == n, flt
        with pytest.raises(InvalidArgumentError, match=r"^filter\.year\.regex: unknown operator"):
            coll.train_classifier("m", filter={"year": {"regex": "x"}})
    # the server parses what a client sends, with the same positions
    with grpc.insecure_channel(grpc_server.address) as channel:
        call = channel.unary_unary("/simsearch.v1.SimSearch/TrainClassifier",
                                   request_serializer=pb.TrainClassifierRequest.SerializeToString,
                                   response_deserializer=pb.ClassifierInfo.FromString)
        ok = call(pb.TrainClassifierRequest(collection="c", name="m", filter_json='{"year": {"gte": 2020}}'), timeout=10)
        assert ok.n_samples == 30
        with pytest.raises(grpc.RpcError) as info:
            call(pb.TrainClassifierRequest(collection="c", name="m", filter_json='{"or": [{"a": {"gte": "x"}}]}'),
                 timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith("filter.or[0].a.gte: ")
