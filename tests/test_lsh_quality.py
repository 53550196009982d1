"""LSH quality against exact ground truth: the S-curve, and dedup recall/precision on planted and real text."""

from __future__ import annotations

import ast
import glob
import os
import sysconfig

import numpy as np
import pytest
import scipy.sparse as sp

import simsearch
from simsearch import LSHIndex, find_duplicates, lsh_probability
from simsearch.dedup import candidate_pairs_from_band_keys, compute_band_keys

THRESHOLDS = [0.5, 0.7, 0.8, 0.9]


def planted_pairs(rng, s, n, union=120):
    """n pairs of hash sets with exact Jaccard round(s*union)/union, disjoint between pairs."""
    k = round(s * union)
    a_only = (union - k) // 2
    left, right = [], []
    for _ in range(n):
        u = rng.choice(1 << 62, size=union, replace=False).astype(np.uint64)
        left.append(np.sort(u[: k + a_only]))
        right.append(np.sort(np.concatenate([u[:k], u[k + a_only :]])))
    return left, right, k / union


@pytest.mark.parametrize("params", [(16, 8), (9, 13), (32, 4)])
def test_candidate_rate_follows_the_s_curve(params):
    """Measured P(candidate) at planted similarities is within sampling error of 1-(1-s^r)^b."""
    rng = np.random.default_rng(sum(params))
    b, r = params
    n = 400
    for s in (0.3, 0.5, 0.6, 0.7, 0.8, 0.9):
        left, right, s_exact = planted_pairs(rng, s, n)
        sig_l = simsearch.minhash(left, num_perm=128)
        sig_r = simsearch.minhash(right, num_perm=128)
        index = LSHIndex(num_perm=128, params=params)
        index.insert(np.arange(n), sig_l)
        cands = index.query(sig_r)
        rate = np.mean([i in cands[i] for i in range(n)])
        # the self-join path of find_duplicates must see the same pairs
        keys, valid = compute_band_keys(np.concatenate([sig_l, sig_r]), b, r)
        pairs = {tuple(p) for p in candidate_pairs_from_band_keys(keys, valid).tolist()}
        assert np.mean([(i, n + i) in pairs for i in range(n)]) == rate
        p = lsh_probability(s_exact, b, r)
        tol = 4.5 * np.sqrt(max(p * (1 - p), 1e-4) / n) + 0.01
        assert abs(rate - p) <= tol, (params, s_exact, rate, p)


# -- ground truth -------------------------------------------------------------------------------


def exact_pairs(texts, ngram, shingle="word"):
    """All pairs (i < j) with their exact Jaccard > 0, from the reference shingler and a sparse product."""
    sets = [simsearch.shingles(t, ngram, shingle) for t in texts]
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, s in enumerate(sets):
        for g in s:
            rows.append(i)
            cols.append(vocab.setdefault(g, len(vocab)))
    inc = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), max(len(vocab), 1)))
    inter = sp.triu(inc @ inc.T, k=1).tocoo()
    size = np.array([len(s) for s in sets])
    jac = inter.data / (size[inter.row] + size[inter.col] - inter.data)
    return {(int(i), int(j)): float(x) for i, j, x in zip(inter.row, inter.col, jac)}


def check_recall_precision(texts, truth, ngram, backend="auto", min_recall=0.99):
    report = {}
    for t in THRESHOLDS:
        res = find_duplicates(texts, threshold=t, ngram=ngram, verify="exact", backend=backend)
        found = {tuple(p) for p in res.pairs.tolist()}
        want = {p for p, j in truth.items() if j >= t}
        assert found <= want, f"precision < 1 at {t}: {sorted(found - want)[:5]}"
        for p, j in zip(res.pairs.tolist(), res.jaccard.tolist()):
            assert j == pytest.approx(truth[tuple(p)], abs=1e-12)
        recall = len(found) / max(len(want), 1)
        report[t] = (recall, len(want))
        assert recall >= min_recall, (t, recall, len(want))
        assert len(want) >= 50, f"corpus too easy at {t}: only {len(want)} true pairs"
    return report


def planted_corpus(rng, n_base=1000, words=60, vocab=3000, ngram=3):
    """Base documents plus edited copies (and copies of copies) spanning Jaccard ~0.5-1.0."""
    base = [list(rng.integers(0, vocab, words)) for _ in range(n_base)]
    docs = [list(d) for d in base]
    for d in base[: n_base // 2]:
        for _ in range(int(rng.integers(1, 4))):
            src = list(d) if rng.random() < 0.6 else list(docs[int(rng.integers(n_base, len(docs)))]) \
                if len(docs) > n_base else list(d)
            for pos in rng.choice(words, size=int(rng.integers(0, 7)), replace=False):
                src[pos] = int(rng.integers(vocab, 2 * vocab))  # fresh word: breaks up to `ngram` shingles
            docs.append(src)
    docs.append([])  # an empty document is nobody's duplicate
    docs.append([])
    order = rng.permutation(len(docs))
    return [" ".join(f"w{x}" for x in docs[i]) for i in order]


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_near_duplicates_recall_and_precision(seed, backend):
    rng = np.random.default_rng(seed)
    texts = planted_corpus(rng)
    truth = exact_pairs(texts, 3)
    js = np.array(list(truth.values()))
    assert ((js >= 0.5) & (js < 0.7)).sum() >= 30 and (js >= 0.95).sum() >= 30  # spans 0.5-1.0
    check_recall_precision(texts, truth, ngram=3, backend=backend)


def real_text_corpus(max_files=160):
    """Docstrings of the Python standard library plus the license files shipped in site-packages."""
    docs = []
    lib = sysconfig.get_paths()["stdlib"]
    for path in sorted(glob.glob(os.path.join(lib, "*.py")))[:max_files]:
        try:
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read())
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc.split()) >= 6:
                    docs.append(doc)
    site = sysconfig.get_paths()["purelib"]
    for path in sorted(glob.glob(os.path.join(site, "*.dist-info", "**", "*LICEN[CS]E*"), recursive=True)):
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as fh:
                docs.append(fh.read())
    return docs


def test_real_text_recall_and_precision():
    texts = real_text_corpus()
    assert len(texts) > 1000
    truth = exact_pairs(texts, 3)
    check_recall_precision(texts, truth, ngram=3)


@pytest.mark.slow
def test_larger_planted_corpus_recall_and_precision():
    rng = np.random.default_rng(42)
    texts = planted_corpus(rng, n_base=10000)
    truth = exact_pairs(texts, 3)
    check_recall_precision(texts, truth, ngram=3)
