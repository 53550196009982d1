"""How simsearch installs: one faiss per extra, no top-level ``server`` package, a working
``VectorIndex`` without faiss."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
# Every distribution on PyPI that installs the Python package `faiss` (they overwrite each other).
FAISS_DISTS = {"faiss", "faiss-cpu", "faiss-gpu", "faiss-gpu-cu11", "faiss-gpu-cu12", "faiss-gpu-cuvs",
               "faiss-gpu-cu12-cuvs", "faiss-gpu-cu13-cuvs", "faiss-cuda", "faiss-cpu-noavx2"}
GPU_FAISS = {d for d in FAISS_DISTS if "gpu" in d or "cuda" in d}


def _name(req: str) -> tuple[str, set[str]]:
    m = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?", req)
    return m.group(1).lower().replace("_", "-"), {e.strip() for e in (m.group(2) or "").split(",") if e.strip()}


def _expand(extras: set[str]) -> set[str]:
    """The distributions an install of simsearch[extras] asks for (self-references followed)."""
    names: set[str] = {_name(r)[0] for r in PYPROJECT["project"]["dependencies"]}
    todo, done = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in done:
            continue
        done.add(extra)
        for req in EXTRAS[extra]:
            name, sub = _name(req)
            if name == "simsearch":
                todo += sorted(sub)
            else:
                names.add(name)
    return names


def test_the_plain_install_has_no_faiss():
    assert not _expand(set()) & FAISS_DISTS


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_every_extra_installs_at_most_one_faiss(extra):
    assert len(_expand({extra}) & FAISS_DISTS) <= 1, sorted(_expand({extra}) & FAISS_DISTS)


@pytest.mark.parametrize("extra", ["gpu", "gpu-cuda12", "test-gpu"])
def test_the_cuda12_gpu_extras_give_exactly_one_faiss_with_gpu_support(extra):
    assert _expand({extra}) & FAISS_DISTS == {"faiss-gpu"}


@pytest.mark.parametrize("extra", ["cpu", "gpu-cuda13", "test"])
def test_the_cpu_faiss_extras_give_faiss_cpu(extra):
    assert _expand({extra}) & FAISS_DISTS == {"faiss-cpu"}


def test_gpu_extras_bring_cupy_and_numba_cuda_for_their_cuda():
    for extra, cuda in (("gpu", "12"), ("gpu-cuda13", "13")):
        reqs = {_name(r)[0]: _name(r)[1] for r in EXTRAS[extra]}
        assert f"cupy-cuda{cuda}x" in reqs
        assert reqs["numba-cuda"] == {f"cu{cuda}"}


def test_the_wheel_installs_only_the_simsearch_package(tmp_path):
    """`pip install simsearch` must not install a top-level `server` package (it would shadow, or
    be shadowed by, any other `server` module); the gRPC server is simsearch.server."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("simsearch-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        top = {n.split("/")[0] for n in zf.namelist()}
        names = set(zf.namelist())
    assert top == {"simsearch", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, top
    assert "simsearch/server/__init__.py" in names and "simsearch/_proto/v1/simsearch_pb2.py" in names


_NO_FAISS = """
import sys
sys.modules["faiss"] = None  # as if no faiss were installed
import numpy as np
import simsearch
from simsearch import VectorIndex, distance
from simsearch.errors import BackendUnavailableError
rng = np.random.default_rng(0)
x = rng.standard_normal((50, 8)).astype(np.float32)
index = VectorIndex(dim=8, metric="cosine", kind="flat")
index.add(np.arange(50), x)
assert index.search(x[:3], k=2).keys[:, 0].tolist() == [0, 1, 2]
for kind in ("hnsw", "ivf"):
    try:
        VectorIndex(dim=8, kind=kind)
    except ImportError as exc:
        assert isinstance(exc, BackendUnavailableError) and "simsearch[cpu]" in str(exc), exc
    else:
        raise SystemExit(f"kind={kind} without faiss did not raise")
try:
    distance.knn(x, x[:2], 3, backend="faiss")
except ImportError as exc:
    assert "simsearch[cpu]" in str(exc), exc
else:
    raise SystemExit("backend='faiss' without faiss did not raise")
print("ok")
"""


def test_without_faiss_flat_works_and_ivf_hnsw_name_the_extra():
    proc = subprocess.run([sys.executable, "-c", _NO_FAISS], capture_output=True, text=True, timeout=120,
                          cwd=str(ROOT))
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
