"""The upgrade tool against a real meshup server: the official SDK on one side, the meshup plugin's
fixtures and control API (reset, seeds, manual clock, faults, snapshots) on the other."""

from __future__ import annotations

from typing import Any

import pytest
from upgrade_tool import AsmApi, AsmError, JobTimeout, Outcome, StepRun, Upgrader
from upgrade_tool.api import client_for
from upgrade_tool.cli import main

from meshup.control.client import ControlClient
from meshup.testing import Credentials

MESH = "0e0e0e0e-0000-4000-8000-000000000001"  # shop-mesh of seeds/shop.yaml
LEGACY_MESH = "0e0e0e0e-0000-4000-8000-000000000002"  # seeds/legacy_cluster.yaml
SOURCE, TARGET = "1.15.7-r1", "1.18.7-r5"
AUDITOR = ("AKSHOPAUDITOREXAMPL1", "ShopAuditorSecretKeyExample000000000001")  # seeds/shop.yaml


def steps(runs: tuple[StepRun, ...]) -> list[tuple[str, tuple[str, ...], str]]:
    return [(run.step, run.namespaces, run.phase) for run in runs]


def mesh_state(api: AsmApi, mesh_id: str = MESH) -> tuple[str, str]:
    mesh = api.mesh(mesh_id)
    return mesh["status"]["phase"], mesh["spec"]["version"]


def test_a_clean_upgrade_migrates_namespaces_in_batches_and_completes(
    meshup: ControlClient, api: AsmApi, upgrader: Upgrader
) -> None:
    before = meshup.clock()["now"]

    result = upgrader.upgrade(MESH, TARGET)

    assert result.outcome is Outcome.COMPLETED
    assert result.exit_code == 0
    assert result.failure is None
    assert steps(result.steps) == [
        ("PreCheck", (), "Success"),
        ("ControlPlaneUpgrade", (), "Success"),
        ("DataPlaneUpgrade", ("cart", "checkout"), "Success"),
        ("DataPlaneUpgrade", ("search",), "Success"),
        ("Complete", (), "Success"),
    ]
    assert mesh_state(api) == ("Running", TARGET)
    task = api.task(result.task_id)
    assert task["status"]["phase"] == "Completed"
    assert sorted(task["status"]["migratedNamespaces"]) == ["cart", "checkout", "search"]
    # The upgrade took simulated time, which the clock jumped through instead of waiting.
    assert meshup.clock()["now"] > before


@pytest.mark.meshup_seed("seeds/legacy_cluster.yaml")
def test_a_failed_pre_check_changes_nothing_and_is_reported(
    meshup_credentials: Credentials, api: AsmApi, upgrader: Upgrader
) -> None:
    # With the marker, the plugin's client signs as the root user of that seed's account.
    assert meshup_credentials.project_id == "0e0e0e0e0e0e4e0e8e0e0e0e0e0e0e02"

    result = upgrader.upgrade(LEGACY_MESH, TARGET)

    assert result.outcome is Outcome.FAILED
    assert result.exit_code == 1
    assert steps(result.steps) == [("PreCheck", (), "Failed")]
    assert result.failure is not None
    assert "old-1" in result.failure.reason
    assert "1.21" in result.failure.reason
    # Nothing was rolled back because nothing had changed.
    assert mesh_state(api, LEGACY_MESH) == ("Running", SOURCE)


def test_a_fault_in_the_data_plane_step_is_rolled_back(
    meshup: ControlClient, api: AsmApi, upgrader: Upgrader
) -> None:
    fault: dict[str, Any] = {}

    def break_search_once_the_control_plane_is_up(run: StepRun) -> None:
        if run.step == "ControlPlaneUpgrade":
            fault.update(
                meshup.add_fault(
                    "shop-1", "RestartWorkloads", namespace="search", times=1, reason="indexer crash-looping"
                )
            )

    upgrader.on_step = break_search_once_the_control_plane_is_up

    result = upgrader.upgrade(MESH, TARGET)

    assert result.outcome is Outcome.ROLLED_BACK
    assert result.exit_code == 1
    assert steps(result.steps) == [
        ("PreCheck", (), "Success"),
        ("ControlPlaneUpgrade", (), "Success"),
        ("DataPlaneUpgrade", ("cart", "checkout"), "Success"),
        ("DataPlaneUpgrade", ("search",), "Failed"),
        ("Rollback", (), "Success"),
    ]
    assert result.failure is not None
    assert "indexer crash-looping" in result.failure.reason
    assert mesh_state(api) == ("Running", SOURCE)
    assert api.task(result.task_id)["status"]["phase"] == "RolledBack"
    assert [f["fired"] for f in meshup.faults("shop-1") if f["id"] == fault["id"]] == [1]


