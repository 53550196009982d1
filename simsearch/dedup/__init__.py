"""Near-duplicate removal: in memory (:func:`find_duplicates`) and over files (:func:`run`).

* :func:`find_duplicates` takes a list of texts and returns the verified pairs and clusters; its
  five stages (:func:`compute_signatures`, :func:`compute_band_keys`,
  :func:`candidate_pairs_from_band_keys`, :func:`verify_pairs`, :func:`connected_components`) are
  plain functions of arrays (``_core``).
* :func:`run` is ``simsearch dedup INPUT... -o OUTDIR``: the same stages streamed in batches over
  JSONL / Parquet / text files (``_io`` reads and writes the units), locally (``_local``) or on
  Ray Data (``_ray``), both engines calling the same per-chunk steps (``_stages``).
"""

from __future__ import annotations

from ._core import (
    DedupResult,
    candidate_pairs_from_band_keys,
    compute_band_keys,
    compute_signatures,
    connected_components,
    find_duplicates,
    merge_pairs,
    verify_pairs,
)
from ._run import ENGINES, RULES, DedupSummary, format_summary, run

__all__ = [
    "run",
    "RULES",
    "DedupSummary",
    "ENGINES",
    "format_summary",
    "find_duplicates",
    "DedupResult",
    "compute_signatures",
    "compute_band_keys",
    "candidate_pairs_from_band_keys",
    "merge_pairs",
    "verify_pairs",
    "connected_components",
]
