"""LSH parameters: equal to datasketch's optimiser, exact error areas, recall-tuned choice, the CLI."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from datasketch.lsh import _false_negative_probability, _false_positive_probability, _optimal_param

import simsearch
from simsearch import lsh_error_areas, lsh_params, lsh_params_for_recall, lsh_probability
from simsearch.cli import main
from simsearch.errors import BackendUnavailableError, InvalidArgumentError, InvalidTypeError
from simsearch.banding import _lsh_params

THRESHOLDS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99]


@pytest.mark.parametrize("num_perm", [2, 3, 16, 64, 128, 200])
def test_same_params_as_datasketch(num_perm):
    for t in THRESHOLDS:
        assert lsh_params(t, num_perm) == _optimal_param(t, num_perm, 0.5, 0.5), (t, num_perm)


@pytest.mark.parametrize("weights", [(0.3, 0.7), (0.7, 0.3), (0.1, 0.9), (0.9, 0.1), (0.0, 1.0), (1.0, 0.0)])
def test_same_params_as_datasketch_with_weights(weights):
    for t in THRESHOLDS[::2]:
        for num_perm in (32, 128):
            assert lsh_params(t, num_perm, weights) == _optimal_param(t, num_perm, *weights), (t, num_perm, weights)


def test_same_params_as_datasketch_random_thresholds():
    rng = np.random.default_rng(0)
    for t in rng.uniform(0.01, 0.99, 25):
        num_perm = int(rng.integers(2, 160))
        assert lsh_params(float(t), num_perm) == _optimal_param(float(t), num_perm, 0.5, 0.5)


@pytest.mark.parametrize("b,r", [(1, 1), (9, 13), (5, 25), (16, 8), (64, 2), (3, 40)])
@pytest.mark.parametrize("t", [0.0, 0.3, 0.8, 1.0])
def test_error_areas_match_quadrature(b, r, t):
    fp, fn = lsh_error_areas(t, b, r)
    assert fp == pytest.approx(_false_positive_probability(t, b, r), abs=1e-10)
    assert fn == pytest.approx(_false_negative_probability(t, b, r), abs=1e-10)


def test_params_are_cached():
    _lsh_params.cache_clear()
    lsh_params(0.8, 128)
    lsh_params(0.8, 128, [0.5, 0.5])
    assert _lsh_params.cache_info().hits >= 1


def test_large_num_perm_is_fast():
    import time

    start = time.perf_counter()
    b, r = lsh_params(0.85, 4096)
    assert b * r <= 4096 and time.perf_counter() - start < 5


def test_probability_curve():
    s = np.linspace(0, 1, 11)
    p = lsh_probability(s, 9, 13)
    np.testing.assert_allclose(p, 1 - (1 - s**13) ** 9)
    assert lsh_probability(0.0, 9, 13) == 0.0 and lsh_probability(1.0, 9, 13) == 1.0
    assert isinstance(lsh_probability(0.5, 2, 2), float)


@pytest.mark.parametrize("t", [0.5, 0.7, 0.8, 0.9])
@pytest.mark.parametrize("num_perm", [64, 128, 256])
def test_recall_params_reach_probability_with_least_fp_area(t, num_perm):
    b, r = lsh_params_for_recall(t, num_perm)
    assert b * r <= num_perm
    assert lsh_probability(t, b, r) >= 0.995
    fp = lsh_error_areas(t, b, r)[0]
    for bb in range(1, num_perm + 1):
        for rr in range(1, num_perm // bb + 1):
            if lsh_probability(t, bb, rr) >= 0.995:
                assert lsh_error_areas(t, bb, rr)[0] >= fp - 1e-12


def test_recall_params_fallback_when_unreachable():
    b, r = lsh_params_for_recall(0.001, 16)
    assert (b, r) == (16, 1)


@pytest.mark.parametrize(
    "kwargs,exc",
    [
        ({"threshold": 1.5, "num_perm": 128}, InvalidArgumentError),
        ({"threshold": 0.8, "num_perm": 0}, InvalidArgumentError),
        ({"threshold": 0.8, "num_perm": 128.0}, InvalidTypeError),
        ({"threshold": 0.8, "num_perm": 128, "weights": (0.5, 0.6)}, InvalidArgumentError),
        ({"threshold": 0.8, "num_perm": 128, "weights": (0.5,)}, InvalidTypeError),
        ({"threshold": 0.8, "num_perm": 128, "weights": (-0.5, 1.5)}, InvalidArgumentError),
        ({"threshold": float("nan"), "num_perm": 128}, InvalidArgumentError),
    ],
)
def test_invalid_arguments(kwargs, exc):
    with pytest.raises(exc, match="parameter of lsh_params|weights"):
        lsh_params(**kwargs)


def test_cli_prints_params(capsys):
    assert main(["lsh-params", "--threshold", "0.8", "--num-perm", "128", "--weights", "0.3", "0.7"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["b"], out["r"]) == simsearch.lsh_params(0.8, 128, (0.3, 0.7))
    assert out["false_positive_area"] == pytest.approx(_false_positive_probability(0.8, out["b"], out["r"]))
    assert out["false_negative_area"] == pytest.approx(_false_negative_probability(0.8, out["b"], out["r"]))
    assert main(["lsh-params", "--threshold", "0.8", "--min-probability", "0.99"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["b"], out["r"]) == lsh_params_for_recall(0.8, 128, 0.99) and out["p_at_threshold"] >= 0.99


def test_cli_plot_writes_a_png(tmp_path, capsys):
    from matplotlib.image import imread

    path = tmp_path / "curve.png"
    assert main(["lsh-params", "--threshold", "0.8", "--num-perm", "128", "--plot", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["plot"] == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(str(path))
    assert img.ndim == 3 and img.shape[0] >= 200 and img.shape[1] >= 300
    assert img[..., :3].std() > 0.05  # a drawing, not a blank canvas


def test_cli_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(BackendUnavailableError, match=r"simsearch\[plot\]"):
        simsearch.banding.plot_s_curve(str(tmp_path / "x.png"), 0.8, 9, 13)
    assert main(["lsh-params", "--threshold", "0.8", "--plot", str(tmp_path / "x.png")]) == 2
    assert "simsearch[plot]" in capsys.readouterr().err
