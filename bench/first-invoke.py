"""bench/first-invoke: from `dockyard init` to the first answer of `dockyard invoke`, with a cached base image.

The walkthrough as a newcomer types it, each step a real `dockyard` process against a running dockyard
(started before the clock, as `dockyard up` would be): init → build (pushed to a local registry) → deploy
(waits for active) → invoke, clock stopped when invoke has printed the answer. Each run is a new project
(a new name), so its last layers are built anew; the base image and the pinned requirements' layer are in
the engine's cache, as they are from the second project on.

The direct baseline does the same by hand, without dockyard: `podman build` of an identical fresh project,
`podman run`, and POST /responses until it answers. Runs are interleaved; the ratio of medians is the figure.

    .venv/bin/python bench/first-invoke.py [--runs 3]

Writes bench/results/first-invoke.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _setup import ROOT, engine_dockyard, ensure_base_image, require_engine, write_result
from support.images import BASE_IMAGE, host_ca_bundle  # tests/ is on sys.path via _setup
from support.process import free_port
from support.registry import Registry

from dockyard.cli.scaffold import scaffold


def dockyard(*args: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "dockyard", *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"dockyard {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def time_dockyard(root: Path, name: str, registry: str, env: dict[str, str]) -> tuple[float, dict[str, float]]:
    steps: dict[str, float] = {}
    started = time.perf_counter()
    mark = started
    for step, args, cwd in (
        ("init", ("init", name, "--base-image", BASE_IMAGE, "--registry", registry), root),
        ("build", ("build",), root / name),
        ("deploy", ("deploy",), root / name),
        ("invoke", ("invoke", name, "hello"), root / name),
    ):
        out = dockyard(*args, cwd=cwd, env=env)
        now = time.perf_counter()
        steps[step] = round(now - mark, 3)
        mark = now
    assert out == "echo: hello\n", out
    return time.perf_counter() - started, steps


def time_direct(root: Path, name: str) -> float:
    project = root / name
    scaffold(project, name, "responses", base_image=BASE_IMAGE)  # not timed: `dockyard init` is dockyard's side
    image = f"localhost/bench-direct/{name}:1"
    port = free_port()
    build = ["podman", "build", "--network", "host", "--layers", "-t", image]
    ca = host_ca_bundle()
    if ca:
        build += ["-v", f"{ca}:/etc/ssl/certs/ca-certificates.crt:ro"]
    started = time.perf_counter()
    subprocess.run([*build, str(project)], check=True, capture_output=True, timeout=900)
    container = subprocess.run(
        ["podman", "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8088", "--read-only", "--tmpfs", "/tmp",
         "--cpus", "0.5", "--memory", "1g", image], check=True, capture_output=True, text=True).stdout.strip()
    try:
        with httpx.Client(timeout=5) as client:
            while True:
                try:
                    answer = client.post(f"http://127.0.0.1:{port}/responses", json={"input": "hello"})
                    if answer.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
        return time.perf_counter() - started
    finally:
        subprocess.run(["podman", "rm", "-f", container], capture_output=True)
        subprocess.run(["podman", "untag", image, image], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()

    engine_url = os.environ.setdefault("DOCKER_HOST", require_engine())
    ensure_base_image()
    dockyard_seconds: list[float] = []
    direct_seconds: list[float] = []
    steps: list[dict[str, float]] = []
    with Registry() as registry, tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        with engine_dockyard(scratch_path / "home", engine_url) as server:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "DOCKYARD_"))}
            env.update({"DOCKYARD_HOME": str(server.home), "DOCKYARD_BUILD_NETWORK": "host"})
            if host_ca_bundle():
                env["DOCKYARD_BUILD_CA_BUNDLE"] = str(host_ca_bundle())
            stamp = int(time.time())
            for run in range(options.runs):
                name = f"first-invoke-{stamp}-{run}"
                seconds, run_steps = time_dockyard(scratch_path, name, f"{registry.host}/bench", env)
                dockyard_seconds.append(seconds)
                steps.append(run_steps)
                direct_seconds.append(time_direct(scratch_path / "direct", f"direct-{stamp}-{run}"))
                print(f"run {run + 1}: dockyard {seconds:.2f}s {run_steps}, direct {direct_seconds[-1]:.2f}s",
                      flush=True)
                dockyard("delete", name, "--force", cwd=scratch_path, env=env)
                image = f"{registry.host}/bench/{name}"
                tags = subprocess.run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}", image],
                                      capture_output=True, text=True).stdout.split()
                for tag in tags:
                    subprocess.run(["podman", "untag", tag, tag], capture_output=True)

    dockyard_median = statistics.median(dockyard_seconds)
    direct_median = statistics.median(direct_seconds)
    result = {
        "bench": "first-invoke",
        "what": "dockyard init -> build (pushed) -> deploy (active) -> invoke printed the answer, cached base image; "
                "direct: podman build -> podman run -> POST /responses answered, same kind of fresh project",
        "runs": options.runs,
        "dockyard_seconds": dockyard_seconds,
        "dockyard_steps_seconds": steps,
        "direct_seconds": direct_seconds,
        "dockyard_median_seconds": round(dockyard_median, 3),
        "direct_median_seconds": round(direct_median, 3),
        "ratio": round(dockyard_median / direct_median, 3),
        "engine": engine_url,
    }
    write_result(ROOT / "bench" / "results" / "first-invoke.json", result)
    print(f"first invoke: dockyard median {dockyard_median:.2f}s (init→build→deploy→invoke), direct median "
          f"{direct_median:.2f}s (podman build→run→answer), ratio {dockyard_median / direct_median:.2f}")


if __name__ == "__main__":
    main()
