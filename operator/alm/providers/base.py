"""The MetricProvider seam: what a provider is asked, what it answers, and how one is chosen.

A provider measures the five KPIs of one agent version over a window and answers a
:class:`KPIResult`: for each KPI a :class:`~alm.core.kpis.Reading` (a value, or Inconclusive or
Error with the reason). It never judges: comparing readings with thresholds is the evaluator's
job, in one place for every provider (Argo Rollouts learned this the hard way). And it never
raises for bad data or a failed query: those are readings too. It raises only
:class:`ConfigError`, for a setup that can never work (what the operator reports as an
``Invalid`` condition)::

    ConfigError (ValueError)        the provider's settings or the call's arguments are wrong
    └── UnknownProviderType         spec.monitoring.provider.type names no registered provider

Adding a provider is one new module with a factory, plus one entry in the registry
(:data:`alm.providers.REGISTRY`); an unknown type is refused, never replaced by a default.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import NamedTuple, Protocol

from alm.api import CustomQuery, KPIObservation, MetricProviderSpec
from alm.core.kpis import PodChange, Reading, ReadingState, Totals
from alm.metrics.contract import KPI

__all__ = [
    "ConfigError",
    "Dependencies",
    "Factory",
    "KPIResult",
    "MetricProvider",
    "PodChange",
    "PodLister",
    "PodReport",
    "PodState",
    "PodTarget",
    "Reading",
    "ReadingState",
    "Registry",
    "Totals",
    "UnknownProviderType",
    "all_kpis",
    "check_arguments",
]


class ConfigError(ValueError):
    """The provider cannot work as configured; the message says what to change."""


class UnknownProviderType(ConfigError):
    """No provider is registered under this type."""


# --- What a provider answers ---------------------------------------------------------------------


class PodState(enum.StrEnum):
    """How reading one pod went (scrape provider only).

    - Scraped: read and parsed; counted as its ``change`` says.
    - Unreachable: no answer (refused, timed out, no route); its KPIs are missing.
    - BadResponse: answered, but not with a usable exposition (HTTP error, too large, unparseable).
    - NoSamples: a valid exposition without the contract's series for this agent and version
      (wrong labels, or not an alm agent).
    - Gone: scraped at the baseline, no longer listed (scaled down or replaced): not a fault.
    """

    SCRAPED = "Scraped"
    UNREACHABLE = "Unreachable"
    BAD_RESPONSE = "BadResponse"
    NO_SAMPLES = "NoSamples"
    GONE = "Gone"


@dataclasses.dataclass(frozen=True)
class PodReport:
    """One pod's part in a measurement."""

    name: str
    state: PodState
    change: PodChange | None = None
    """How its samples were counted; None when the measurement only took a baseline."""
    message: str = ""

    @property
    def counted(self) -> bool:
        """Its increase over the window is in the KPIs."""
        return self.change in (PodChange.CONTINUED, PodChange.RESTARTED, PodChange.APPEARED)


@dataclasses.dataclass(frozen=True)
class KPIResult:
    """The KPIs of one agent version over one window, as one provider measured them."""

    agent: str
    namespace: str
    version: str
    provider: str
    observed_at: str
    """When the measurement was taken (RFC 3339, seconds, UTC)."""
    window_seconds: float
    """The window actually measured: for scrape, the time since the baseline scrape (0 when this
    measurement only took one); for prometheus, the range of the queries."""
    kpis: Mapping[KPI, Reading]
    queries: Mapping[str, Reading] = dataclasses.field(default_factory=dict)
    """Custom queries (``AnalysisSpec.queries``) by name."""
    shadow: bool | None = None
    totals: Totals = dataclasses.field(default_factory=Totals)
    """What the window added up to (tasks, tool calls, scores, tokens, cost)."""
    pods: tuple[PodReport, ...] = ()
    """Scrape only: every pod listed now or scraped at the baseline."""
    partial: bool = False
    """Some pod of the version is not counted (unreachable, no baseline, no samples): the KPIs
    describe the others."""

    def observation(self) -> KPIObservation:
        """The measured values as ``Agent.status.kpis[version]``; unmeasured KPIs are left out."""
        values = {kpi.value: reading.value for kpi, reading in self.kpis.items() if reading.ok}
        return KPIObservation.model_validate({**values, "observedAt": self.observed_at})


