"""SVC against scikit-learn (the oracle), its estimator contract, and numpy/CuPy agreement."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simsearch.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    InvalidTypeError,
    NotFittedError,
    UnsupportedFormatError,
)
from simsearch.models import SVC, ConvergenceWarning

DATASETS = ["iris", "wine", "breast_cancer", "digits"]
SEEDS = range(5)


def _mean_accuracies(split, name, make_ours, make_theirs):
    ours, theirs = [], []
    for seed in SEEDS:
        Xtr, Xte, ytr, yte = split(name, seed)
        ours.append(make_ours().fit(Xtr, ytr).score(Xte, yte))
        theirs.append(make_theirs().fit(Xtr, ytr).score(Xte, yte))
    return float(np.mean(ours)), float(np.mean(theirs))


# -- quality against scikit-learn -------------------------------------------------------------


@pytest.mark.parametrize("name", DATASETS)
def test_rbf_accuracy_within_one_point_of_sklearn_svc(split, name):
    """Mean test accuracy over 5 stratified splits is within 1 point of sklearn.svm.SVC.

    The mean is compared, not each split: iris's test set has 45 samples, so one sample is
    2.2 points, and sklearn's one-vs-one and our one-vs-rest may differ on one borderline sample.
    """
    from sklearn.svm import SVC as SkSVC

    ours, theirs = _mean_accuracies(split, name, lambda: SVC(kernel="rbf"), lambda: SkSVC(kernel="rbf"))
    assert abs(ours - theirs) <= 0.01, (ours, theirs)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", DATASETS)
def test_linear_accuracy_within_one_point_of_linearsvc(split, name):
    from sklearn.svm import LinearSVC

    ours, theirs = _mean_accuracies(split, name, lambda: SVC(kernel="linear"), lambda: LinearSVC())
    # One-sided: we minimise the same loss without penalising the intercept (liblinear does), and
    # on wine that is 3 more correct test samples over 5 splits, which is a 1.1-point gain.
    assert ours >= theirs - 0.01, (ours, theirs)


def _primal(X, Y, coef, intercept, C):
    """½‖w‖² + C Σ max(0, 1 − y f)² per one-vs-rest column (intercept not penalised)."""
    Z = X @ coef.T + intercept
    R = np.maximum(1.0 - Y * Z, 0.0)
    return 0.5 * (coef * coef).sum(axis=1) + C * (R * R).sum(axis=0)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", ["breast_cancer", "digits"])
def test_linear_objective_at_least_as_good_as_liblinear(split, name):
    """Our minimiser of LinearSVC's objective is no worse there than liblinear's own solution."""
    from sklearn.svm import LinearSVC

    Xtr, _, ytr, _ = split(name, 0)
    ours = SVC(kernel="linear", C=0.5).fit(Xtr, ytr)
    theirs = LinearSVC(C=0.5, max_iter=5_000, tol=1e-5).fit(Xtr, ytr)
    classes = np.unique(ytr)
    Y = np.where(ytr == classes[1], 1.0, -1.0)[:, None] if classes.size == 2 else np.where(ytr[:, None] == classes, 1.0, -1.0)
    f_ours = _primal(Xtr, Y, ours.coef_, ours.intercept_, 0.5)
    f_theirs = _primal(Xtr, Y, theirs.coef_, theirs.intercept_, 0.5)
    assert np.all(f_ours <= f_theirs * (1 + 1e-6)), (f_ours, f_theirs)


def test_exact_rbf_matches_libsvm_on_a_binary_problem(split):
    """For two classes both solve the same dual; decision values agree to the KKT tolerance."""
    from sklearn.svm import SVC as SkSVC

    Xtr, Xte, ytr, _ = split("breast_cancer", 0)
    ours = SVC(tol=1e-4).fit(Xtr, ytr)
    theirs = SkSVC(tol=1e-4).fit(Xtr, ytr)
    assert ours.solver_ == "exact"
    np.testing.assert_allclose(ours.decision_function(Xte), theirs.decision_function(Xte), atol=5e-3)
    assert abs(ours.support_.size - theirs.support_.size) <= 3
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, atol=5e-3)


def test_nystroem_and_fourier_approximate_the_exact_solver(split):
    Xtr, Xte, ytr, yte = split("digits", 0)
    exact = SVC().fit(Xtr, ytr).score(Xte, yte)
    auto = SVC(max_exact_samples=100, n_components=400, random_state=0).fit(Xtr, ytr)
    assert auto.solver_ == "nystroem" and auto.support_vectors_.shape == (400, 64)
    assert auto.score(Xte, yte) >= exact - 0.03
    fourier = SVC(solver="fourier", n_components=500, random_state=0).fit(Xtr, ytr)
    assert fourier.solver_ == "fourier" and fourier.coef_.shape == (10, 500)
    assert fourier.score(Xte, yte) >= exact - 0.06


@pytest.mark.parametrize("name", ["iris", "breast_cancer", "digits"])
def test_platt_probabilities_are_as_calibrated_as_sklearn(split, name):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.metrics import log_loss
    from sklearn.svm import SVC as SkSVC

    Xtr, Xte, ytr, yte = split(name, 1)
    ours = SVC(probability=True, random_state=0).fit(Xtr, ytr)
    theirs = CalibratedClassifierCV(SkSVC(), method="sigmoid", ensemble=False, cv=5).fit(Xtr, ytr)
    proba = ours.predict_proba(Xte)
    assert proba.shape == (Xte.shape[0], np.unique(ytr).size)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert log_loss(yte, proba) <= log_loss(yte, theirs.predict_proba(Xte)) + 0.03
    # predict follows the decision values; the probabilities agree with it almost everywhere
    agree = (ours.classes_[proba.argmax(axis=1)] == ours.predict(Xte)).mean()
    assert agree >= 0.95
    np.testing.assert_allclose(ours.predict_log_proba(Xte), np.log(proba))


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_partial_fit_approaches_fit(split, kernel):
    Xtr, Xte, ytr, yte = split("breast_cancer", 0)
    target = SVC(kernel=kernel, solver="auto" if kernel == "linear" else "fourier", random_state=0).fit(Xtr, ytr)
    model = SVC(kernel=kernel, batch_size=32, random_state=0)
    rng = np.random.default_rng(0)
    for _ in range(8):
        order = rng.permutation(Xtr.shape[0])
        for start in range(0, order.size, 100):
            rows = order[start : start + 100]
            model.partial_fit(Xtr[rows], ytr[rows], classes=[0, 1])
    assert model.solver_ == ("sgd" if kernel == "linear" else "fourier")
    assert model.n_samples_seen_ == 8 * Xtr.shape[0]
    assert model.score(Xte, yte) >= target.score(Xte, yte) - 0.03


def test_partial_fit_continues_a_linear_fit_and_checks_labels(split):
    Xtr, Xte, ytr, yte = split("wine", 0)
    model = SVC(kernel="linear").fit(Xtr, ytr)
    before = model.score(Xte, yte)
    model.partial_fit(Xtr[:40], ytr[:40])
    assert model.solver_ == "sgd" and model.score(Xte, yte) >= before - 0.05
    with pytest.raises(InvalidArgumentError, match="not in classes_"):
        model.partial_fit(Xtr[:5], np.full(5, 7))
    with pytest.raises(InvalidArgumentError, match="classes must be passed"):
        SVC(kernel="linear").partial_fit(Xtr, ytr)
    with pytest.raises(FailedPreconditionError, match="cannot continue"):
        SVC().fit(Xtr, ytr).partial_fit(Xtr, ytr)


# -- estimator contract --------------------------------------------------------------------


def test_init_only_stores_and_params_round_trip():
    from sklearn.base import clone

    model = SVC(kernel="linear", C=3.0, gamma=0.1, tol=1e-4, random_state=5)
    assert model.get_params()["C"] == 3.0 and model.get_params()["random_state"] == 5
    assert model.set_params(C=0.5) is model and model.C == 0.5
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert "C=0.5" in repr(model) and "kernel='linear'" in repr(model)
    with pytest.raises(InvalidArgumentError, match="Invalid parameter 'c'"):
        model.set_params(c=1.0)
    # __init__ validates nothing: bad values fail at fit
    bad = SVC(C=-1.0)
    with pytest.raises(InvalidArgumentError, match="The 'C' parameter of SVC.fit must be a float in \\(0.0, inf\\]"):
        bad.fit(np.zeros((4, 2)), [0, 1, 0, 1])


def test_not_fitted_errors_are_value_and_attribute_errors():
    model = SVC()
    for method in (model.predict, model.decision_function, model.predict_proba):
        with pytest.raises(NotFittedError) as info:
            method(np.zeros((2, 3)))
        assert isinstance(info.value, ValueError) and isinstance(info.value, AttributeError)
    fitted = SVC().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    assert not hasattr(fitted, "prob_a_")
    with pytest.raises(NotFittedError, match="probability=True"):
        fitted.predict_proba(np.zeros((1, 1)))


@pytest.mark.parametrize(
    ("kwargs", "X", "y", "error", "match"),
    [
        ({"kernel": "poly"}, np.zeros((4, 2)), [0, 1, 0, 1], InvalidArgumentError, "'kernel' parameter"),
        ({"gamma": "often"}, np.zeros((4, 2)), [0, 1, 0, 1], InvalidArgumentError, "'gamma' parameter"),
        ({"kernel": "linear", "solver": "nystroem"}, np.zeros((4, 2)), [0, 1, 0, 1], InvalidArgumentError, "approximates"),
        ({}, np.zeros((4, 2)), [1, 1, 1, 1], InvalidArgumentError, "at least two classes"),
        ({}, np.zeros((4, 2)), [0, 1, 0], InvalidArgumentError, "one label per row"),
        ({}, np.array([[0.0, np.nan], [1, 1], [2, 2], [3, 3]]), [0, 1, 0, 1], InvalidArgumentError, "finite"),
        ({}, np.zeros(4), [0, 1, 0, 1], InvalidArgumentError, "2-d array"),
        ({}, np.array([["a", "b"]] * 4), [0, 1, 0, 1], InvalidTypeError, "dtype kind"),
        ({"probability": "yes"}, np.zeros((4, 2)), [0, 1, 0, 1], InvalidTypeError, "bool"),
        ({"random_state": -3}, np.zeros((4, 2)), [0, 1, 0, 1], InvalidTypeError, "random_state"),
    ],
)
def test_invalid_input_raises_typed_errors(kwargs, X, y, error, match):
    with pytest.raises(error, match=match):
        SVC(**kwargs).fit(X, y)


def test_wrong_dimension_at_predict(split):
    Xtr, _, ytr, _ = split("iris", 0)
    model = SVC().fit(Xtr, ytr)
    with pytest.raises(InvalidArgumentError, match="X has 3 features, but the estimator was fitted with 4"):
        model.predict(Xtr[:, :3])


def test_string_labels_and_binary_shapes(split):
    Xtr, Xte, ytr, yte = split("breast_cancer", 0)
    names = np.array(["benign", "malignant"])
    model = SVC(kernel="linear").fit(Xtr, names[ytr])
    assert list(model.classes_) == ["benign", "malignant"]
    assert model.decision_function(Xte).shape == (Xte.shape[0],)
    assert model.coef_.shape == (1, Xtr.shape[1])
    assert model.score(Xte, names[yte]) > 0.9


def test_max_iter_warns_about_convergence(split):
    Xtr, _, ytr, _ = split("digits", 0)
    with pytest.warns(ConvergenceWarning):
        SVC(max_iter=2).fit(Xtr, ytr)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel": "linear", "probability": True},
        {"kernel": "rbf"},
        {"kernel": "rbf", "solver": "nystroem", "n_components": 50},
        {"kernel": "rbf", "solver": "fourier", "n_components": 50, "probability": True},
    ],
)
def test_to_dict_round_trips_through_json(split, kwargs):
    Xtr, Xte, ytr, _ = split("wine", 0)
    model = SVC(random_state=0, **kwargs).fit(Xtr, ytr)
    data = json.loads(json.dumps(model.to_dict()))
    assert data["version"] == 1 and data["estimator"] == "SVC"
    again = SVC.from_dict(data)
    assert again.get_params() == model.get_params()
    np.testing.assert_array_equal(again.decision_function(Xte), model.decision_function(Xte))
    if model.probability:
        np.testing.assert_array_equal(again.predict_proba(Xte), model.predict_proba(Xte))
    unfitted = SVC.from_dict(SVC(C=2.0).to_dict())
    assert unfitted.C == 2.0 and not hasattr(unfitted, "intercept_")


def test_from_dict_refuses_newer_or_foreign_formats():
    data = SVC().to_dict()
    with pytest.raises(UnsupportedFormatError, match="format version 99"):
        SVC.from_dict({**data, "version": 99})
    with pytest.raises(InvalidArgumentError, match="GaussianMixture.from_dict"):
        SVC.from_dict({**data, "estimator": "GaussianMixture"})
    with pytest.raises(InvalidArgumentError, match="written by to_dict"):
        SVC.from_dict({"C": 1.0})


# -- properties on open-ended input ------------------------------------------------------------


@st.composite
def _problems(draw):
    n_classes = draw(st.integers(2, 4))
    per_class = draw(st.integers(3, 12))
    d = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=draw(st.floats(0.0, 3.0)), size=(n_classes, d))
    X = np.concatenate([c + rng.normal(size=(per_class, d)) for c in centers])
    y = np.repeat(np.arange(n_classes) * 10 - 5, per_class)
    return X, y


@settings(max_examples=25, deadline=None)
@given(problem=_problems(), kernel=st.sampled_from(["linear", "rbf"]), C=st.floats(0.01, 100.0))
def test_outputs_have_the_documented_shapes(problem, kernel, C):
    X, y = problem
    model = SVC(kernel=kernel, C=C, probability=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    k = np.unique(y).size
    proba = model.predict_proba(X)
    assert proba.shape == (X.shape[0], k)
    assert np.all(proba >= 0) and np.allclose(proba.sum(axis=1), 1.0)
    assert set(np.unique(model.predict(X))) <= set(np.unique(y))
    assert model.decision_function(X).shape == ((X.shape[0],) if k == 2 else (X.shape[0], k))


# -- numpy and CuPy agree ------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel": "linear"},
        {"kernel": "rbf", "tol": 1e-5},
        {"kernel": "rbf", "solver": "nystroem", "n_components": 200},
        {"kernel": "rbf", "solver": "fourier", "n_components": 300},
        {"kernel": "rbf", "probability": True},
    ],
)
def test_cupy_matches_numpy(split, cp, kwargs):
    Xtr, Xte, ytr, _ = split("digits", 0)
    host = SVC(random_state=0, **kwargs).fit(Xtr, ytr)
    dev = SVC(random_state=0, **kwargs).fit(cp.asarray(Xtr), cp.asarray(ytr))
    dec = dev.decision_function(cp.asarray(Xte))
    assert isinstance(dec, cp.ndarray) and dec.shape == host.decision_function(Xte).shape
    np.testing.assert_allclose(dec.get(), host.decision_function(Xte), atol=2e-2, rtol=1e-2)
    pred = dev.predict(cp.asarray(Xte))
    assert isinstance(pred, cp.ndarray)
    assert (pred.get() == host.predict(Xte)).mean() >= 0.99
    if kwargs.get("probability"):
        np.testing.assert_allclose(dev.predict_proba(cp.asarray(Xte)).get(), host.predict_proba(Xte), atol=2e-2)
    # a model fitted on the host predicts on the device, and the reverse
    assert isinstance(host.predict(cp.asarray(Xte)), cp.ndarray)
    assert isinstance(dev.predict(Xte), np.ndarray)


@pytest.mark.gpu
def test_cupy_partial_fit_matches_numpy(split, cp):
    Xtr, Xte, ytr, _ = split("breast_cancer", 0)
    host = SVC(kernel="linear", batch_size=50)
    dev = SVC(kernel="linear", batch_size=50)
    for start in range(0, Xtr.shape[0], 100):
        host.partial_fit(Xtr[start : start + 100], ytr[start : start + 100], classes=[0, 1])
        dev.partial_fit(cp.asarray(Xtr[start : start + 100]), cp.asarray(ytr[start : start + 100]), classes=[0, 1])
    np.testing.assert_allclose(dev.coef_.get(), host.coef_, rtol=1e-8, atol=1e-10)
