"""Classifiers wired to the index: train on stored vectors, persist, classify with evidence."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

from simsearch.errors import FailedPreconditionError, InvalidArgumentError, InvalidTypeError, NotFoundError
from simsearch.index import Document, Index


@pytest.fixture
def iris_index(tmp_path):
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    idx = Index(tmp_path / "idx")
    coll = idx.create_collection("iris", dim=4, metric="euclidean")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    train, test = order[:120], order[120:]
    coll.upsert([Document(id=f"f{i}", vector=X[i], label=str(names[i]), metadata={"split": "train"}) for i in train])
    return idx, coll, X[test], names[test]


def test_svm_trains_persists_and_classifies_with_neighbors(iris_index, tmp_path):
    idx, coll, Xt, yt = iris_index
    info = coll.train_classifier("species", kind="svm", params={"kernel": "rbf", "random_state": 0})
    assert info.kind == "svm" and set(info.classes) == {"setosa", "versicolor", "virginica"} and info.n_samples == 120
    res = coll.classify(list(Xt), model="species", k=5)
    acc = np.mean([r.label == t for r, t in zip(res, yt)])
    assert acc >= 0.9
    assert all(0.0 <= r.probability <= 1.0 and len(r.neighbors) == 5 for r in res)
    # the neighbours are the real nearest stored vectors
    assert res[0].neighbors == tuple(coll.search(Xt[0], k=5))
    idx.close()
    with Index(tmp_path / "idx") as again:
        c = again.get_collection("iris")
        assert [m.name for m in c.list_classifiers()] == ["species"]
        assert [r.label for r in c.classify(list(Xt), model="species")] == [r.label for r in res]
        by_id = c.classify(ids=[c.search(Xt[0], k=1)[0].id], model="species", k=3)
        assert len(by_id) == 1 and len(by_id[0].neighbors) == 3


def test_gmm_components_loglik_and_outliers(iris_index):
    _, coll, Xt, _ = iris_index
    info = coll.train_classifier("clusters", kind="gmm", params={"n_components": 3, "covariance_type": "diag"})
    assert info.kind == "gmm" and info.classes == ("0", "1", "2")
    res = coll.classify(list(Xt) + [np.full(4, 25.0, np.float32)], model="clusters", k=3)
    assert all(r.component in (0, 1, 2) and np.isfinite(r.log_likelihood) for r in res)
    assert res[-1].outlier is True
    assert np.mean([r.outlier for r in res[:-1]]) < 0.2


def test_classifier_errors(iris_index, tmp_path):
    idx, coll, Xt, _ = iris_index
    with pytest.raises(NotFoundError):
        coll.classify(list(Xt), model="missing")
    with pytest.raises(InvalidArgumentError):
        coll.train_classifier("bad name!", kind="svm")
    with pytest.raises(InvalidArgumentError):
        coll.train_classifier("m", kind="forest")
    with pytest.raises(InvalidArgumentError):
        coll.train_classifier("m", kind="svm", params={"no_such_param": 1})
    coll.train_classifier("m", kind="svm", params={"kernel": "linear"})
    with pytest.raises(InvalidArgumentError):
        coll.classify([np.ones(3)], model="m")
    one = idx.create_collection("one", dim=2)
    one.upsert([Document(id=str(i), vector=np.ones(2) * i, label="only") for i in range(5)])
    with pytest.raises(FailedPreconditionError, match="two classes"):
        one.train_classifier("m", kind="svm")
    unlabelled = idx.create_collection("unlabelled", dim=2)
    unlabelled.upsert([Document(id=str(i), vector=np.ones(2) * i) for i in range(5)])
    with pytest.raises(FailedPreconditionError, match="labelled"):
        unlabelled.train_classifier("m", kind="svm")
    unlabelled.train_classifier("g", kind="gmm", params={"n_components": 2})
    novec = idx.create_collection("novec")
    with pytest.raises(FailedPreconditionError):
        novec.train_classifier("m", kind="gmm")
    coll.delete_classifier("m")
    with pytest.raises(NotFoundError):
        coll.delete_classifier("m")


def test_failed_training_changes_nothing_and_inputs_are_typed(iris_index):
    _, coll, Xt, _ = iris_index
    coll.train_classifier("m", kind="svm", params={"kernel": "linear"})
    before = (coll.list_classifiers(), coll.classify(Xt, model="m", k=3))
    for kw in ({"params": [("C", 1.0)]}, {"params": {1: 2}}, {"params": {"probability": False}},
               {"params": {"C": -1.0}}, {"kind": "gmm", "params": {"n_components": 500}}, {"filter": {"split": "x"}},
               {"filter": ["split"]}):
        with pytest.raises((InvalidArgumentError, InvalidTypeError, FailedPreconditionError)):
            coll.train_classifier("m", **kw)
        assert (coll.list_classifiers(), coll.classify(Xt, model="m", k=3)) == before
    assert coll.classify([], model="m") == [] and coll.classify(ids=[], model="m") == []
    assert coll.classify(iter(Xt[:2]), model="m", k=3) == before[1][:2]
    with pytest.raises(InvalidTypeError):
        coll.classify(5, model="m")
    with pytest.raises(NotFoundError, match="unknown id"):
        coll.classify(ids=["zzz"], model="m")
    # unset seeds default to 0: the same data and params give the same model
    coll.train_classifier("again", kind="svm", params={"kernel": "linear"})
    assert coll.classify(Xt, model="again", k=3) == before[1]


def test_filtered_training_reads_past_max_batch():
    """train_classifier(filter=...) reads the metadata of every vector-bearing document; with
    100,001 labelled vectors that is more than max_batch (100,000), which get() refuses. The
    model must still train, on exactly the filtered documents."""
    n = 100_001
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 2)).astype(np.float32)
    picked = np.zeros(n, dtype=bool)
    picked[rng.choice(n, 300, replace=False)] = True
    picked[-1] = True  # past the first max_batch documents
    with Index() as idx:
        c = idx.create_collection("big", dim=2, metric="euclidean")
        labels = np.where(X[:, 0] > 0, "pos", "neg")
        for lo in range(0, n, 50_000):
            c.upsert([Document(id=str(i), vector=X[i], label=str(labels[i]),
                               metadata={"keep": bool(picked[i])}) for i in range(lo, min(n, lo + 50_000))])
        info = c.train_classifier("f", kind="svm", params={"kernel": "linear"}, filter={"keep": True})
        assert info.n_samples == int(picked.sum())
        probe = np.array([[3.0, 0.0], [-3.0, 0.0]], np.float32)
        assert [r.label for r in c.classify(probe, model="f", k=1)] == ["pos", "neg"]
