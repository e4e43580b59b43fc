"""Metric providers: measure the five KPIs of one agent version over a window.

    provider = providers.REGISTRY.create(agent.spec.monitoring.provider,
                                         providers.Dependencies(pod_lister=..., auth=...))
    result = await provider.measure("bot", "default", "bot-v2", 30.0, quantile=0.95)
    result.kpis[KPI.SUCCESS_RATE]   # Reading(state=Measured, value=0.81, samples=412.0)

``scrape`` (:mod:`alm.providers.scrape`, the default) reads the pods' ``/metrics`` itself and
keeps the previous scrapes in memory: create it once and reuse it. ``prometheus``
(:mod:`alm.providers.prometheus`) sends PromQL to a Prometheus server. The protocol, result
types and registry are in :mod:`alm.providers.base`; the KPI arithmetic is pure, in
:mod:`alm.core.kpis`. Providers are the only HTTP clients of a runtime or of Prometheus.
"""

from __future__ import annotations

from alm.providers import base, prometheus, scrape
from alm.providers.base import (
    ConfigError,
    Dependencies,
    Factory,
    KPIResult,
    MetricProvider,
    PodChange,
    PodLister,
    PodReport,
    PodState,
    PodTarget,
    Reading,
    ReadingState,
    Registry,
    Totals,
    UnknownProviderType,
)
from alm.providers.prometheus import PrometheusProvider
from alm.providers.scrape import ScrapeProvider, measure_window

__all__ = [
    "REGISTRY",
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
    "PrometheusProvider",
    "Reading",
    "ReadingState",
    "Registry",
    "ScrapeProvider",
    "Totals",
    "UnknownProviderType",
    "base",
    "measure_window",
    "prometheus",
    "scrape",
]

REGISTRY = Registry({
    scrape.ScrapeProvider.type: scrape.from_spec,
    prometheus.PrometheusProvider.type: prometheus.from_spec,
})  # fmt: skip
"""Every provider type ``spec.monitoring.provider.type`` may name; anything else is refused."""
