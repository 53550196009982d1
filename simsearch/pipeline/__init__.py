"""The batch dedup pipeline: ``simsearch dedup`` over JSONL / Parquet / text files, local or on Ray Data.

:func:`run` is the entry point (also :func:`simsearch.dedup.run`). The engines (:mod:`._local`,
:mod:`._ray`) stream the same per-chunk steps (:mod:`._stages`) over the units that
:mod:`._io` reads and writes.
"""

from __future__ import annotations

from ._run import ENGINES, DedupSummary, format_summary, run

__all__ = ["run", "DedupSummary", "ENGINES", "format_summary"]
