"""bench/first-invoke: from `dockyard init` to the first answer of `dockyard invoke`, with a cached base image.

The walkthrough as a newcomer types it, each step a real `dockyard` process against a running dockyard
(started before the clock, as `dockyard up` would be): init → build (pushed to a local registry) → deploy
(waits for active) → invoke, clock stopped when invoke has printed the answer. Each run is a new project
(a new name), so its last layers are built anew; the base image and the pinned requirements' layer are in
the engine's cache, as they are from the second project on.

The direct baseline does the same by hand, without dockyard: `podman build` of an identical fresh project,
`podman run`, and POST /responses until it answers. Runs are interleaved; the ratio of medians is the figure.

The code path (`--path code`, no engine needed): init --code → deploy (zip, upload, remote_build, active) →
invoke, against a dockyard on the process runtime; no image is built. Its baseline is the same project run by
hand: `python main.py` in a virtual environment that already has the requirements, and POST /responses until
it answers. dockyard's environment for those requirements is built once before the clock too (a warm-up deploy,
not counted), as pip's or the engine's caches are for the image path: both sides start from installed
dependencies, and the figure is what dockyard adds on top of running the code.

    .venv/bin/python bench/first-invoke.py [--runs 3] [--path image|code|all]

Writes bench/results/first-invoke.json (the code path's figures under "code").
"""

from __future__ import annotations

import argparse
import json
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
from support.process import DockyardProcess, free_port
from support.registry import Registry

from dockyard.cli.scaffold import scaffold


def dockyard(*args: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "dockyard", *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"dockyard {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def time_steps(steps: tuple[tuple[str, tuple[str, ...], Path], ...],
               env: dict[str, str]) -> tuple[float, dict[str, float]]:
    """Run the CLI steps in order, timing each; the last (an invoke) must print the echo agent's answer."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    mark = started
    out = ""
    for step, args, cwd in steps:
        out = dockyard(*args, cwd=cwd, env=env)
        now = time.perf_counter()
        timings[step] = round(now - mark, 3)
        mark = now
    assert out == "echo: hello\n", out
    return time.perf_counter() - started, timings


def time_dockyard(root: Path, name: str, registry: str, env: dict[str, str]) -> tuple[float, dict[str, float]]:
    return time_steps((
        ("init", ("init", name, "--base-image", BASE_IMAGE, "--registry", registry), root),
        ("build", ("build",), root / name),
        ("deploy", ("deploy",), root / name),
        ("invoke", ("invoke", name, "hello"), root / name),
    ), env)


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


CODE_RUNTIME = f"python_{sys.version_info.major}_{sys.version_info.minor}"


def time_dockyard_code(root: Path, name: str, env: dict[str, str]) -> tuple[float, dict[str, float]]:
    return time_steps((
        ("init", ("init", name, "--code", "--runtime", CODE_RUNTIME), root),
        ("deploy", ("deploy",), root / name),
        ("invoke", ("invoke", name, "hello"), root / name),
    ), env)


def direct_venv(root: Path) -> Path:
    """A virtual environment with the template's requirements: what someone running the code by hand has."""
    project = root / "requirements-source"
    scaffold(project, "requirements-source", "responses", runtime=CODE_RUNTIME)
    venv = root / "direct-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-r",
                    str(project / "requirements.txt")], check=True, timeout=1800)
    return venv / "bin" / "python"


