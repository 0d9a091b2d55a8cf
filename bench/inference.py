"""bench/inference: llama.cpp's server called directly and through dockyard's model endpoint.

Same client (httpx), same request, interleaved in one run: the added latency (p50, p99) of short
Chat Completions (one token) and the time-to-first-token overhead of streamed ones, through
`{project}/openai/v1/chat/completions` on a deployment of the real Gemma 3 270M. Also, for the record,
Responses on the same model straight through and translated (a chat-only connection).

    .venv/bin/python bench/inference.py [--requests 200]

Writes bench/results/inference.json. Targets (issue 9): p50 <= 2 ms added, TTFT overhead <= 2 ms.
The model's own time varies by a few milliseconds from call to call, so the figures are medians of
many interleaved pairs; dockyard's side is HTTPS (as clients use it), the direct side plain HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _setup import ROOT, write_result
from support.llama import LlamaServer, require_llama
from support.process import DockyardProcess, dockyard_command

PROMPT = [{"role": "user", "content": "Reply with one word: hello."}]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def one(client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]) -> float:
    started = time.perf_counter()
    answer = await client.post(url, json=body, headers=headers)
    answer.raise_for_status()
    return time.perf_counter() - started


async def first_token(client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]) -> float:
    started = time.perf_counter()
    elapsed = None
    async with client.stream("POST", url, json={**body, "stream": True}, headers=headers) as answer:
        answer.raise_for_status()
        async for line in answer.aiter_lines():  # read to the end, timing the first event
            if elapsed is None and line.startswith("data:"):
                elapsed = time.perf_counter() - started
    assert elapsed is not None, "no event arrived"
    return elapsed


async def pairs(client: httpx.AsyncClient, measure: Any, direct: tuple[str, dict[str, Any]],
                gateway: tuple[str, dict[str, Any]], headers: dict[str, str], count: int) -> tuple[list[float], ...]:
    direct_times, gateway_times = [], []
    for _ in range(count):
        direct_times.append(await measure(client, direct[0], direct[1], {}))
        gateway_times.append(await measure(client, gateway[0], gateway[1], headers))
    return direct_times, gateway_times


async def measure(llama: LlamaServer, endpoint: str, headers: dict[str, str], verify: ssl.SSLContext,
                  requests: int) -> dict[str, float]:
    chat = {"messages": PROMPT, "max_tokens": 1, "temperature": 0}
    stream = {"messages": PROMPT, "max_tokens": 8, "temperature": 0}
    responses = {"input": "Reply with one word: hello.", "max_output_tokens": 1, "temperature": 0}
    direct_chat = (f"{llama.base_url}/chat/completions", {**chat, "model": llama.model})
    gateway_chat = (f"{endpoint}/openai/v1/chat/completions", {**chat, "model": "bench"})
    async with httpx.AsyncClient(verify=verify, timeout=120) as client:
        await pairs(client, one, direct_chat, gateway_chat, headers, 20)  # warm: connections, tokens, caches
        direct, gateway = await pairs(client, one, direct_chat, gateway_chat, headers, requests)
        direct_ttft, gateway_ttft = await pairs(
            client, first_token, (direct_chat[0], {**stream, "model": llama.model}),
            (gateway_chat[0], {**stream, "model": "bench"}), headers, max(20, requests // 4))
        direct_responses, gateway_responses = await pairs(
            client, one, (f"{llama.base_url}/responses", {**responses, "model": llama.model}),
            (f"{endpoint}/openai/v1/responses", {**responses, "model": "bench"}), headers, max(20, requests // 4))
        _, translated = await pairs(
            client, one, (f"{llama.base_url}/responses", {**responses, "model": llama.model}),
            (f"{endpoint}/openai/v1/responses", {**responses, "model": "bench-chat-only"}), headers,
            max(20, requests // 4))
    ms = 1000.0
    return {
        "direct_p50_ms": statistics.median(direct) * ms,
        "gateway_p50_ms": statistics.median(gateway) * ms,
        "added_p50_ms": (statistics.median(gateway) - statistics.median(direct)) * ms,
        "added_p99_ms": (percentile(gateway, 0.99) - percentile(direct, 0.99)) * ms,
        "paired_added_p50_ms": statistics.median(g - d for g, d in zip(gateway, direct, strict=True)) * ms,
        "direct_ttft_ms": statistics.median(direct_ttft) * ms,
        "ttft_overhead_ms": (statistics.median(gateway_ttft) - statistics.median(direct_ttft)) * ms,
        "responses_added_p50_ms": (statistics.median(gateway_responses) - statistics.median(direct_responses)) * ms,
        "translated_responses_added_p50_ms": (statistics.median(translated) - statistics.median(direct_responses)) * ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "inference.json")
    parser.add_argument("--poll", type=int, default=0, help="llama-server's --poll (its own default is 50: its "
                        "threads spin that long for work, taking the CPU dockyard's relay needs on 2 cores)")
    args = parser.parse_args()
    require_llama()

    with LlamaServer(extra_args=("--poll", str(args.poll))) as llama, tempfile.TemporaryDirectory() as home_dir:
        home = Path(home_dir) / "home"
        server = DockyardProcess(home=home, extra_args=("--no-engine",)).start()
        try:
            for name, extra in (("bench", ()), ("bench-chat-only", ("--chat-only",))):
                subprocess.run(dockyard_command("model", "add", name, "--base-url", llama.base_url, "--model",
                                                llama.model, *extra, "--home", str(home)), check=True)
            env = server.env()
            verify = ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"])
            token = httpx.get(env["IDENTITY_ENDPOINT"], verify=verify,
                              params={"api-version": "2019-08-01", "resource": "https://ai.azure.com"},
                              headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]}).json()["access_token"]
            assert server.process is not None
            cpu_before = cpu_seconds(server.process.pid)
            figures = asyncio.run(measure(llama, server.endpoint, {"Authorization": f"Bearer {token}"}, verify,
                                          args.requests))
            # dockyard's own CPU per relayed call (all the calls above went through it once each).
            calls = 20 + args.requests + 3 * max(20, args.requests // 4)
            figures["dockyard_cpu_ms_per_call"] = (cpu_seconds(server.process.pid) - cpu_before) / calls * 1000
        finally:
            server.stop()

    result = {
        "bench": "inference",
        "what": "Gemma 3 270M on llama.cpp's server: direct vs through dockyard's model endpoint, interleaved",
        "requests": args.requests,
        "llama_poll": args.poll,
        **{k: round(v, 3) for k, v in figures.items()},
        "targets": {"added_p50_ms": 2, "ttft_overhead_ms": 2},
    }
    write_result(args.out, result)
    for key, value in result.items():
        if key.endswith("_ms"):
            print(f"{key:>34}: {value}")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
