"""The in-batch candidate pairs of dedup on ingest (``_ingest._batch_candidates``) against brute
force: every pair of batch documents that shares a band key, once, in (i, j) order."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simsearch.index._ingest import _batch_candidates


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 40), st.integers(1, 6), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_batch_candidates_equal_brute_force(m, bands, distinct, seed):
    rng = np.random.default_rng(seed)
    has = np.sort(rng.choice(m + 20, m, replace=False)).astype(np.int64)
    keys = rng.integers(0, distinct, size=(m, bands)).astype(np.uint64)
    want = sorted((int(has[x]), int(has[y])) for x in range(m) for y in range(x + 1, m)
                  if (keys[x] == keys[y]).any())
    ia, ib = _batch_candidates(has, keys)
    assert list(zip(ia.tolist(), ib.tolist())) == want
