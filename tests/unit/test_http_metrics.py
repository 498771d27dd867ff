"""The HTTP metrics as Prometheus reads them: counted as plain numbers, exposed at scrape time."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from meshup.http.metrics import LATENCY_BUCKETS, MAX_LABEL_SETS, HttpMetrics


def samples(metrics: HttpMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_requests_and_durations_read_as_a_counter_and_a_histogram() -> None:
    metrics = HttpMetrics()
    for elapsed in (0.0004, 0.0005, 0.003, 42.0):
        metrics.observe("GET", "/v1/{project_id}/mesh-job/{job_id}", 200, elapsed)
    metrics.observe("GET", "/v1/{project_id}/mesh-job/{job_id}", 404, 0.002)
    metrics.count("GET", "unmatched", 431)
    found = samples(metrics)
    route = ("route", "/v1/{project_id}/mesh-job/{job_id}")
    ok = (("method", "GET"), route, ("status", "200"))
    assert found[("meshup_http_requests_total", ok)] == 4
    assert found[("meshup_http_requests_total", (("method", "GET"), route, ("status", "404")))] == 1
    unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "431"))
    assert found[("meshup_http_requests_total", unmatched)] == 1
    bucket = "meshup_http_request_duration_seconds_bucket"
    assert found[(bucket, (("le", "0.0005"), route))] == 2  # le: at most the bound
    assert found[(bucket, (("le", "0.0025"), route))] == 3
    assert found[(bucket, (("le", "0.005"), route))] == 4
    assert found[(bucket, (("le", "10.0"), route))] == 4
    assert found[(bucket, (("le", "+Inf"), route))] == 5
    assert found[("meshup_http_request_duration_seconds_count", (route,))] == 5
    assert abs(found[("meshup_http_request_duration_seconds_sum", (route,))] - 42.0059) < 1e-9
    buckets = [labels for name, labels in found if name == bucket and ("route", "unmatched") in labels]
    assert buckets == []  # a refused head has no duration
    assert sum(1 for name, labels in found if name == bucket and route in labels) == len(LATENCY_BUCKETS) + 1


def test_label_sets_are_bounded() -> None:
    metrics = HttpMetrics()
    for n in range(MAX_LABEL_SETS + 5):
        metrics.observe("GET", f"/r{n}", 200, 0.001)
    found = samples(metrics)
    assert sum(1 for name, _ in found if name == "meshup_http_requests_total") == MAX_LABEL_SETS
    metrics.observe("GET", "/r0", 200, 0.001)  # a known label set still counts
    assert (
        samples(metrics)[
            ("meshup_http_requests_total", (("method", "GET"), ("route", "/r0"), ("status", "200")))
        ]
        == 2
    )
