"""Batch near-duplicate removal over files: ``simsearch.dedup.run(inputs, output, ...)``.

The same job as ``simsearch dedup INPUT... -o OUTDIR``; see :func:`simsearch.pipeline.run` for the
options and outputs, and :func:`simsearch.find_duplicates` for the in-memory version on a list of texts.
"""

from __future__ import annotations

from .pipeline import ENGINES, DedupSummary, format_summary, run

__all__ = ["run", "DedupSummary", "ENGINES", "format_summary"]
