"""bench/load: many callers at once through the gateway, and many new sessions at once up to the admission limit.

Two parts, one dockyard driving the engine, the echo agent (Microsoft's responses adapter) as the workload:

1. **Sustained load.** `--callers` concurrent callers (64) send requests back to back for `--seconds` on one
   session, alternately straight to the container's port and through dockyard (same client, same request,
   `--rounds` alternations so both paths see the same machine). Figures: requests, errors, p50/p99 latency and
   throughput for each path; the ratio gateway/direct.
2. **Concurrent new sessions.** Batches of N new named sessions opened at once (`--sessions 4,8,16`; each
   sandbox asks for 1Gi, the least Foundry allows, so dockyard's default memory budget, 80% of the machine,
   bounds N), each batch's time until every one answered, errors, then the batch's sessions deleted. The
   largest N with 0 errors is what this machine sustains. Then the admission limit: an agent whose sandboxes
   ask for `--big-memory` each, so dockyard's memory budget admits only a few, and `--past-limit` more
   sessions than that asked for at once: the sessions inside the budget answer, the rest get 429 with
   Retry-After, and the budget holds (the live sandboxes' memory never adds up past it, read from the
   operator's admission route).

    .venv/bin/python bench/load.py [--callers 64] [--seconds 10] [--rounds 2] [--sessions 4,8,16]

Writes bench/results/load.json. Targets (issue 13): 0 errors at 64 callers; the admission limit holding.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _setup import ROOT, write_result
from support.engine import FIXTURE_IMAGES, docker_client, remove_dockyard_leftovers, require_engine
from support.images import build_image, ensure_base_image, push_image
from support.process import DockyardProcess
from support.registry import Registry

BODY = {"input": "hello load"}
GI = 1024**3


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def figures(self) -> dict[str, float]:
        ms = 1000.0
        return {
            "requests": len(self.latencies) + len(self.errors),
            "errors": len(self.errors),
            "p50_ms": statistics.median(self.latencies) * ms if self.latencies else float("nan"),
            "p99_ms": percentile(self.latencies, 0.99) * ms if self.latencies else float("nan"),
            "rps": len(self.latencies) / self.seconds,
            "first_errors": sorted(set(self.errors))[:5],
        }


async def sustain(client: httpx.AsyncClient, url: str, headers: dict[str, str], callers: int, seconds: float,
                  tally: Tally) -> None:
    """`callers` loops posting back to back until `seconds` have passed."""
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                answer = await client.post(url, json=BODY, headers=headers)
                if answer.status_code != 200:
                    tally.errors.append(f"{answer.status_code} {answer.text[:200]}")
                    continue
            except httpx.HTTPError as exc:
                tally.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            tally.latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    tally.seconds += time.perf_counter() - started


async def load(direct: str, gateway: str, headers: dict[str, str], verify: ssl.SSLContext, callers: int,
               seconds: float, rounds: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=callers * 2, max_keepalive_connections=callers * 2)
    direct_tally, gateway_tally = Tally(), Tally()
    async with httpx.AsyncClient(verify=verify, timeout=120, limits=limits) as client:
        warm = Tally()
        await sustain(client, direct, {}, callers, 1.0, warm)
        await sustain(client, gateway, headers, callers, 1.0, warm)
        for _ in range(rounds):
            await sustain(client, direct, {}, callers, seconds / rounds, direct_tally)
            await sustain(client, gateway, headers, callers, seconds / rounds, gateway_tally)
    direct_figures, gateway_figures = direct_tally.figures(), gateway_tally.figures()
    return {
        "direct": direct_figures,
        "gateway": gateway_figures,
        "throughput_ratio": gateway_figures["rps"] / direct_figures["rps"] if direct_figures["rps"] else float("nan"),
        "added_p50_ms": gateway_figures["p50_ms"] - direct_figures["p50_ms"],
        "added_p99_ms": gateway_figures["p99_ms"] - direct_figures["p99_ms"],
    }


async def open_sessions(client: httpx.AsyncClient, url: str, token: str, names: list[str]) -> dict[str, Any]:
    """Open every named session at once; how long until all answered, and what each answered."""
    statuses: dict[str, int] = {}
    retry_after: list[str] = []
    errors: list[str] = []

    async def one(name: str) -> None:
        try:
            answer = await client.post(url, json={**BODY, "agent_session_id": name},
                                       headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            return
        statuses[name] = answer.status_code
        if answer.status_code == 429:
            retry_after.append(answer.headers.get("retry-after", ""))
        elif answer.status_code != 200:
            errors.append(f"{name}: {answer.status_code} {answer.text[:200]}")

    started = time.perf_counter()
    await asyncio.gather(*(one(name) for name in names))
    return {
        "seconds": time.perf_counter() - started,
        "answered": sum(1 for status in statuses.values() if status == 200),
        "refused_429": sum(1 for status in statuses.values() if status == 429),
        "retry_after_present": all(retry_after),
        "errors": errors,
    }


async def delete_sessions(client: httpx.AsyncClient, sessions_url: str, token: str, names: list[str]) -> int:
    """Delete the batch's sessions; how many deletes answered 204."""
    answers = await asyncio.gather(*(client.delete(f"{sessions_url}/{name}", params={"api-version": "v1"},
                                                   headers={"Authorization": f"Bearer {token}"}) for name in names))
    return sum(1 for answer in answers if answer.status_code == 204)


