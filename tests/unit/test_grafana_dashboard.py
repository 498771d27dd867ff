"""The Grafana dashboard in docs/ is valid dashboard JSON and queries only metrics meshup exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana-dashboard.json"
EXPOSED = {
    "meshup_http_requests_total",
    "meshup_http_request_duration_seconds_bucket",
    "meshup_jobs",
    "meshup_upgrade_tasks",
    "meshup_jobs_waiting",
    "meshup_jobs_waiting_oldest_age_seconds",
    "meshup_jobs_leased",
    "meshup_workers",
    "meshup_engine_metrics_up",
    "meshup_engine_claims_total",
    "meshup_engine_reclaims_total",
    "meshup_engine_lease_expiries_total",
    "meshup_engine_heartbeats_total",
    "meshup_engine_step_outcomes_total",
    "meshup_engine_leaf_run_seconds_bucket",
}


def test_dashboard_panels_query_prometheus_for_meshup_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["title"] and dashboard["uid"]
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    used: set[str] = set()
    for panel in panels:
        assert panel["type"] in ("timeseries", "stat")
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["type"] == "prometheus"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            used |= set(re.findall(r"\bmeshup_[a-z_]+", target["expr"]))
    assert used <= EXPOSED, used - EXPOSED
    assert used >= {
        "meshup_http_requests_total",
        "meshup_jobs",
        "meshup_engine_leaf_run_seconds_bucket",
        "meshup_jobs_waiting_oldest_age_seconds",
        "meshup_engine_lease_expiries_total",
        "meshup_engine_reclaims_total",
        "meshup_workers",
    }
