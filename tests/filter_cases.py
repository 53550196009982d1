"""Shared cases of the filter tests: a corpus with metadata of several kinds, and a hypothesis
strategy of random filters over its fields (``INDEXED`` names them all)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from simsearch.index import Document

LANGS = ("en", "fr", "de")
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima"]


def _docs(seed: int, n: int, dim: int = 6) -> list[Document]:
    rng = np.random.default_rng(seed)
    base = [" ".join(rng.choice(WORDS, 25)) for _ in range(max(1, n // 3))]
    out = []
    for i in range(n):
        meta: dict = {"lang": LANGS[int(rng.integers(0, 3))], "nested": {"a": bool(rng.integers(0, 2))}}
        if rng.random() < 0.8:
            meta["year"] = int(rng.integers(2000, 2030))
        text = base[i % len(base)] + (" " + WORDS[i % len(WORDS)]) * int(rng.integers(0, 3))
        vec = rng.standard_normal(dim).astype(np.float32) if rng.random() < 0.9 else None
        label = f"l{int(rng.integers(0, 3))}" if rng.random() < 0.8 else None
        out.append(Document(id=f"d{i:04d}", text=text, metadata=meta, vector=vec, label=label))
    return out


_leaf = st.one_of(
    st.builds(lambda v: {"lang": v}, st.sampled_from(LANGS)),
    st.builds(lambda vs: {"lang": {"in": vs}}, st.lists(st.sampled_from(LANGS), max_size=3)),
    st.builds(lambda op, y: {"year": {op: y}}, st.sampled_from(["gt", "gte", "lt", "lte"]), st.integers(1995, 2035)),
    st.builds(lambda b: {"year": {"exists": b}}, st.booleans()),
    st.builds(lambda b: {"nested.a": b}, st.booleans()),
    st.builds(lambda v: {"$label": v}, st.sampled_from(["l0", "l1", "l2", None])),
    st.builds(lambda i: {"$id": {"in": [f"d{j:04d}" for j in range(i, i + 40)]}}, st.integers(0, 100)),
)
FILTERS = st.recursive(
    _leaf,
    lambda kids: st.one_of(
        st.builds(lambda xs: {"and": xs}, st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda xs: {"or": xs}, st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, kids),
    ),
    max_leaves=5,
)
INDEXED = ["lang", "year", "nested.a", "$label", "$id"]
