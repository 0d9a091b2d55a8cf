"""bench/gateway: the echo agent called directly on its container port and through dockyard.

Same client (httpx), same request, same session, interleaved in one run: added latency (p50, p99) of
sequential requests, throughput at a fixed concurrency, and the time to the first streamed event.

    .venv/bin/python bench/gateway.py [--requests 200] [--concurrency 8]

Writes bench/results/gateway.json. Targets (issue 4): p50 <= 1 ms, p99 <= 5 ms added, throughput
>= 0.9x direct, time-to-first-event overhead <= 2 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import time
from pathlib import Path

import httpx
from _setup import ROOT, echo_agent_on_dockyard, write_result

BODY = {"input": "hello gateway"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def one(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    answer = await client.post(url, json=BODY, headers=headers)
    answer.raise_for_status()
    return time.perf_counter() - started


async def first_event(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    elapsed = None
    async with client.stream("POST", url, json={**BODY, "stream": True}, headers=headers) as answer:
        async for line in answer.aiter_lines():  # read to the end, timing the first event
            if elapsed is None and line.startswith("data:"):
                elapsed = time.perf_counter() - started
    assert elapsed is not None, "no event arrived"
    return elapsed


async def throughput(client: httpx.AsyncClient, url: str, headers: dict[str, str], total: int,
                     concurrency: int) -> float:
    remaining = total
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one(client, url, headers)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - started)


async def measure(direct: str, gateway: str, gateway_headers: dict[str, str], verify: ssl.SSLContext,
                  requests: int, concurrency: int) -> dict[str, object]:
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(verify=verify, timeout=60, limits=limits) as client:
        for _ in range(20):  # warm both paths: connections, tokens, caches
            await one(client, direct, {})
            await one(client, gateway, gateway_headers)
        direct_times, gateway_times = [], []
        for _ in range(requests):
            direct_times.append(await one(client, direct, {}))
            gateway_times.append(await one(client, gateway, gateway_headers))
        direct_ttfe, gateway_ttfe = [], []
        for _ in range(max(10, requests // 10)):
            direct_ttfe.append(await first_event(client, direct, {}))
            gateway_ttfe.append(await first_event(client, gateway, gateway_headers))
        direct_rps, gateway_rps = [], []
        for _ in range(3):
            direct_rps.append(await throughput(client, direct, {}, requests, concurrency))
            gateway_rps.append(await throughput(client, gateway, gateway_headers, requests, concurrency))
    ms = 1000.0
    return {
        "direct_p50_ms": statistics.median(direct_times) * ms,
        "gateway_p50_ms": statistics.median(gateway_times) * ms,
        "added_p50_ms": (statistics.median(gateway_times) - statistics.median(direct_times)) * ms,
        "added_p99_ms": (percentile(gateway_times, 0.99) - percentile(direct_times, 0.99)) * ms,
        "direct_rps": statistics.median(direct_rps),
        "gateway_rps": statistics.median(gateway_rps),
        "throughput_ratio": statistics.median(gateway_rps) / statistics.median(direct_rps),
        "ttfe_overhead_ms": (statistics.median(gateway_ttfe) - statistics.median(direct_ttfe)) * ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gateway.json")
    args = parser.parse_args()

    with echo_agent_on_dockyard() as (server, image, engine_url):
        env = server.env()
        from azure.ai.projects import AIProjectClient
        from azure.ai.projects.models import ContainerConfiguration, HostedAgentDefinition, ProtocolVersionRecord
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
        project = AIProjectClient(endpoint=server.endpoint, credential=credential)
        project.agents.create_version(agent_name="bench-echo", definition=HostedAgentDefinition(
            cpu="1", memory="2Gi", container_configuration=ContainerConfiguration(image=image),
            protocol_versions=[ProtocolVersionRecord(protocol="responses", version="2.0.0")]))
        while project.agents.get_version(agent_name="bench-echo", agent_version="1").status != "active":
            time.sleep(0.2)
        token = credential.get_token("https://ai.azure.com/.default").token
        gateway = f"{server.endpoint}/agents/bench-echo/endpoint/protocols/openai/responses"
        verify = ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"])
        first = httpx.post(gateway, json=BODY, headers={"Authorization": f"Bearer {token}"}, verify=verify, timeout=120)
        first.raise_for_status()
        session = first.headers["x-agent-session-id"]
        headers = {"Authorization": f"Bearer {token}", "x-agent-session-id": session}
        import docker

        client = docker.DockerClient(base_url=engine_url)
        [container] = [c for c in client.containers.list(filters={"label": "io.dockyard.agent=bench-echo"})
                       if c.labels.get("io.dockyard.session") == session]
        port = container.attrs["NetworkSettings"]["Ports"]["8088/tcp"][0]["HostPort"]
        direct = f"http://127.0.0.1:{port}/responses"
        figures = asyncio.run(measure(direct, gateway, headers, verify, args.requests, args.concurrency))

    result = {
        "bench": "gateway",
        "what": "echo agent: direct container port vs through dockyard (same session), interleaved",
        "requests": args.requests,
        "concurrency": args.concurrency,
        **{k: round(v, 3) for k, v in figures.items()},
        "targets": {"added_p50_ms": 1, "added_p99_ms": 5, "throughput_ratio": 0.9, "ttfe_overhead_ms": 2},
    }
    write_result(args.out, result)
    for key, value in result.items():
        if key.endswith(("_ms", "_rps", "_ratio")):
            print(f"{key:>20}: {value}")
    print(f"-> {args.out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
