"""--engine ray gives the same outputs as --engine local, under a local Ray with 2 CPUs (marker ``ray``)."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from simsearch import dedup
from simsearch.errors import InputDataError

from test_dedup_pipeline import planted_corpus, run_cli, write_jsonl, write_parquet, write_text_dir

pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")]
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'simsearch[ray]')")
pytest.importorskip("ray.data")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)  # CPU workers, on any host
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def assert_same_outputs(a, b):
    for name in ("clusters.parquet", "pairs.parquet"):
        assert pq.read_table(os.path.join(a, name)).equals(pq.read_table(os.path.join(b, name))), name
    files = lambda root: sorted(  # noqa: E731
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
    da, db = os.path.join(a, "data"), os.path.join(b, "data")
    assert files(da) == files(db)
    for f in files(da):
        if f.endswith(".parquet"):
            assert pq.read_table(os.path.join(da, f)).equals(pq.read_table(os.path.join(db, f)))
        else:
            assert open(os.path.join(da, f), "rb").read() == open(os.path.join(db, f), "rb").read(), f
    sa, sb = (json.load(open(os.path.join(x, "summary.json"))) for x in (a, b))
    for key in ("docs_in", "docs_out", "duplicates", "clusters", "candidates", "pairs", "bands", "rows_per_band"):
        assert sa[key] == sb[key], key
    assert sb["engine"] == "ray" and "Ray: 2 CPUs" in sb["device"]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "text"])
def test_ray_engine_identical_to_local(tmp_path, local_ray, fmt):
    docs = planted_corpus(seed=11)
    half = len(docs) // 2
    if fmt == "jsonl":  # two files (one gzip'd), so two workers read in parallel; ids are positions
        src = [write_jsonl(tmp_path / "a.jsonl", docs[:half]),
               write_jsonl(tmp_path / "b.jsonl.gz", docs[half:], gz=True)]
        kw = {}
    elif fmt == "parquet":
        src, kw = [write_parquet(tmp_path / "p.parquet", docs)], {"id_field": "id"}
    else:
        src, kw = [write_text_dir(tmp_path / "t", docs)], {}
    dedup.run(src, tmp_path / "local", batch_size=50, quiet=True, **kw)
    dedup.run(src, tmp_path / "ray", batch_size=50, engine="ray", quiet=True, **kw)
    assert_same_outputs(tmp_path / "local", tmp_path / "ray")


def test_ray_engine_other_verify_mode(tmp_path, local_ray):
    src = write_jsonl(tmp_path / "c.jsonl", planted_corpus(seed=3))
    dedup.run(src, tmp_path / "local", verify="estimate", quiet=True)
    dedup.run(src, tmp_path / "ray", verify="estimate", engine="ray", quiet=True)
    assert_same_outputs(tmp_path / "local", tmp_path / "ray")


def test_ray_engine_raises_the_same_input_errors(tmp_path, local_ray):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": \n{"id": "a", "text": "z"}\n')
    with pytest.raises(InputDataError) as local:
        dedup.run(str(src), tmp_path / "o1", id_field="id", quiet=True)
    with pytest.raises(InputDataError) as remote:
        dedup.run(str(src), tmp_path / "o2", id_field="id", engine="ray", quiet=True)
    assert str(remote.value) == str(local.value) and (remote.value.path, remote.value.line) == (str(src), 2)
    src.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n{"id": "a", "text": "z"}\n')
    with pytest.raises(InputDataError, match=rf"^{src}:3: duplicate id 'a' \(first seen at {src}:1\)"):
        dedup.run(str(src), tmp_path / "o3", id_field="id", engine="ray", quiet=True)
    assert sorted(os.listdir(tmp_path)) == ["bad.jsonl"]


def test_cli_ray_address_connects_to_existing_cluster(tmp_path, local_ray):
    docs = planted_corpus(seed=5)
    src = write_jsonl(tmp_path / "c.jsonl", docs)
    r = run_cli(src, "-o", tmp_path / "ray", "--engine", "ray", "--ray-address", local_ray, "--quiet")
    assert r.returncode == 0, r.stderr
    dedup.run(src, tmp_path / "local", quiet=True)
    assert_same_outputs(tmp_path / "local", tmp_path / "ray")
    np.testing.assert_equal(json.loads(r.stdout)["engine"], "ray")
