"""Fault rules of simulated clusters (``clusters.faults``), and which one fires for a request.

Each rule is ``{jobType, times, reason, fired, ...extra}``; ``times`` null fires always, otherwise
while ``fired < times``; every firing increments ``fired``:

- plain (no extra key): the step of type ``jobType`` fails with ``reason`` before doing anything.
  Optional ``namespace: <name>`` limits it to that namespace's leaves.
- ``neverReady: true`` with ``jobType: WaitControlPlaneReady``: a revision installed while the
  fault fires never becomes ready (``WaitControlPlaneReady`` fails after its timeout). It is
  consumed by the installation (``InstallControlPlane``), once per revision installed; the revision
  stays stuck until it is uninstalled (a rollback). Optional ``revision: <rev>`` limits it to one
  revision.
- ``workload: <name>`` with ``jobType: RestartWorkloads``: that workload never gets ready after a
  restart, so the batch containing it fails naming it (``reason`` is appended). Optional
  ``namespace``.

The functions take the (mutable) list of rules and count a firing in it.
"""

from __future__ import annotations

from typing import Any

Fault = dict[str, Any]


def _remaining(fault: Fault) -> bool:
    times = fault.get("times")
    return times is None or int(fault.get("fired") or 0) < int(times)


def _fire(fault: Fault) -> None:
    fault["fired"] = int(fault.get("fired") or 0) + 1


def _matches(fault: Fault, job_type: str, namespace: str | None, workload: str | None) -> bool:
    if fault.get("jobType") != job_type or fault.get("neverReady"):
        return False
    if fault.get("workload") != workload:  # plain faults have none; workload faults name one
        return False
    scope = fault.get("namespace")
    if scope is not None and scope != namespace:
        return False
    return _remaining(fault)


def take_plain(faults: list[Fault], job_type: str, namespace: str | None) -> str | None:
    """The reason of a plain fault that fires for a step now (counted), or None."""
    for fault in faults:
        if _matches(fault, job_type, namespace, None):
            _fire(fault)
            return str(fault.get("reason") or f"injected fault in {job_type}")
    return None


def take_workload(faults: list[Fault], namespace: str, workload: str) -> str | None:
    """The reason a restarted workload never gets ready (counted), or None."""
    for fault in faults:
        if _matches(fault, "RestartWorkloads", namespace, workload):
            _fire(fault)
            return str(fault.get("reason") or "injected fault in RestartWorkloads")
    return None


def take_never_ready(faults: list[Fault], revision: str) -> bool:
    """Consume a ``neverReady`` fault for a revision being installed, if one fires."""
    for fault in faults:
        if (
            fault.get("jobType") == "WaitControlPlaneReady"
            and fault.get("neverReady")
            and fault.get("revision") in (None, revision)
            and _remaining(fault)
        ):
            _fire(fault)
            return True
    return False