def time_direct_code(root: Path, name: str, python: Path) -> float:
    project = root / name
    scaffold(project, name, "responses", runtime=CODE_RUNTIME)  # not timed: `dockyard init` is dockyard's side
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen([str(python), "main.py"], cwd=project, env={**os.environ, "PORT": str(port)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(timeout=5) as client:
            while True:
                try:
                    answer = client.post(f"http://127.0.0.1:{port}/responses", json={"input": "hello"})
                    if answer.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None:
                    raise RuntimeError(f"python main.py exited with {process.returncode}")
                time.sleep(0.02)
        return time.perf_counter() - started
    finally:
        process.kill()
        process.wait(timeout=30)


def bench_code(runs: int) -> dict[str, object]:
    dockyard_seconds: list[float] = []
    direct_seconds: list[float] = []
    steps: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        python = direct_venv(scratch_path)
        server = DockyardProcess(home=scratch_path / "home", runtime="process").start()
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "DOCKYARD_"))}
            env["DOCKYARD_HOME"] = str(server.home)
            stamp = int(time.time())
            warm = time.perf_counter()
            time_dockyard_code(scratch_path, f"warm-up-{stamp}", env)  # builds the requirements' environment once
            warm_up_seconds = time.perf_counter() - warm
            print(f"warm-up (remote_build of the template's requirements): {warm_up_seconds:.1f}s", flush=True)
            for run in range(runs):
                name = f"first-code-{stamp}-{run}"
                seconds, run_steps = time_dockyard_code(scratch_path, name, env)
                dockyard_seconds.append(seconds)
                steps.append(run_steps)
                direct_seconds.append(time_direct_code(scratch_path / "direct", f"direct-{stamp}-{run}", python))
                print(f"code run {run + 1}: dockyard {seconds:.2f}s {run_steps}, direct {direct_seconds[-1]:.2f}s",
                      flush=True)
                dockyard("delete", name, "--force", cwd=scratch_path, env=env)
        finally:
            server.stop()
            subprocess.run([sys.executable, "-m", "dockyard", "down", "--home", str(server.home)], capture_output=True,
                           timeout=60)
    dockyard_median = statistics.median(dockyard_seconds)
    direct_median = statistics.median(direct_seconds)
    print(f"first invoke, code: dockyard median {dockyard_median:.2f}s (init --code→deploy→invoke), direct median "
          f"{direct_median:.2f}s (python main.py→answer), ratio {dockyard_median / direct_median:.2f}")
    return {
        "what": "dockyard init --code -> deploy (zip, upload, remote_build cached, active) -> invoke printed the "
                "answer, on the process runtime with no engine; direct: python main.py in a venv with the "
                "requirements installed -> POST /responses answered",
        "runs": runs,
        "runtime": CODE_RUNTIME,
        "warm_up_seconds": round(warm_up_seconds, 3),
        "dockyard_seconds": dockyard_seconds,
        "dockyard_steps_seconds": steps,
        "direct_seconds": direct_seconds,
        "dockyard_median_seconds": round(dockyard_median, 3),
        "direct_median_seconds": round(direct_median, 3),
        "ratio": round(dockyard_median / direct_median, 3),
        "target_ratio": 1.5,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--path", choices=("image", "code", "all"), default="all",
                        help="image: build an image and run it on the engine; code: upload code, process runtime")
    options = parser.parse_args()
    out = ROOT / "bench" / "results" / "first-invoke.json"
    code = bench_code(options.runs) if options.path in ("code", "all") else None
    if options.path == "code":
        # The image path's figures stay as they were measured; the code path's carry their own time.
        previous = json.loads(out.read_text()) if out.exists() else {"bench": "first-invoke"}
        code = {**(code or {}), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        out.write_text(json.dumps({**previous, "code": code}, indent=2) + "\n")
        return
    bench_image(options.runs, code)


def bench_image(runs: int, code: dict[str, object] | None) -> None:
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
            for run in range(runs):
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
        "runs": runs,
        "dockyard_seconds": dockyard_seconds,
        "dockyard_steps_seconds": steps,
        "direct_seconds": direct_seconds,
        "dockyard_median_seconds": round(dockyard_median, 3),
        "direct_median_seconds": round(direct_median, 3),
        "ratio": round(dockyard_median / direct_median, 3),
        "engine": engine_url,
        **({"code": code} if code is not None else {}),
    }
    write_result(ROOT / "bench" / "results" / "first-invoke.json", result)
    print(f"first invoke: dockyard median {dockyard_median:.2f}s (init→build→deploy→invoke), direct median "
          f"{direct_median:.2f}s (podman build→run→answer), ratio {dockyard_median / direct_median:.2f}")


if __name__ == "__main__":
    main()
