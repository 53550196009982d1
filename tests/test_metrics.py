"""Issue 16 §1: Prometheus metrics of a real ``simsearch serve`` (scraped over HTTP, parsed with
prometheus_client.parser), and the same numbers in the Stats RPC."""

from __future__ import annotations

import re
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from served import Served

from simsearch.client import Client
from simsearch.errors import NotFoundError
from simsearch.server import ServerConfig, create_server


def _scrape(url: str) -> dict[str, list]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        text = resp.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _value(families, family: str, sample: str | None = None, **labels) -> float | None:
    for s in families.get(family, []):
        if (sample is None or s.name == sample) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def test_metrics_of_a_served_process(tmp_path):
    with Served(tmp_path / "data", "--metrics-port", "0") as served:
        match = re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", served.first_line)
        assert match, served.first_line  # loopback unless --metrics-host says otherwise
        url = match.group(1)
        with Client(served.address, timeout=60) as client:
            c = client.create_collection("docs", dim=2)
            for b in range(3):
                c.upsert([{"id": f"b{b}-{i}", "text": f"batch {b} document {i} has words", "vector": [b, i]}
                          for i in range(10)])
            assert c.near_duplicates("batch 1 document 2 has words")
            c.search([1.0, 1.0], k=3)
            with pytest.raises(NotFoundError):
                client.get_collection("nope")
            m = _scrape(url)
            stats = client.stats()
        handled = "simsearch_grpc_server_handled"
        svc = "simsearch.v1.SimSearch"
        assert _value(m, handled, grpc_service=svc, grpc_method="Upsert", grpc_code="OK") == 3
        assert _value(m, handled, grpc_service=svc, grpc_method="GetCollection", grpc_code="NOT_FOUND") == 1
        assert _value(m, handled, grpc_service=svc, grpc_method="QueryNearDuplicates", grpc_code="OK") == 1
        lat = "simsearch_grpc_server_handling_seconds"
        assert _value(m, lat, f"{lat}_count", grpc_method="Upsert") == 3
        assert _value(m, lat, f"{lat}_bucket", grpc_method="Upsert", le="+Inf") == 3
        assert _value(m, lat, f"{lat}_sum", grpc_method="Upsert") > 0
        assert _value(m, "simsearch_collection_documents", collection="docs") == 30
        assert _value(m, "simsearch_collection_bytes_in_memory", collection="docs") > 0
        assert _value(m, "simsearch_collection_segments", collection="docs") >= 0
        assert _value(m, "simsearch_collection_bytes_on_disk", collection="docs") >= 0
        assert _value(m, "simsearch_index_bytes_on_disk") > 0
        assert _value(m, "simsearch_ingested_documents", "simsearch_ingested_documents_total") == 30
        assert _value(m, "simsearch_ingest_documents_per_second") == pytest.approx(30 / 60)
        assert _value(m, "simsearch_grpc_server_in_flight") == 0  # the scrape is not a call
        assert _value(m, "simsearch_grpc_server_queue_depth") == 0
        assert _value(m, "simsearch_training_jobs_running") == 0
        # the Stats RPC reads the same registry
        up = stats["rpcs"][f"{svc}/Upsert"]
        assert up["calls_by_code"] == {"OK": 3} and up["latency_buckets"][-1] == (float("inf"), 3)
        assert stats["rpcs"][f"{svc}/GetCollection"]["calls_by_code"] == {"NOT_FOUND": 1}
        assert stats["collection_stats"]["docs"]["documents"] == 30
        assert stats["collection_stats"]["docs"]["segments"] == \
            _value(m, "simsearch_collection_segments", collection="docs")
        assert stats["collection_stats"]["docs"]["bytes_in_memory"] == \
            _value(m, "simsearch_collection_bytes_in_memory", collection="docs")
        assert stats["ingested_documents"] == 30 and stats["requests_queued"] == 0
        assert stats["requests_in_flight"] == 1  # the Stats call itself
        assert stats["index_bytes_on_disk"] > 0
        assert stats["training_limits"]["max_training_jobs"] == 1
    rc, err = served.terminate()
    assert rc == 0, err


def test_metrics_are_off_by_default(tmp_path):
    server, _ = create_server(ServerConfig(data=None, port=0))
    server.start()
    try:
        assert server.metrics_port is None
        with Client(server.address, timeout=30) as client:
            stats = client.stats()
            assert stats["index_bytes_on_disk"] is None  # in memory
            assert stats["collection_stats"] == {}
    finally:
        server.stop(0)


def test_metrics_port_in_use_is_a_clear_error(tmp_path):
    first, _ = create_server(ServerConfig(data=None, port=0, metrics_port=0))
    first.start()
    try:
        second, _ = create_server(ServerConfig(data=None, port=0, metrics_port=first.metrics_port))
        with pytest.raises(Exception, match="cannot serve metrics"):
            second.start()
        second.stop(0)
    finally:
        first.stop(0)
