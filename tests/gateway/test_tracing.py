"""The gateway's spans: traceparent in and out, and the span tree a relayed call makes."""

from __future__ import annotations

import pytest

from dockyard.domain.sessions import Session, SessionStatus
from dockyard.gateway import tracing
from dockyard.gateway.tracing import GatewayCall, parse_traceparent

SESSION = Session(id="s" * 32, project="default", agent_name="echo", version_uid="u1", version="2",
                  status=SessionStatus.ACTIVE, idle_timeout_seconds=900, created_at=0, last_accessed_at=0)


@pytest.mark.parametrize("value", [None, "", "garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
                                   "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",
                                   "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"])
def test_malformed_traceparents_are_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_a_traceparent_is_read_case_insensitively() -> None:
    assert parse_traceparent(" 00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01 ") == (
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")


def test_a_cold_call_makes_gateway_route_cold_start_and_upstream_spans() -> None:
    call = GatewayCall(method="POST", path="/api/projects/default/openai/v1/responses",
                       trace_id="4bf92f3577b34da6a3ce929d0e0e4736", parent_span_id="00f067aa0ba902b7", flags="01",
                       start_ns=1_000)
    with tracing.active(call):  # what the middleware does for each request
        tracing.entered_session(SESSION)
        tracing.cold_start(SESSION)
        sent = tracing.upstream_headers({"x-agent-response-id": "caresp_1"})
    assert sent["traceparent"] == f"00-4bf92f3577b34da6a3ce929d0e0e4736-{call.upstream_span_id}-01"
    call.status = 200
    spans = {span.name: span for span in call.spans(end_ns=call.upstream_ns + 5_000)}
    assert set(spans) == {"gateway POST responses", "route", "cold start", "upstream"}
    gateway = spans["gateway POST responses"]
    assert gateway.parent_span_id == "00f067aa0ba902b7" and gateway.attributes["dockyard.cold_start"] is True
    assert all(s.parent_span_id == gateway.span_id for name, s in spans.items() if name != gateway.name)
    assert spans["upstream"].span_id == call.upstream_span_id
    assert {(s.agent, s.version, s.session_id, s.response_id) for s in spans.values()} == {
        ("echo", "2", SESSION.id, "caresp_1")}


def test_outside_a_call_the_hooks_do_nothing() -> None:
    headers = {"x": "1"}
    assert tracing.upstream_headers(headers) is headers
    tracing.entered_session(SESSION)  # no call: nothing to record, nothing raised
