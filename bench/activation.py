"""bench/activation: create_version → `active`, against `podman run` → `/readiness`, same image.

Both sides start the same cached echo-agent image (built on Microsoft's hosting adapter) with the same
CPU, memory and hardening, and stop the clock when the agent answers /readiness: dockyard's side when
the SDK sees `status == "active"`, the direct side when /readiness first answers 200. Runs are
interleaved so machine noise hits both alike; the figure that matters is the ratio of the medians.

    .venv/bin/python bench/activation.py [--runs 7]

Writes bench/results/activation.json.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

import httpx
from _setup import ROOT, echo_agent_on_dockyard, write_result

TARGET_RATIO = 1.15
POLL_SECONDS = 0.02


def time_dockyard(client, name: str, image: str) -> float:  # type: ignore[no-untyped-def]
    from azure.ai.projects.models import ContainerConfiguration, HostedAgentDefinition, ProtocolVersionRecord

    definition = HostedAgentDefinition(
        cpu="1", memory="2Gi", container_configuration=ContainerConfiguration(image=image),
        protocol_versions=[ProtocolVersionRecord(protocol="responses", version="2.0.0")],
    )
    started = time.perf_counter()
    version = client.agents.create_version(agent_name=name, definition=definition)
    while True:
        current = client.agents.get_version(agent_name=name, agent_version=version.version)
        if current.status == "active":
            elapsed = time.perf_counter() - started
            break
        if current.status == "failed":
            raise RuntimeError(f"activation failed: {current['error']}")
        time.sleep(POLL_SECONDS)
    client.agents.delete(agent_name=name)
    return elapsed


def time_direct(image: str) -> float:
    started = time.perf_counter()
    container = subprocess.run(
        ["podman", "run", "-d", "--cpus", "1", "--memory", "2g", "--memory-swap", "2g", "--read-only",
         "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
         "-e", "PORT=8088", "-p", "127.0.0.1::8088", image],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    try:
        port = subprocess.run(["podman", "port", container, "8088/tcp"], check=True, capture_output=True,
                              text=True).stdout.strip().rsplit(":", 1)[-1]
        with httpx.Client(timeout=2) as http:
            while True:
                try:
                    if http.get(f"http://127.0.0.1:{port}/readiness").status_code == 200:
                        return time.perf_counter() - started
                except httpx.HTTPError:
                    pass
                time.sleep(POLL_SECONDS)
    finally:
        subprocess.run(["podman", "rm", "-f", container], capture_output=True)


def wait_until_gone(name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = subprocess.run(["podman", "ps", "-aq", "--filter", f"label=io.dockyard.agent={name}"],
                             capture_output=True, text=True).stdout.strip()
        if not out:
            return
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "activation.json")
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("at least 5 runs")

    with echo_agent_on_dockyard() as (server, image, engine_url):
        subprocess.run(["podman", "pull", "--tls-verify=false", "-q", image], check=True, capture_output=True)
        from azure.ai.projects import AIProjectClient
        from azure.identity import DefaultAzureCredential

        client = AIProjectClient(endpoint=server.endpoint, credential=DefaultAzureCredential())
        time_dockyard(client, "bench-warmup", image)  # token, connections, image cache
        wait_until_gone("bench-warmup")
        time_direct(image)
        dockyard_runs, direct_runs = [], []
        for run in range(args.runs):
            name = f"bench-{run}"
            dockyard_runs.append(time_dockyard(client, name, image))
            wait_until_gone(name)
            direct_runs.append(time_direct(image))
            print(f"run {run + 1}: dockyard {dockyard_runs[-1]:.3f}s  podman run {direct_runs[-1]:.3f}s", flush=True)

    dockyard_median = statistics.median(dockyard_runs)
    direct_median = statistics.median(direct_runs)
    ratio = dockyard_median / direct_median
    write_result(args.out, {
        "bench": "activation",
        "what": "create_version -> active (dockyard) vs podman run -> /readiness 200 (direct), same cached image",
        "runs": args.runs,
        "dockyard_seconds": dockyard_runs,
        "direct_seconds": direct_runs,
        "dockyard_median_seconds": round(dockyard_median, 4),
        "direct_median_seconds": round(direct_median, 4),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
        "engine": engine_url,
    })
    print(f"\nmedian: dockyard {dockyard_median:.3f}s, podman run {direct_median:.3f}s, "
          f"ratio {ratio:.2f} (target <= {TARGET_RATIO}) -> {args.out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
