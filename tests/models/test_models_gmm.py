"""GaussianMixture against scikit-learn (the oracle), its estimator contract, and numpy/CuPy agreement."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simsearch.errors import InvalidArgumentError, InvalidTypeError, NotFittedError
from simsearch.models import ConvergenceWarning, GaussianMixture

DATASETS = ["iris", "wine", "breast_cancer", "digits"]
COV_TYPES = ["full", "tied", "diag", "spherical"]


def _n_classes(y):
    return int(np.unique(y).size)


def _shared_start(X, k, cov_type, seed):
    """Initial weights, means and precisions both libraries start from.

    scikit-learn's ``means_init`` alone does not fix the start: it takes the first covariances
    from its own, separately seeded k-means run, so "the same initial means" needs the initial
    weights and precisions passed too. They come from our initialisation (max_iter=0) around
    k-means++ seeds drawn by scikit-learn.
    """
    from sklearn.cluster import kmeans_plusplus

    means, _ = kmeans_plusplus(X, k, random_state=seed + 100)
    start = GaussianMixture(k, covariance_type=cov_type, means_init=means, max_iter=0, random_state=seed).fit(X)
    return {"weights_init": start.weights_, "means_init": means, "precisions_init": start.precisions_}


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("name", DATASETS)
def test_em_matches_sklearn_from_the_same_start(standardised, name, cov_type):
    """Mean log-likelihood within 1% and adjusted Rand index >= sklearn's - 0.02, several seeds."""
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import GaussianMixture as SkGMM

    X, y = standardised(name)
    k = _n_classes(y)
    seeds = range(1) if (name, cov_type) in {("digits", "full"), ("digits", "tied")} else range(3)
    for seed in seeds:
        start = _shared_start(X, k, cov_type, seed)
        ours = GaussianMixture(k, covariance_type=cov_type, random_state=seed, **start).fit(X)
        theirs = SkGMM(k, covariance_type=cov_type, random_state=seed, **start).fit(X)
        assert abs(ours.score(X) - theirs.score(X)) <= 0.01 * abs(theirs.score(X)), (seed, ours.score(X), theirs.score(X))
        assert adjusted_rand_score(y, ours.predict(X)) >= adjusted_rand_score(y, theirs.predict(X)) - 0.02
        assert ours.converged_ == theirs.converged_ and ours.n_iter_ == theirs.n_iter_
        assert ours.lower_bound_ == pytest.approx(theirs.lower_bound_, rel=1e-6)
        assert ours.bic(X) == pytest.approx(theirs.bic(X), rel=1e-6)
        assert ours.aic(X) == pytest.approx(theirs.aic(X), rel=1e-6)
        np.testing.assert_allclose(ours.weights_, theirs.weights_, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("name", ["iris", "wine"])
def test_default_initialisation_is_as_good_as_sklearn(standardised, name, cov_type):
    """k-means initialisation, independently seeded: mean log-likelihood over seeds within 1%."""
    from sklearn.mixture import GaussianMixture as SkGMM

    X, y = standardised(name)
    k = _n_classes(y)
    ours = [GaussianMixture(k, covariance_type=cov_type, n_init=2, random_state=s).fit(X).score(X) for s in range(4)]
    theirs = [SkGMM(k, covariance_type=cov_type, n_init=2, random_state=s).fit(X).score(X) for s in range(4)]
    assert np.mean(ours) >= np.mean(theirs) - 0.01 * abs(np.mean(theirs)), (ours, theirs)


def test_means_init_is_used_as_given(standardised):
    X, y = standardised("iris")
    means = np.stack([X[y == c].mean(axis=0) for c in range(3)])
    model = GaussianMixture(3, means_init=means, max_iter=0).fit(X)  # max_iter=0: initialise only, no warning
    np.testing.assert_array_equal(model.means_, means)
    assert model.n_iter_ == 0 and not model.converged_
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        GaussianMixture(3, means_init=means, max_iter=1, tol=0.0).fit(X)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_initialisation_fits(standardised, init_params):
    X, _ = standardised("iris")
    model = GaussianMixture(3, init_params=init_params, random_state=0, max_iter=300).fit(X)
    assert model.converged_ and model.n_iter_ >= 1
    assert model.score(X) > -4.0


def test_same_seed_same_model_and_fit_predict_agrees(standardised):
    X, _ = standardised("wine")
    a = GaussianMixture(3, covariance_type="diag", random_state=7).fit(X)
    b = GaussianMixture(3, covariance_type="diag", random_state=7)
    labels = b.fit_predict(X)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(labels, b.predict(X))
    assert a.lower_bound_ == b.lower_bound_


def test_lower_bound_is_stable_for_far_away_points(standardised):
    """Points thousands of deviations away still get finite log-likelihoods (log-sum-exp)."""
    X, _ = standardised("iris")
    model = GaussianMixture(3, random_state=0).fit(X)
    far = X[:5] + 1e4
    ll = model.score_samples(far)
    assert np.all(np.isfinite(ll)) and np.all(ll < -1e6)
    proba = model.predict_proba(far)
    assert np.all(np.isfinite(proba)) and np.allclose(proba.sum(axis=1), 1.0)


# -- estimator contract --------------------------------------------------------------------


def test_params_and_not_fitted():
    from sklearn.base import clone

    model = GaussianMixture(4, covariance_type="tied", reg_covar=1e-4)
    assert clone(model).get_params() == model.get_params()
    assert model.set_params(n_components=2) is model and model.n_components == 2
    for method in (model.predict, model.predict_proba, model.score_samples, model.score):
        with pytest.raises(NotFittedError) as info:
            method(np.zeros((2, 2)))
        assert isinstance(info.value, AttributeError)


@pytest.mark.parametrize(
    ("kwargs", "X", "error", "match"),
    [
        ({"n_components": 5}, np.random.default_rng(0).normal(size=(4, 2)), InvalidArgumentError, "n_samples >= n_components"),
        ({"covariance_type": "banded"}, np.zeros((5, 2)), InvalidArgumentError, "'covariance_type'"),
        ({"reg_covar": -1.0}, np.zeros((5, 2)), InvalidArgumentError, "'reg_covar'"),
        ({"n_components": 0}, np.zeros((5, 2)), InvalidArgumentError, "'n_components'"),
        ({"n_init": 1.5}, np.zeros((5, 2)), InvalidTypeError, "'n_init'"),
        ({"init_params": "magic"}, np.zeros((5, 2)), InvalidArgumentError, "'init_params'"),
        ({"n_components": 2, "means_init": np.zeros((3, 2))}, np.zeros((5, 2)), InvalidArgumentError, "shape \\(2, 2\\)"),
        ({"n_components": 2, "weights_init": [0.7, 0.7]}, np.zeros((5, 2)), InvalidArgumentError, "sum to 1"),
        ({"n_components": 1, "precisions_init": -np.eye(2)[None]}, np.zeros((5, 2)), InvalidArgumentError, "ill-defined"),
        ({}, np.array([[np.inf, 0.0], [1.0, 1.0]]), InvalidArgumentError, "finite"),
    ],
)
def test_invalid_input_raises_typed_errors(kwargs, X, error, match):
    with pytest.raises(error, match=match):
        GaussianMixture(**kwargs).fit(X)


def test_collapsed_component_tells_the_user_what_to_do():
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), 10, axis=0)
    with pytest.raises(InvalidArgumentError, match="increase reg_covar"):
        GaussianMixture(2, reg_covar=0.0, random_state=0).fit(X)
    GaussianMixture(2, reg_covar=1e-6, random_state=0).fit(X)  # the default regularisation copes


