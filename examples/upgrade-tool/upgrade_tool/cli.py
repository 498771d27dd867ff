"""``python -m upgrade_tool --mesh ID --target VERSION``: AK/SK from the SDK's environment variables.

Exit codes: 0 the mesh runs the target version, 1 the upgrade failed (rolled back or not), 2 a job
did not end in time, 3 the service refused a call (or could not be reached).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from upgrade_tool.api import AsmApi, AsmError, client_for
from upgrade_tool.upgrade import JobTimeout, StepRun, Upgrader


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upgrade_tool", description="Canary-upgrade an ASM mesh.")
    parser.add_argument("--endpoint", default=os.environ.get("ASM_ENDPOINT", "http://127.0.0.1:8080"))
    parser.add_argument("--project-id", default=os.environ.get("HUAWEICLOUD_SDK_PROJECT_ID", ""))
    parser.add_argument("--mesh", help="the mesh id to upgrade")
    parser.add_argument("--target", help="the version to upgrade to")
    parser.add_argument("--resume", metavar="TASK_ID", help="carry on with an existing upgrade task")
    parser.add_argument("--batch-size", type=int, default=2, help="namespaces per data-plane step")
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds one step may take")
    return parser


def _print_step(run: StepRun) -> None:
    where = f" [{', '.join(run.namespaces)}]" if run.namespaces else ""
    why = f": {run.reason}" if run.reason else ""
    print(f"{run.step}{where}: {run.phase}{why}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.resume and not (args.mesh and args.target):
        parser.error("give --mesh and --target, or --resume TASK_ID")
    ak, sk = os.environ.get("HUAWEICLOUD_SDK_AK"), os.environ.get("HUAWEICLOUD_SDK_SK")
    if not (ak and sk and args.project_id):
        parser.error("set HUAWEICLOUD_SDK_AK, HUAWEICLOUD_SDK_SK and --project-id")
    upgrader = Upgrader(
        AsmApi(client_for(args.endpoint, ak, sk, args.project_id)),
        batch_size=args.batch_size,
        poll_interval=args.poll_interval,
        timeout=args.timeout,
        on_step=_print_step,
    )
    try:
        result = upgrader.resume(args.resume) if args.resume else upgrader.upgrade(args.mesh, args.target)
    except AsmError as error:
        print(f"upgrade_tool: {error}", file=sys.stderr)
        return 3
    except JobTimeout as error:
        print(f"upgrade_tool: {error}", file=sys.stderr)
        return 2
    print(f"task {result.task_id}: {result.outcome}")
    return result.exit_code
