"""A peer under the same load: moto's server answering EKS ``DescribeCluster`` for one cluster.

moto is the offline stand-in people use for AWS the way meshup stands in for Huawei Cloud, so its
server answering the nearest request (read one cluster's description, signed with SigV4) is the
peer: wrk loads it, meshup's mesh-job GET (``meshup serve`` defaults, AK/SK) and the bare ASGI
app in the same run, with the same connections and duration. moto is a benchmark-only
dependency (``pip install -e '.[bench]'``); it runs as its users run it (``moto_server``).

    python bench/peer.py --duration 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.mesh_job import (  # noqa: E402
    BARE,
    Result,
    Target,
    Variant,
    free_port,
    meshup_targets,
    start_meshup,
    wait_healthy,
    wrk,
)

CLUSTER = "c1"


def moto_target(processes: list[subprocess.Popen[bytes]]) -> Target:
    """moto_server with one EKS cluster; the DescribeCluster request, signed once with SigV4."""
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    port = free_port()
    server = subprocess.Popen(
        [shutil.which("moto_server") or "moto_server", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    processes.append(server)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(f"{base}/moto-api/", server)
    credentials = Credentials("AKIDBENCH0000000000", "bench-secret")
    eks = boto3.client(
        "eks",
        region_name="us-east-1",
        endpoint_url=base,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
    )
    eks.create_cluster(
        name=CLUSTER,
        roleArn="arn:aws:iam::123456789012:role/eks",
        resourcesVpcConfig={"subnetIds": ["subnet-1"]},
    )
    request = AWSRequest(method="GET", url=f"{base}/clusters/{CLUSTER}")
    SigV4Auth(credentials, "eks", "us-east-1").add_auth(request)
    headers = dict(request.headers.items())
    check = httpx.get(f"{base}/clusters/{CLUSTER}", headers=headers)
    assert check.status_code == 200 and check.json()["cluster"]["name"] == CLUSTER, check.text
    return Target("moto_server, EKS DescribeCluster", f"{base}/clusters/{CLUSTER}", headers, server.pid)


def run(duration: int, connections: int, rounds: int) -> list[Result]:
    work = Path(tempfile.mkdtemp(prefix="meshup-peer-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        variant = Variant("meshup", ROOT / "src")
        servers, job_id = start_meshup(
            variant, f"sqlite:///{work / 'meshup.db'}", 1000, work, processes, [True]
        )
        meshup, body = meshup_targets(variant, servers[0], job_id, 1000)
        body_file = work / "body.json"
        body_file.write_bytes(body)
        bare_port = free_port()
        bare = subprocess.Popen(
            [*BARE, "--port", str(bare_port)],
            env={**os.environ, "BENCH_BODY_FILE": str(body_file), "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(bare)
        wait_healthy(f"http://127.0.0.1:{bare_port}/", bare)
        path = meshup[0].url[meshup[0].url.index("/v1/") :]
        targets = [
            Target("bare ASGI, same bytes", f"http://127.0.0.1:{bare_port}{path}", {}, bare.pid),
            meshup[0],
            moto_target(processes),
        ]
        for target in targets:
            wrk(target.url, target.headers, 2, connections, "warm-up", target.pid)
        measured: dict[str, list[Result]] = {target.label: [] for target in targets}
        for _round in range(rounds):
            for target in targets:
                measured[target.label].append(
                    wrk(target.url, target.headers, duration, connections, target.label, target.pid)
                )
        return [sorted(found, key=lambda r: r.rps)[len(found) // 2] for found in measured.values()]
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is required (apt-get install wrk)")
    if shutil.which("moto_server") is None:
        sys.exit("moto is required: pip install -e '.[bench]'")
    bare, meshup, moto = run(args.duration, args.connections, args.rounds)
    print(f"{'':34} {'req/s':>9} {'p99':>9} {'vs bare':>8} {'CPU/req':>8}")
    for result in (bare, meshup, moto):
        cpu = "-" if result.cpu_us is None else f"{result.cpu_us:.0f}us"
        print(f"{result.label:34} {result.rps:>9.0f} {result.p99:>9} {result.rps / bare.rps:>8.0%} {cpu:>8}")
    print(f"meshup mesh-job GET / moto DescribeCluster: {meshup.rps / moto.rps:.1f}x")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "benchmark": "peer",
                    "results": [
                        {
                            "label": r.label,
                            "rps": round(r.rps),
                            "p99": r.p99,
                            "vs_bare": round(r.rps / bare.rps, 3),
                        }
                        for r in (bare, meshup, moto)
                    ],
                    "meshup_vs_moto": round(meshup.rps / moto.rps, 2),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
