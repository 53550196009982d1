"""The console script, run as a user would run it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np

import simsearch


def _simsearch():
    exe = shutil.which("simsearch")
    return [exe] if exe else [sys.executable, "-m", "simsearch"]


def test_minhash_command_writes_the_same_signatures_as_the_api(tmp_path):
    docs = ["the first document has several words in it", "", "ΣΑΣ İstanbul 😀 the second one"]
    f = tmp_path / "docs.txt"
    f.write_text("\n".join(docs) + "\n", encoding="utf-8")
    out = tmp_path / "sigs.npy"
    res = subprocess.run(
        _simsearch() + ["minhash", str(f), "-o", str(out), "--num-perm", "64", "--backend", "numpy"],
        capture_output=True, text=True, check=True,
    )
    summary = json.loads(res.stdout)
    assert summary["docs"] == 3 and summary["backend"] == "numpy"
    assert np.array_equal(np.load(out), simsearch.minhash(docs, num_perm=64))


def test_minhash_command_reports_bad_jsonl_with_file_and_line(tmp_path):
    f = tmp_path / "docs.jsonl"
    f.write_text('{"text": "ok"}\n{not json}\n', encoding="utf-8")
    res = subprocess.run(_simsearch() + ["minhash", str(f), "--text-field", "text"], capture_output=True, text=True)
    assert res.returncode == 2
    assert f"{f}:2" in res.stderr and "Traceback" not in res.stderr
