"""What every benchmark needs: the echo agent image in a registry and a dockyard driving the engine,
and a place to write its figures with the machine they were measured on."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.engine import FIXTURE_IMAGES, engine_dockyard, require_engine  # noqa: E402
from support.images import build_image, ensure_base_image, push_image  # noqa: E402
from support.process import DockyardProcess  # noqa: E402
from support.registry import Registry  # noqa: E402


@contextmanager
def echo_agent_on_dockyard() -> Iterator[tuple[DockyardProcess, str, str]]:
    """(dockyard, the echo image's reference in a local registry, the engine URL), torn down after."""
    engine_url = os.environ.setdefault("DOCKER_HOST", require_engine())
    ensure_base_image()
    local = build_image("echo-agent", "bench", FIXTURE_IMAGES / "echo-agent")
    with Registry() as registry, tempfile.TemporaryDirectory() as home:
        image = f"{registry.host}/echo-agent:bench"
        push_image(local, image)
        with engine_dockyard(Path(home) / "home", engine_url) as server:
            os.environ.update(server.env())
            yield server, image, engine_url


def write_result(out: Path, result: dict[str, Any]) -> None:
    result = {
        **result,
        "machine": {"python": platform.python_version(), "cores": os.cpu_count(), "system": platform.platform()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