def all_kpis(reading: Reading) -> dict[KPI, Reading]:
    """The same reading for every KPI (no baseline yet, no pod reachable, ...)."""
    return {kpi: reading for kpi in KPI}


# --- The protocol --------------------------------------------------------------------------------


class MetricProvider(Protocol):
    """Measures the five KPIs of one agent version over a window."""

    type: str
    """The ``spec.monitoring.provider.type`` it serves."""

    async def measure(
        self,
        agent: str,
        namespace: str,
        version: str,
        window_seconds: float,
        *,
        shadow: bool | None = None,
        quantile: float = 0.95,
        queries: Sequence[CustomQuery] = (),
    ) -> KPIResult:
        """Measure ``version`` of ``agent`` over the last ``window_seconds``.

        ``shadow``: only the shadow (True) or the serving (False) pods of the version; None for
        both. ``quantile``: the latency KPI's quantile. ``queries``: custom PromQL to evaluate
        too (their min/max are not judged here). Raises only :class:`ConfigError`.
        """
        ...

    async def close(self) -> None:
        """Release connections; the provider is not used afterwards."""
        ...


def check_arguments(window_seconds: float, quantile: float) -> None:
    """Raise :class:`ConfigError` for arguments no measurement can use."""
    if not window_seconds > 0:
        raise ConfigError(f"the measurement window must be positive, not {window_seconds}s")
    if not 0 < quantile < 1:
        raise ConfigError(f"the latency quantile must be within (0, 1), e.g. 0.95, not {quantile}")


# --- Pod discovery (implemented by the operator for scrape) --------------------------------------


class PodTarget(NamedTuple):
    """Where one pod's metrics are: ``http://{ip}:{port}{metrics_path}``."""

    name: str
    ip: str
    port: int
    metrics_path: str = "/metrics"

    @property
    def url(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip  # IPv6 pod IPs
        path = self.metrics_path if self.metrics_path.startswith("/") else "/" + self.metrics_path
        return f"http://{host}:{self.port}{path}"


class PodLister(Protocol):
    """The pods of one agent version, for the scrape provider.

    The operator lists the Pods labelled ``alm.dev/agent=<agent>,alm.dev/version=<version>`` in
    ``namespace`` that are Running and have a pod IP, *ready or not* (a pod that is not ready
    still has counters, and one left out of a baseline would later be mistaken for a new pod),
    with the AgentVersion's ``spec.runtime.port`` and ``metricsPath``. Tests list local
    processes. Plain ``(name, ip, port, path)`` tuples are accepted. API errors propagate: the
    caller retries as for any API call.
    """

    def __call__(
        self, agent: str, namespace: str, version: str
    ) -> Awaitable[Sequence[PodTarget | tuple[str, str, int, str]]]: ...


# --- The registry --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Dependencies:
    """What the operator hands a factory besides the spec."""

    pod_lister: PodLister | None = None
    """Required by scrape."""
    auth: str | None = dataclasses.field(default=None, repr=False)
    """The value of ``prometheus.authSecretRef``'s Secret key, read by the operator; never logged."""


Factory = Callable[[MetricProviderSpec, Dependencies], MetricProvider]


class Registry:
    """Provider factories by type; :meth:`create` refuses a type it does not know."""

    def __init__(self, factories: Mapping[str, Factory]) -> None:
        self._factories = dict(factories)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(sorted(self._factories))

    def create(self, spec: MetricProviderSpec, deps: Dependencies = Dependencies()) -> MetricProvider:
        """The provider ``spec.type`` names, configured by ``spec`` and ``deps``."""
        factory = self._factories.get(spec.type)
        if factory is None:
            known = ", ".join(self.types)
            raise UnknownProviderType(f"unknown metric provider type {spec.type!r}: use one of {known}")
        return factory(spec, deps)
