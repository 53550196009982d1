"""Open after a kill -9 of a collection with ``indexed_fields``, to the first filtered answer.

A child process ingests ``--n`` + ``--tail`` documents in batches of 1,000 (short texts, metadata with three
fields, two of them indexed) into a collection declaring ``indexed_fields=["g", "lang"]`` and is killed with SIGKILL
right after its last write is acknowledged (no clean close). The index directory is copied once per
trial, and each trial opens its copy in a fresh process (warmed by an in-memory ``Index()``: the
backend is chosen and its kernels loaded) and times ``Index(path)`` → the first page
of ``scroll({"g": 3})`` (the filter is on indexed fields, so that page needs the typed columns).

Paired rows, on the same killed state, interleaved trial by trial:

* ``parts``: as is (this version): the part files written as the child ingested cover all rows but
  the last ones; the open decodes only those (``rows_decoded``);
* ``no parts``: the same copy with ``fields/c<cid>/`` removed, which is what every open after a
  kill -9 did before the part files (the columns were saved only by a clean close): every live
  document's metadata is decoded.

``ratio`` = median(no parts) / median(parts). ``ingest_part_writes``: the child's time in
``FieldStore.persist`` (every part file it wrote, rewrites included) against its whole ingest.
``load`` is the 1-minute load average at the row.
``python benchmarks/bench_fields_reopen.py --smoke`` runs a tiny version.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap

sys.path.insert(0, os.path.dirname(__file__))
from _common import device, git_commit, versions

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, time
    import numpy as np
    from simsearch.index import Index, Document
    from simsearch.index._filtering import FieldStore
    path, n = sys.argv[1], int(sys.argv[2])
    spent = {"persist_s": 0.0, "parts_written": 0}
    persist = FieldStore.persist

    def timed(self, *a, **k):
        t = time.perf_counter()
        persist(self, *a, **k)
        spent["persist_s"] += time.perf_counter() - t
        spent["parts_written"] = self.parts_written

    FieldStore.persist = timed
    ix = Index(path)
    c = ix.create_collection("c", indexed_fields=["g", "lang"])
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(2000)]
    langs = ["en", "de", "fr", "es"]
    t0 = time.perf_counter()
    for lo in range(0, n, 1000):  # a part every 5 batches (PART_ROWS = 4,096): n + 4,000 leaves the worst tail
        m = min(1000, n - lo)
        g = rng.integers(0, 10, m)
        docs = [Document(id=f"d{lo + i}", text=" ".join(rng.choice(words, 20)),
                         metadata={"g": int(g[i]), "lang": langs[(lo + i) % 4], "note": f"n{lo + i}",
                                   "nested": {"k": (lo + i) % 7}}) for i in range(m)]
        c.upsert(docs)
    spent["ingest_s"] = time.perf_counter() - t0
    print("acked", json.dumps(spent), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)

TRIAL = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    from simsearch.index import Document, Index
    with Index() as warm:  # a warm process: the backend chosen, its kernels loaded (not this row's subject)
        warm.create_collection("w", indexed_fields=["g"]).upsert([Document(id="a", text="x y z", metadata={"g": 1})])
    t1 = time.perf_counter()
    ix = Index(sys.argv[1])
    c = ix.get_collection("c")
    page = next(c.scroll({"g": 3}, batch_size=10))
    t2 = time.perf_counter()
    assert len(page.documents) == 10
    print(json.dumps({"seconds": t2 - t1, "rows_decoded": c._fields.rows_decoded, "count": c.count()}))
    """
)


def load1() -> float:
    return os.getloadavg()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--tail", type=int, default=4000,
                    help="documents after the last multiple of 5,000 (the rows past the last part file)")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="5,000 documents, 1 trial")
    ap.add_argument("--dir", default=None, help="where to build (default: a temporary directory)")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.trials = 5000, 1
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                       os.environ.get("PYTHONPATH", "")]))
    root = tempfile.mkdtemp(prefix="bench_fields_", dir=args.dir)
    try:
        base = os.path.join(root, "base")
        out = subprocess.run([sys.executable, "-c", CHILD, base, str(args.n + args.tail)], env=env, capture_output=True, text=True, check=False)
        assert out.returncode == -signal.SIGKILL and "acked" in out.stdout, out.stderr[-2000:]
        ingest = json.loads(out.stdout.split("acked", 1)[1])
        results: dict[str, list[dict]] = {"parts": [], "no parts": []}
        for t in range(args.trials):
            for label in (["parts", "no parts"] if t % 2 == 0 else ["no parts", "parts"]):
                path = os.path.join(root, f"t{t}-{label.replace(' ', '_')}")
                shutil.copytree(base, path)
                if label == "no parts":
                    shutil.rmtree(os.path.join(path, "fields"), ignore_errors=True)
                r = subprocess.run([sys.executable, "-c", TRIAL, path], env=env, capture_output=True, text=True, check=False)
                assert r.returncode == 0, r.stderr[-2000:]
                row = json.loads(r.stdout.strip().splitlines()[-1])
                row["load"] = load1()
                results[label].append(row)
                shutil.rmtree(path)
        med = {k: statistics.median(x["seconds"] for x in v) for k, v in results.items()}
        meta = {"n": args.n, "trials": args.trials, "commit": git_commit(), "device": device(),
                "versions": versions()}
        for label, rows in results.items():
            print(json.dumps({"row": "reopen_kill9_filtered", "variant": label, "median_s": round(med[label], 4),
                              "seconds": [round(x["seconds"], 4) for x in rows],
                              "rows_decoded": rows[0]["rows_decoded"], "count": rows[0]["count"],
                              "load": [round(x["load"], 2) for x in rows], **meta}))
        print(json.dumps({"row": "reopen_kill9_filtered", "ratio_no_parts_over_parts":
                          round(med["no parts"] / med["parts"], 2), "n": args.n}))
        print(json.dumps({"row": "ingest_part_writes", "n": args.n, "ingest_s": round(ingest["ingest_s"], 2),
                          "persist_s": round(ingest["persist_s"], 3), "parts_written": ingest["parts_written"],
                          "persist_share": round(ingest["persist_s"] / ingest["ingest_s"], 4), "load": round(load1(), 2)}))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
