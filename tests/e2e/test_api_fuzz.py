"""Property-based fuzzing of every operation in dockyard's own OpenAPI document (schemathesis), live.

One dockyard process (the process runtime, no engine, no local model) serves the whole module; the
document is what it serves to an authenticated caller. Every operation gets a bounded number of generated
requests (valid and invalid against its schema), each sent with a real operator token through one
kept-alive connection. Checks: no answer is a server error; answers conform to the document (status
documented, body matching its schema); and the connection was never dropped: a handler error makes the
server close a kept-alive connection, which the pool would quietly replace, so the number of connections
opened is counted and must stay one. The last test prints the tally (operations, examples, statuses).
"""

from __future__ import annotations

import collections
import os
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from support.process import DockyardProcess

pytestmark = pytest.mark.e2e

# Examples per operation (half valid, half not): about 150 operations x 4 stays inside the suite's 180 s on
# 2 busy cores. DOCKYARD_FUZZ_EXAMPLES=50 for a longer hunt.
EXAMPLES_PER_OPERATION = int(os.environ.get("DOCKYARD_FUZZ_EXAMPLES", "4"))


class Tally:
    """What the fuzzing did, for the summary line (and the assertions on it)."""

    def __init__(self) -> None:
        self.operations: set[str] = set()
        self.examples = 0
        self.statuses: collections.Counter[int] = collections.Counter()
        self.server_errors: list[str] = []
        self.nonconforming: list[str] = []
        self.seconds: dict[str, float] = {}
        self.operations_by_status: dict[int, set[str]] = {}
        self.connection_errors: list[str] = []


@pytest.fixture(scope="module")
def dockyard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardProcess]:
    server = DockyardProcess(home=tmp_path_factory.mktemp("fuzz-home"), runtime="process").start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()


@pytest.fixture(scope="module")
def env(dockyard: DockyardProcess) -> dict[str, str]:
    return dockyard.env()


@pytest.fixture(scope="module")
def token(env: dict[str, str]) -> str:
    with httpx.Client(verify=ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"])) as client:
        answer = client.get(env["IDENTITY_ENDPOINT"], params={"api-version": "2019-08-01", "resource": "https://ai.azure.com"},
                            headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]})
        return str(answer.json()["access_token"])


@pytest.fixture(scope="module")
def session(env: dict[str, str], token: str) -> Iterator[requests.Session]:
    """One connection for every request: a pool of one, kept alive."""
    with requests.Session() as http:
        http.trust_env = False  # this dockyard's CA, whatever the environment names
        http.verify = env["REQUESTS_CA_BUNDLE"]
        http.headers["Authorization"] = f"Bearer {token}"
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
        http.mount("https://", adapter)
        yield http


@pytest.fixture(scope="module")
def document(dockyard: DockyardProcess, session: requests.Session) -> dict[str, Any]:
    answer = session.get(f"{dockyard.url}/openapi.json")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _connections_opened(http: requests.Session) -> int:
    adapter = http.get_adapter("https://")
    pools = adapter.poolmanager.pools  # type: ignore[attr-defined]
    return sum(pools[key].num_connections for key in pools.keys())


def test_the_document_is_for_token_holders_only(dockyard: DockyardProcess, env: dict[str, str]) -> None:
    with httpx.Client(verify=ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"])) as client:
        for path in ("/openapi.json", "/api/projects/default/openapi.json"):
            answer = client.get(f"{dockyard.url}{path}")
            assert answer.status_code == 401 and answer.json()["error"]["code"] == "MissingToken"
        assert client.get(f"{dockyard.url}/docs").status_code == 404


def test_fuzz_every_operation(dockyard: DockyardProcess, session: requests.Session,
                              document: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    api = schemathesis.openapi.from_dict(document)
    tally = Tally()
    operations = [result.ok() for result in api.get_all_operations()]
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        tally.operations.add(label)
        started = time.monotonic()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, label, dockyard.url, session, tally)
        tally.seconds[label] = time.monotonic() - started
    succeeded = set().union(*(labels for status, labels in tally.operations_by_status.items() if status < 300))
    slowest = sorted(tally.seconds.items(), key=lambda item: -item[1])[:3]
    opened = _connections_opened(session)
    with capsys.disabled():  # the summary is the suite's record: shown without -s too
        print(f"\nAPI fuzz: {len(tally.operations)} of {len(operations)} operations ({len(succeeded)} answered 2xx), "
              f"{tally.examples} examples, statuses {dict(sorted(tally.statuses.items()))}, "
              f"{len(tally.server_errors)} server errors, {len(tally.nonconforming)} nonconforming answers, "
              f"{len(tally.connection_errors)} connection errors, {opened} connection(s) opened; slowest: "
              + ", ".join(f"{label} {seconds:.1f}s" for label, seconds in slowest))
    assert tally.examples >= len(operations)
    assert not tally.server_errors, "\n".join(tally.server_errors)
    assert not tally.connection_errors, "\n".join(tally.connection_errors)
    assert not tally.nonconforming, "\n".join(tally.nonconforming)
    assert opened == 1, f"the kept-alive connection was dropped and replaced {opened - 1} time(s)"


def _fuzz(operation: Any, mode: GenerationMode, label: str, base_url: str, session: requests.Session,
          tally: Tally) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES_PER_OPERATION // 2, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        tally.examples += 1
        # The session's token, not one made up from the document's security scheme.
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        case.headers = {**headers, "Authorization": session.headers["Authorization"]}
        try:
            response = case.call(base_url=base_url, session=session, timeout=30, verify=session.verify)
        except requests.ConnectionError as exc:
            tally.connection_errors.append(f"{label}: {exc}")
            return
        tally.statuses[response.status_code] += 1
        tally.operations_by_status.setdefault(response.status_code, set()).add(label)
        if response.status_code >= 500:
            tally.server_errors.append(f"{label} -> {response.status_code} {response.text[:300]}\n"
                                       f"  {case.as_curl_command()[:600]}")
            return
        if mode is GenerationMode.POSITIVE:
            try:
                case.validate_response(response, checks=[status_code_conformance, response_schema_conformance])
            except (AssertionError, BaseExceptionGroup) as exc:  # one failure, or several grouped
                tally.nonconforming.append(f"{label} -> {response.status_code}: {str(exc)[:400]}")

    try:
        run()
    except Unsatisfiable:
        pass  # no request of this kind exists for the operation (nothing to make invalid, say)