@contextmanager
def dockyard_with_echo(engine_url: str) -> Iterator[tuple[DockyardProcess, str]]:
    ensure_base_image()
    local = build_image("echo-agent", "bench", FIXTURE_IMAGES / "echo-agent")
    with Registry() as registry, tempfile.TemporaryDirectory() as home:
        image = f"{registry.host}/echo-agent:bench"
        push_image(local, image)
        # Room for the sweep's largest batch on one agent; the memory budget stays dockyard's default (80%).
        server = DockyardProcess(home=Path(home) / "home", extra_args=("--max-sessions-per-agent", "128")).start()
        try:
            yield server, image
        finally:
            if server.process and server.process.poll() is None:
                server.stop()
            remove_dockyard_leftovers(server.home)


def deploy(project: Any, name: str, image: str, memory: str, cpu: str = "0.5") -> None:
    from azure.ai.projects.models import ContainerConfiguration, HostedAgentDefinition, ProtocolVersionRecord

    project.agents.create_version(agent_name=name, definition=HostedAgentDefinition(
        cpu=cpu, memory=memory, container_configuration=ContainerConfiguration(image=image),
        protocol_versions=[ProtocolVersionRecord(protocol="responses", version="2.0.0")]))
    deadline = time.monotonic() + 180
    while (version := project.agents.get_version(agent_name=name, agent_version="1")).status != "active":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not become active: {version.status} {version.get('error')}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0, help="per path, split over the rounds")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sessions", default="4,8,16", help="batch sizes of concurrent new sessions")
    parser.add_argument("--big-memory", default="4Gi", help="memory of the admission part's sandboxes")
    parser.add_argument("--past-limit", type=int, default=4, help="sessions asked for beyond what fits")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = parser.parse_args()
    engine_url = os.environ.setdefault("DOCKER_HOST", require_engine())

    with dockyard_with_echo(engine_url) as (server, image):
        env = server.env()
        os.environ.update(env)
        from azure.ai.projects import AIProjectClient
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
        project = AIProjectClient(endpoint=server.endpoint, credential=credential)
        token = credential.get_token("https://ai.azure.com/.default").token
        verify = ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"])
        print("deploying load-echo…", flush=True)
        deploy(project, "load-echo", image, "1Gi", cpu="2")
        gateway = f"{server.endpoint}/agents/load-echo/endpoint/protocols/openai/responses"
        first = httpx.post(gateway, json=BODY, headers={"Authorization": f"Bearer {token}"}, verify=verify,
                           timeout=120)
        first.raise_for_status()
        session = first.headers["x-agent-session-id"]
        client = docker_client(engine_url)
        [container] = [c for c in client.containers.list(filters={"label": "io.dockyard.agent=load-echo"})
                       if c.labels.get("io.dockyard.session") == session]
        port = container.attrs["NetworkSettings"]["Ports"]["8088/tcp"][0]["HostPort"]
        client.close()
        print(f"sustained load: {args.callers} callers, {args.seconds:g} s a path…", flush=True)
        sustained = asyncio.run(load(f"http://127.0.0.1:{port}/responses", gateway,
                                     {"Authorization": f"Bearer {token}", "x-agent-session-id": session},
                                     verify, args.callers, args.seconds, args.rounds))

        admission_url = f"{server.endpoint}/admission?api-version=v1"

        async def settled(http: httpx.AsyncClient) -> float:
            """Seconds until deleted sessions' sandboxes are gone from the budget (two stay: the version's own
            and the load session); each is stopped with the engine's grace period."""
            started = time.monotonic()
            while time.monotonic() < started + 600:
                used = (await http.get(admission_url, headers={"Authorization": f"Bearer {token}"})).json()
                if used["sandboxes"] <= 2:
                    return time.monotonic() - started
                await asyncio.sleep(0.5)
            raise RuntimeError(f"deleted sessions' sandboxes still count: {used}")

        async def sweep() -> list[dict[str, Any]]:
            batches = []
            sessions_url = f"{server.endpoint}/agents/load-echo/endpoint/sessions"
            async with httpx.AsyncClient(verify=verify, timeout=300,
                                         limits=httpx.Limits(max_connections=256)) as http:
                for size in (int(part) for part in args.sessions.split(",")):
                    names = [f"load-{size}-{index}" for index in range(size)]
                    print(f"{size} new sessions at once…", flush=True)
                    batch = {"sessions": size, **await open_sessions(http, gateway, token, names)}
                    batches.append(batch)
                    batch["deleted"] = await delete_sessions(http, sessions_url, token, names)
                    batch["released_in_seconds"] = await settled(http)
            return batches

        batches = asyncio.run(sweep())

        print(f"admission: sandboxes of {args.big_memory} each…", flush=True)
        deploy(project, "load-big", image, args.big_memory)
        admission = httpx.get(admission_url, headers={"Authorization": f"Bearer {token}"}, verify=verify, timeout=30)
        admission.raise_for_status()
        budget = admission.json()
        big = int(float(args.big_memory.removesuffix("Gi")) * GI)
        free = (budget["memory"]["budget_bytes"] or 0) - budget["memory"]["used_bytes"]
        fits = max(0, free // big)
        names = [f"big-{index}" for index in range(fits + args.past_limit)]

        async def past_the_limit() -> dict[str, Any]:
            async with httpx.AsyncClient(verify=verify, timeout=300,
                                         limits=httpx.Limits(max_connections=64)) as http:
                outcome = await open_sessions(
                    http, f"{server.endpoint}/agents/load-big/endpoint/protocols/openai/responses", token, names)
                after = (await http.get(admission_url, headers={"Authorization": f"Bearer {token}"})).json()
                return {**outcome, "budget_bytes": after["memory"]["budget_bytes"],
                        "used_bytes_after": after["memory"]["used_bytes"]}

        limit = {"sandbox_memory": args.big_memory, "fit_by_budget": fits, "asked": len(names),
                 **asyncio.run(past_the_limit())}
        limit["held"] = (limit["answered"] <= fits and limit["used_bytes_after"] <= limit["budget_bytes"]
                         and not limit["errors"])

    sustained_ok = [batch["sessions"] for batch in batches
                    if not batch["errors"] and batch["answered"] == batch["sessions"]]
    result = {
        "bench": "load",
        "what": "echo agent: many callers on one session (direct vs gateway, alternated); concurrent new sessions; "
                "the admission limit",
        "callers": args.callers,
        "sustained": sustained,
        "new_sessions": batches,
        "largest_batch_without_errors": max(sustained_ok, default=0),
        "admission": limit,
        "targets": {"gateway_errors": 0, "admission_held": True},
    }
    write_result(args.out, result)
    direct, through = sustained["direct"], sustained["gateway"]
    print(f"{'':>10} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for label, figures in (("direct", direct), ("gateway", through)):
        print(f"{label:>10} {figures['requests']:>9} {figures['errors']:>7} {figures['p50_ms']:>8.1f} "
              f"{figures['p99_ms']:>8.1f} {figures['rps']:>8.1f}")
    print(f"throughput ratio gateway/direct: {sustained['throughput_ratio']:.3f}")
    for batch in batches:
        print(f"{batch['sessions']:>3} new sessions: all answered in {batch['seconds']:.1f} s, "
              f"{batch['answered']} ok, {len(batch['errors'])} errors; {batch['deleted']} deleted, sandboxes gone "
              f"{batch['released_in_seconds']:.1f} s later")
    print(f"admission: {limit['fit_by_budget']} fit, {limit['asked']} asked: {limit['answered']} answered, "
          f"{limit['refused_429']} refused with 429 (Retry-After on all: {limit['retry_after_present']}); "
          f"held: {limit['held']}")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