def test_wrong_dimension_at_predict(standardised):
    X, _ = standardised("iris")
    model = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(InvalidArgumentError, match="X has 2 features"):
        model.predict(X[:, :2])


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_to_dict_round_trips_through_json(standardised, cov_type):
    X, y = standardised("wine")
    means = np.stack([X[y == c].mean(axis=0) for c in range(3)])
    model = GaussianMixture(3, covariance_type=cov_type, means_init=means, random_state=0).fit(X)
    data = json.loads(json.dumps(model.to_dict()))
    again = GaussianMixture.from_dict(data)
    np.testing.assert_array_equal(again.score_samples(X), model.score_samples(X))
    np.testing.assert_array_equal(again.means_init, means)
    assert again.converged_ == model.converged_ and again.n_iter_ == model.n_iter_


# -- properties on open-ended input ------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(6, 60),
    d=st.integers(1, 4),
    k=st.integers(1, 4),
    cov_type=st.sampled_from(COV_TYPES),
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(1e-3, 1e3),
)
def test_posteriors_are_distributions(n, d, k, cov_type, seed, scale):
    X = np.random.default_rng(seed).normal(scale=scale, size=(n, d))
    model = GaussianMixture(min(k, n), covariance_type=cov_type, reg_covar=1e-6 * scale**2, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    proba = model.predict_proba(X)
    assert proba.shape == (n, model.n_components)
    assert np.all(proba >= 0) and np.allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))
    ll = model.score_samples(X)
    assert ll.shape == (n,) and np.all(np.isfinite(ll))
    assert model.score(X) == pytest.approx(ll.mean())
    np.testing.assert_allclose(model.weights_.sum(), 1.0)


# -- numpy and CuPy agree ------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_cupy_matches_numpy(standardised, cp, cov_type):
    X, y = standardised("digits")
    host = GaussianMixture(10, covariance_type=cov_type, random_state=0).fit(X)
    dev = GaussianMixture(10, covariance_type=cov_type, random_state=0).fit(cp.asarray(X))
    assert isinstance(dev.means_, cp.ndarray)
    ll = dev.score_samples(cp.asarray(X))
    assert isinstance(ll, cp.ndarray)
    np.testing.assert_allclose(ll.get(), host.score_samples(X), rtol=1e-5, atol=1e-5)
    assert (dev.predict(cp.asarray(X)).get() == host.predict(X)).mean() >= 0.99
    np.testing.assert_allclose(dev.predict_proba(cp.asarray(X)).get(), host.predict_proba(X), atol=1e-4)
    assert dev.bic(cp.asarray(X)) == pytest.approx(host.bic(X), rel=1e-6)
