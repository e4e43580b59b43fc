"""The operator's own metrics (prometheus-client), served by ``alm run --metrics-port``.

What a platform team alerts on: reconciles that fail, reconciles that are slow, and how
many agents sit in each phase. Names use the ``alm_operator_`` prefix; the agents' own
metrics (tasks, tokens, cost) follow a separate contract, see docs/metrics.md.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "AGENTS_BY_PHASE",
    "AGENT_BUDGET_EXCEEDED",
    "AGENT_COST_TODAY",
    "AGENT_KPI",
    "AGENT_TOKENS_TODAY",
    "PHASES",
    "RECONCILES",
    "RECONCILE_SECONDS",
    "REGISTRY",
    "REVOCATION_SECONDS",
    "WRITES",
    "PhaseTracker",
]

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "alm_operator_reconciles_total",
    "Reconcile passes by kind and result (ok, noop, error).",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "alm_operator_reconcile_duration_seconds",
    "Wall time of one reconcile pass, including its API calls.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
WRITES = Counter(
    "alm_operator_api_writes_total",
    "Writes the operator sent to the API server, by kind of object and verb (apply, delete, status).",
    ["kind", "verb"],
    registry=REGISTRY,
)
REVOCATION_SECONDS = Histogram(
    "alm_operator_revocation_seconds",
    "Time from an AgentRetirement entering Revoking to each credential revoked, by kind "
    "(Secret, ServiceAccount, Role, RoleBinding, Webhook).",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
    registry=REGISTRY,
)
AGENTS_BY_PHASE = Gauge(
    "alm_operator_agents",
    "Agents by namespace and phase, as last reconciled.",
    ["namespace", "phase"],
    registry=REGISTRY,
)


AGENT_KPI = Gauge(
    "alm_operator_agent_kpi",
    "The last measured KPI of an agent version (NaN: no data in the last window).",
    ["namespace", "agent", "version", "kpi"],
    registry=REGISTRY,
)
AGENT_COST_TODAY = Gauge(
    "alm_operator_agent_cost_usd_today", "Model cost of the current UTC day, in USD.", ["namespace", "agent"],
    registry=REGISTRY,
)
AGENT_TOKENS_TODAY = Gauge(
    "alm_operator_agent_tokens_today", "Model tokens (input + output) of the current UTC day.", ["namespace", "agent"],
    registry=REGISTRY,
)
AGENT_BUDGET_EXCEEDED = Gauge(
    "alm_operator_agent_budget_exceeded", "1 while the agent's daily budget is exceeded, else 0.",
    ["namespace", "agent"], registry=REGISTRY,
)


class PhaseTracker:
    """Keeps ``alm_operator_agents`` exact: the gauge is recomputed from the last phase
    of every Agent, so a deleted Agent or a phase change never leaves a stale count."""

    def __init__(self) -> None:
        self._phases: dict[tuple[str, str], str] = {}

    def observe(self, namespace: str, name: str, phase: str | None) -> None:
        key = (namespace, name)
        if phase is None:
            self._phases.pop(key, None)
        elif self._phases.get(key) == phase:
            return
        else:
            self._phases[key] = phase
        counts: dict[tuple[str, str], int] = {}
        for (ns, _), value in self._phases.items():
            counts[(ns, value)] = counts.get((ns, value), 0) + 1
        AGENTS_BY_PHASE.clear()
        for (ns, value), count in counts.items():
            AGENTS_BY_PHASE.labels(namespace=ns, phase=value).set(count)


PHASES = PhaseTracker()
