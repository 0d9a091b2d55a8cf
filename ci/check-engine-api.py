#!/usr/bin/env python3
"""Check which docker-SDK `containers.run` options the engine's Docker-compatible API honours here.

    .venv/bin/python ci/check-engine-api.py [ENGINE_URL]     # default: $DOCKER_HOST or podman's socket

Needs the `docker` package (a dev dependency) and the base image from ci/build-base-image.sh. Each option
is tried on its own container and checked both in `inspect` and from inside the container; then the
combination dockyard uses, and what the engine reports when a container is OOM-killed. Prints one line per
check and exits 1 if a check that dockyard relies on fails. Removes every container it made.
"""

from __future__ import annotations

import os
import sys
import time

import docker
import docker.errors
import docker.types

IMAGE = os.environ.get("DOCKYARD_BASE_IMAGE", "localhost/dockyard-ci/debian-python:bookworm")
LABEL = {"io.dockyard.check-engine-api": "1"}
# Naming any ulimit through the API replaces podman's configured defaults, so always name both.
ULIMITS = [docker.types.Ulimit(name="nofile", soft=4096, hard=4096),
           docker.types.Ulimit(name="nproc", soft=2048, hard=2048)]
MiB = 1024 * 1024
failures: list[str] = []


def report(name: str, ok: bool, detail: str = "", required: bool = True) -> None:
    mark = "ok  " if ok else ("FAIL" if required else "note")
    print(f"{mark} {name}{': ' + detail if detail else ''}")
    if not ok and required:
        failures.append(name)


def run(client: docker.DockerClient, script: str, **options: object) -> tuple[dict, str]:
    container = client.containers.run(IMAGE, ["sh", "-c", script], detach=True,
                                      labels={**LABEL, **options.pop("labels", {})}, **options)  # type: ignore[arg-type]
    try:
        container.wait(timeout=60)
        container.reload()
        return container.attrs, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DOCKER_HOST", "unix:///run/podman/podman.sock")
    client = docker.DockerClient(base_url=url, timeout=120)
    report("ping", client.ping(), f"{url}, {client.version().get('Version')} API {client.version().get('ApiVersion')}")

    attrs, out = run(client, "grep -E 'open files|processes' /proc/self/limits")
    report("default ulimits (containers.conf)", bool(attrs["HostConfig"]["Ulimits"]), " | ".join(out.split("\n")[:2]))

    attrs, out = run(client, "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max",
                     nano_cpus=500_000_000, ulimits=ULIMITS)
    report("nano_cpus", attrs["HostConfig"]["NanoCpus"] == 500_000_000, f"CpuQuota={attrs['HostConfig'].get('CpuQuota')}")

    attrs, _ = run(client, "true", mem_limit=256 * MiB, ulimits=ULIMITS)
    report("mem_limit alone", attrs["HostConfig"]["Memory"] == 256 * MiB,
           f"MemorySwap={attrs['HostConfig']['MemorySwap']} (docker semantics: 2x memory, i.e. extra swap)")
    attrs, _ = run(client, "true", mem_limit=256 * MiB, memswap_limit=256 * MiB, ulimits=ULIMITS)
    report("memswap_limit == mem_limit (no swap)", attrs["HostConfig"]["MemorySwap"] == 256 * MiB)

    attrs, out = run(client, "grep -E 'open files|processes' /proc/self/limits", ulimits=ULIMITS)
    report("ulimits nofile+nproc", "4096" in out and "2048" in out, " | ".join(out.split("\n")[:2]))
    try:
        run(client, "true", ulimits=[docker.types.Ulimit(name="nproc", soft=1024, hard=1024)])
        report("ulimits nproc alone", True, required=False)
    except docker.errors.APIError as exc:
        report("ulimits nproc alone (expected to fail: nofile falls back to 1048576)", False,
               str(exc.explanation)[-120:], required=False)

    attrs, out = run(client, "grep -E 'CapEff|NoNewPrivs' /proc/self/status", cap_drop=["ALL"],
                     security_opt=["no-new-privileges"], ulimits=ULIMITS)
    report("cap_drop=ALL", "CapEff:\t0000000000000000" in out, f"CapDrop={attrs['HostConfig']['CapDrop']}")
    report("security_opt no-new-privileges", "NoNewPrivs:\t1" in out)

    attrs, out = run(client, "touch /x 2>/dev/null && echo root-rw || echo root-ro; touch /tmp/x && echo tmp-rw",
                     read_only=True, tmpfs={"/tmp": ""}, ulimits=ULIMITS)
    report("read_only + tmpfs /tmp", "root-ro" in out and "tmp-rw" in out,
           f"Tmpfs={sorted((attrs['HostConfig']['Tmpfs'] or {}).keys())}")

    attrs, _ = run(client, "true", labels={"io.dockyard.agent": "x"}, ulimits=ULIMITS)
    report("labels", attrs["Config"]["Labels"].get("io.dockyard.agent") == "x")

    container = client.containers.run(IMAGE, ["python3", "-m", "http.server", "8088"], detach=True, labels=LABEL,
                                      ports={"8088/tcp": ("127.0.0.1", None)}, ulimits=ULIMITS)
    try:
        container.reload()
        binding = container.ports.get("8088/tcp") or [{}]
        port = binding[0].get("HostPort")
        import urllib.request
        ok = False
        for _ in range(50):
            try:
                ok = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).status == 200
                break
            except OSError:
                time.sleep(0.1)
        report("ports 8088/tcp -> 127.0.0.1:<random>", ok, f"{binding}")
    finally:
        container.remove(force=True)

    attrs, _ = run(client, "python3 -c \"b = [b'x' * (16 << 20) for _ in range(64)]\"",
                   mem_limit=128 * MiB, memswap_limit=128 * MiB, ulimits=ULIMITS)
    state = attrs["State"]
    report("OOM kill happens (exit 137)", state["ExitCode"] == 137, f"ExitCode={state['ExitCode']}")
    report("State.OOMKilled reported", bool(state.get("OOMKilled")),
           "not reported here: treat ExitCode 137 that dockyard did not cause as out-of-memory", required=False)

    print(f"{len(failures)} required check(s) failed: {', '.join(failures)}" if failures else "all required checks passed")
    return 1 if failures else 0


def cleanup() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DOCKER_HOST", "unix:///run/podman/podman.sock")
    client = docker.DockerClient(base_url=url, timeout=120)
    for container in client.containers.list(all=True, filters={"label": "io.dockyard.check-engine-api=1"}):
        container.remove(force=True)  # containers.run leaves a created container behind when start fails


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        cleanup()