def test_a_user_who_may_only_read_gets_a_clear_error(
    meshup_credentials: Credentials, meshup: ControlClient, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    auditor = AsmApi(client_for(meshup_credentials.endpoint, *AUDITOR, meshup_credentials.project_id))
    assert mesh_state(auditor) == ("Running", SOURCE)  # reading is allowed

    with pytest.raises(AsmError) as refused:
        Upgrader(auditor, sleep=lambda _: meshup.run_until_idle()).upgrade(MESH, TARGET)

    assert refused.value.status == 403
    assert "asm:mesh:upgrade" in refused.value.message
    assert str(refused.value).startswith(f"HTTP 403 {refused.value.code}: ")

    # The command line says the same and exits with 3 (the service refused a call).
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", AUDITOR[0])
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", AUDITOR[1])
    argv = ["--endpoint", meshup_credentials.endpoint, "--project-id", meshup_credentials.project_id]
    assert main([*argv, "--mesh", MESH, "--target", TARGET]) == 3
    error = capsys.readouterr().err
    assert "HTTP 403" in error
    assert "asm:mesh:upgrade" in error
    assert AUDITOR[1] not in error


def test_a_snapshot_taken_mid_upgrade_is_restored_to_retry(
    meshup: ControlClient, api: AsmApi, upgrader: Upgrader
) -> None:
    def snapshot_then_break_cart(run: StepRun) -> None:
        if run.step == "ControlPlaneUpgrade":
            meshup.save_snapshot("control-plane-ready")
            meshup.add_fault(
                "shop-2", "RestartWorkloads", namespace="cart", times=1, reason="image pull backoff"
            )

    upgrader.on_step = snapshot_then_break_cart
    first = upgrader.upgrade(MESH, TARGET)
    assert first.outcome is Outcome.ROLLED_BACK
    assert first.failure is not None
    assert first.failure.step == "DataPlaneUpgrade"

    # Back to the moment the control plane was ready: the fault (added later) is gone too.
    meshup.restore_snapshot("control-plane-ready")
    meshup.delete_snapshot("control-plane-ready")
    assert meshup.faults() == []
    task = api.task(first.task_id)
    assert (task["status"]["phase"], task["status"]["step"]) == ("Waiting", "ControlPlaneUpgrade")

    upgrader.on_step = lambda run: None
    retry = upgrader.resume(first.task_id)

    assert retry.outcome is Outcome.COMPLETED
    assert retry.task_id == first.task_id
    assert steps(retry.steps) == [
        ("DataPlaneUpgrade", ("cart", "checkout"), "Success"),
        ("DataPlaneUpgrade", ("search",), "Success"),
        ("Complete", (), "Success"),
    ]
    assert mesh_state(api) == ("Running", TARGET)


def test_a_step_slower_than_the_tool_allows_times_out_in_simulated_time(
    meshup: ControlClient, api: AsmApi
) -> None:
    # Here each poll moves the clock by the tool's own poll interval (advance), not to the end.
    meshup.add_fault("shop-1", "WaitControlPlaneReady", neverReady=True, reason="istiod never ready")
    upgrader = Upgrader(api, poll_interval=5, timeout=10, sleep=meshup.advance)
    before = meshup.clock()["now"]

    with pytest.raises(JobTimeout) as timed_out:
        upgrader.upgrade(MESH, TARGET)

    # The tool gave up after 10 simulated seconds; the control plane step is still running.
    assert "did not end within 10s" in str(timed_out.value)
    assert api.job(timed_out.value.job_id)["status"]["phase"] == "Running"
    assert mesh_state(api) == ("Upgrading", SOURCE)
    assert meshup.clock()["now"] > before
