"""dockyard's Prometheus counters: what the gateway, the model relay and the runtime report, and what the
store knows (live sessions, sandbox restarts), read when scraped so it is right after a restart and
across replicas. Served by `GET /metrics` (dockyard.api.metrics).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dockyard.domain.sessions import Session, SessionStatus
from dockyard.gateway.tracing import GatewayCall
from dockyard.store.agents import AgentStore
from dockyard.store.sessions import SessionStore

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """dockyard's counters, on a registry of their own (two apps in one process never share counts)."""

    def __init__(self, sessions: SessionStore, versions: AgentStore) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("dockyard_agent_requests", "Calls the gateway relayed to agents, by answer status.",
                                ["project", "agent", "version", "status"], registry=self.registry)
        self.errors = Counter("dockyard_agent_errors", "Calls to agents that failed (status 5xx or the caller left).",
                              ["project", "agent", "version"], registry=self.registry)
        self.latency = Histogram("dockyard_agent_request_duration_seconds",
                                 "Time from a call's arrival to the last byte of the agent's answer.",
                                 ["project", "agent", "version"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.cold_starts = Counter("dockyard_cold_starts", "Sandboxes started for a call because none was running.",
                                   ["project", "agent", "version"], registry=self.registry)
        self.spans = Counter("dockyard_spans_received", "Spans received over OTLP, by who sent them.", ["source"],
                             registry=self.registry)
        self.tokens = Counter("dockyard_model_tokens", "Tokens model deployments reported in their answers' usage, "
                              "by kind (input, output, total).", ["deployment", "kind"], registry=self.registry)
        self.otlp_forwarded = Counter("dockyard_otlp_forwarded", "OTLP bodies forwarded to versions' own collectors, "
                                      "by outcome (sent, failed, dropped).", ["signal", "outcome"],
                                      registry=self.registry)
        self.pulls = Counter("dockyard_image_pulls", "Image pull attempts of the containers runtime, by outcome "
                             "(pulled, failed); an image already present is not pulled.", ["outcome"],
                             registry=self.registry)
        self.builds = Counter("dockyard_dependency_builds", "remote_build dependency installs of code-based versions, "
                              "by outcome (built, cached: already built for that Python, failed).", ["outcome"],
                              registry=self.registry)
        self.registry.register(_StoreCollector(sessions, versions))

    def call_finished(self, call: GatewayCall, seconds: float) -> None:
        session = call.session
        if session is None:
            return
        labels = (session.project, session.agent_name, session.version)
        self.requests.labels(*labels, str(call.status)).inc()
        if call.status >= 500 or call.status == 499:
            self.errors.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def cold_start(self, session: Session) -> None:
        self.cold_starts.labels(session.project, session.agent_name, session.version).inc()

    def tokens_used(self, deployment: str, usage: Mapping[str, Any]) -> None:
        """A usage object in either API's words: Responses' input/output_tokens, Chat's prompt/completion_tokens."""
        counts = {"input": _tokens(usage, "input_tokens", "prompt_tokens"),
                  "output": _tokens(usage, "output_tokens", "completion_tokens"),
                  "total": _tokens(usage, "total_tokens")}
        if counts["total"] is None and (counts["input"] is not None or counts["output"] is not None):
            counts["total"] = (counts["input"] or 0) + (counts["output"] or 0)
        for kind, count in counts.items():
            if count:
                self.tokens.labels(deployment, kind).inc(count)


def _tokens(usage: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        value = usage.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


class _StoreCollector(Collector):
    """Gauges read from the store at scrape time: live sessions and sandbox restarts per version."""

    def __init__(self, sessions: SessionStore, versions: AgentStore) -> None:
        self.sessions = sessions
        self.versions = versions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        live = GaugeMetricFamily("dockyard_live_sessions", "Sessions whose sandbox runs now.",
                                 labels=["project", "agent", "version"])
        tally = Tally((s.project, s.agent_name, s.version) for s in self.sessions.all()
                      if s.status == SessionStatus.ACTIVE)
        for labels, count in sorted(tally.items()):
            live.add_metric(list(labels), count)
        yield live
        restarts = GaugeMetricFamily("dockyard_sandbox_restarts", "Times the reconciler restarted a version's "
                                     "crashed sandbox.", labels=["project", "agent", "version"])
        for desired in self.versions.desired_versions():
            restarts.add_metric([desired.project, desired.version.agent_name, desired.version.version],
                                desired.restarts)
        yield restarts
