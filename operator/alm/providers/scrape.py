"""The ``scrape`` metric provider: the operator reads the pods' ``/metrics`` itself.

The default where no Prometheus is configured. One :meth:`ScrapeProvider.measure`:

1. asks the :class:`~alm.providers.base.PodLister` (the operator: the API) for the version's pods;
2. GETs every pod's metrics concurrently (at most ``concurrency`` at once, ``timeout`` each);
3. keeps the samples the KPIs need (``alm.core.kpis.SAMPLES``) of this agent and version: lines
   of other families are dropped *before* prometheus-client's parser, which makes parsing about
   2.5 times cheaper (the parser costs ~25 µs a line; see benchmarks/scrape.py), and parsing
   runs in threads, overlapping the network;
4. picks an earlier scrape of the same version as the baseline and computes the KPIs of the
   increase since then (``kpis.choose_baseline``, ``kpis.window_increase``, ``kpis.compute``).

Windows. A measurement is the increase since a scrape kept in memory, not a wait: the operator
calls ``measure`` every interval and each call measures the interval just past. The first call
for a version has nothing to compare with, so it records the baseline and answers Inconclusive
(an operator on a timer loses one interval at the start; an operator restart loses the history,
which is memory only). Who needs one answer now calls :func:`measure_window`, which takes the
baseline, waits the window and measures; never from a kopf handler, where waiting blocks.

Up to ``history`` scrapes of each version are kept (none older than three of the longest window
asked, thinned where densest), so callers with different windows share them: monitoring every
30 s and a rollout analysis over 5 m each find a baseline about one window old. :meth:`forget` drops a
version that is no longer live.

Faults are data: an unreachable pod is reported and the KPIs come from the others
(``partial``); a pod whose counters went down restarted and counts from zero; no pod reachable
is an Error reading; no pods at all is Inconclusive.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from alm.api import CustomQuery, MetricProviderSpec
from alm.core import kpis
from alm.core.kpis import PodChange, Reading
from alm.metrics import contract
from alm.providers import base
from alm.providers.base import KPIResult, PodLister, PodReport, PodState, PodTarget

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_TIMEOUT", "Fetch", "ScrapeProvider", "from_spec", "measure_window", "parse"]

DEFAULT_TIMEOUT = 5.0
"""Seconds one pod may take to answer; a pod slower than that is Unreachable this time."""
DEFAULT_CONCURRENCY = 32
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
"""A larger exposition is refused: a runaway label would otherwise cost the operator its memory."""
DEFAULT_HISTORY = 8
_HISTORY_WINDOWS = 3.0
_ACCEPT = "text/plain;version=0.0.4;q=1, */*;q=0.1"  # the text format, not OpenMetrics

_FAMILIES = (contract.TASKS, contract.TASK_DURATION, contract.COST, contract.TOOL_CALLS, contract.ALIGNMENT,
             contract.TOKENS)  # fmt: skip
_KEEP = tuple(f"{name}{c}" for name in sorted(kpis.SAMPLES) for c in "{ ") + tuple(
    f"# {kind} {metric.name}{suffix} "
    for metric in _FAMILIES for kind in ("HELP", "TYPE") for suffix in ("", "_total")
)  # fmt: skip


def parse(
    text: str,
    agent: str,
    version: str,
    shadow: bool | None = None,
    keys: dict[kpis.SeriesKey, kpis.SeriesKey] | None = None,
) -> dict[kpis.SeriesKey, float]:
    """The KPI samples of ``agent``/``version`` in an exposition, keyed without the common labels.

    ``keys`` interns the series keys: every kept scrape of every pod then shares one tuple per
    series, which makes a kept pod scrape about 8 KB instead of 53. Raises ValueError (or another
    parser error) on text that is not the Prometheus text format.
    """
    kept = "\n".join(line for line in text.splitlines() if line.startswith(_KEEP))
    want_shadow = None if shadow is None else contract.shadow_value(shadow)
    samples: dict[kpis.SeriesKey, float] = {}
    for family in text_string_to_metric_families(kept):
        for sample in family.samples:
            labels = sample.labels
            if sample.name not in kpis.SAMPLES or labels.get(contract.AGENT) != agent:
                continue
            if labels.get(contract.VERSION) != version:
                continue
            if want_shadow is not None and labels.get(contract.SHADOW) != want_shadow:
                continue
            own = {k: v for k, v in labels.items() if k not in contract.COMMON_LABELS}
            key = kpis.series_key(sample.name, own)
            if keys is not None:
                key = keys.setdefault(key, key)  # atomic under the GIL: parses run in threads
            samples[key] = samples.get(key, 0.0) + sample.value
    return samples


@dataclasses.dataclass(frozen=True)
class _Scrape:
    """One scrape of a version: when (monotonic seconds), which pods were listed, what they said."""

    at: float
    listed: frozenset[str]
    pods: dict[str, dict[kpis.SeriesKey, float]]


@dataclasses.dataclass(frozen=True)
class _PodResult:
    target: PodTarget
    state: PodState
    samples: dict[kpis.SeriesKey, float] | None = None
    message: str = ""


_Key = tuple[str, str, str, bool | None]  # namespace, agent, version, shadow

Fetch = Callable[[PodTarget], Awaitable[bytes | str]]
"""GET one pod's exposition: the body, or (a string) what was wrong with the answer (an HTTP
error, too large). No answer raises OSError, aiohttp.ClientError or TimeoutError. The default
uses aiohttp; tests pass a function that serves expositions from memory."""


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class ScrapeProvider:
    """Measures KPIs from the pods' own ``/metrics``; keep one instance (it holds the history)."""

    type = "scrape"

    def __init__(
        self,
        pods: PodLister,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_bytes: int = DEFAULT_MAX_BYTES,
        history: int = DEFAULT_HISTORY,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        if timeout <= 0 or concurrency < 1 or max_bytes < 1 or history < 2:
            raise base.ConfigError("scrape: timeout, concurrency and max_bytes must be positive, history at least 2")
        self._pods = pods
        self._timeout = timeout
        self._concurrency = concurrency
        self._max_bytes = max_bytes
        self._history_size = history
        self._fetch: Fetch = fetch if fetch is not None else self._get
        self._session: aiohttp.ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._clock = clock
        self._now = now
        self._history: dict[_Key, list[_Scrape]] = {}
        self._keys: dict[kpis.SeriesKey, kpis.SeriesKey] = {}
        self._longest: dict[_Key, float] = {}

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
        """The KPIs of the increase since a kept scrape about ``window_seconds`` old (see module)."""
        base.check_arguments(window_seconds, quantile)
        if queries:
            raise base.ConfigError("custom queries are PromQL and need the prometheus metric provider "
                                   "(spec.monitoring.provider.type: prometheus)")  # fmt: skip
        targets = [PodTarget(*target) for target in await self._pods(agent, namespace, version)]
        at = self._clock()
        results = await asyncio.gather(*(self._scrape(target, agent, version, shadow) for target in targets))
        key = (namespace, agent, version, shadow)
        result = KPIResult(agent, namespace, version, self.type, self._observed_at(), 0.0, {}, shadow=shadow)
        if not targets:
            self._remember(key, _Scrape(at, frozenset(), {}), window_seconds)
            reason = f"no pods of version {version} of agent {agent} in namespace {namespace}"
            return dataclasses.replace(result, kpis=base.all_kpis(Reading.inconclusive(reason)))
        current = _Scrape(at, frozenset(t.name for t in targets),
                          {r.target.name: r.samples for r in results if r.samples is not None})  # fmt: skip
        if not current.pods:  # nothing to measure, and a useless baseline: keep the older ones
            return self._unreachable(result, results)
        baseline = self._baseline(key, at, window_seconds)
        self._remember(key, current, window_seconds)
        if isinstance(baseline, str):
            reports = tuple(_report(r, None) for r in results)
            return dataclasses.replace(result, kpis=base.all_kpis(Reading.inconclusive(baseline)), pods=reports,
                                       partial=any(r.state is not PodState.SCRAPED for r in reports))  # fmt: skip
        return _compare(result, baseline, current, results, quantile)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None

    def forget(self, namespace: str, agent: str, version: str) -> None:
        """Drop the kept scrapes of a version (it is no longer live)."""
        for key in [k for k in self._history if k[:3] == (namespace, agent, version)]:
            del self._history[key]
            self._longest.pop(key, None)

    # --- internals

    def _observed_at(self) -> str:
        return self._now().astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _baseline(self, key: _Key, at: float, window: float) -> _Scrape | str:
        """The kept scrape to measure from, or why there is none."""
        kept = self._history.get(key, [])
        choice = kpis.choose_baseline([at - scrape.at for scrape in kept], window)
        return choice.reason if choice.index is None else kept[choice.index]

    def _remember(self, key: _Key, scrape: _Scrape, window: float) -> None:
        longest = self._longest[key] = max(window, self._longest.get(key, 0.0))
        horizon = scrape.at - _HISTORY_WINDOWS * longest
        kept = sorted([s for s in self._history.get(key, []) if s.at >= horizon] + [scrape], key=lambda s: s.at)
        self._history[key] = _thin(kept, self._history_size)

    def _unreachable(self, result: KPIResult, results: Sequence[_PodResult]) -> KPIResult:
        details = "; ".join(f"{r.target.name}: {r.message}" for r in results[:3])
        more = f" (and {len(results) - 3} more)" if len(results) > 3 else ""
        reading = Reading.error(f"none of the {len(results)} pods could be read: {details}{more}")
        return dataclasses.replace(result, kpis=base.all_kpis(reading), pods=tuple(_report(r, None) for r in results),
                                   partial=True)  # fmt: skip

    async def _scrape(self, target: PodTarget, agent: str, version: str, shadow: bool | None) -> _PodResult:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self._concurrency)
        try:
            async with self._semaphore, asyncio.timeout(self._timeout):
                body = await self._fetch(target)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:  # ValueError: an unusable address
            return _PodResult(target, PodState.UNREACHABLE, message=_describe(exc, self._timeout))
        if isinstance(body, str):
            return _PodResult(target, PodState.BAD_RESPONSE, message=body)
        try:
            # Parsing is CPU work: in a thread, the operator's event loop keeps serving meanwhile.
            text = body.decode("utf-8", "replace")
            samples = await asyncio.to_thread(parse, text, agent, version, shadow, self._keys)
        except Exception as exc:  # the parser raises ValueError, IndexError, ... on garbage
            return _PodResult(target, PodState.BAD_RESPONSE, message=f"not the Prometheus text format: {exc}")
        if not samples:
            message = f"no {contract.TASKS.total} series with agent={agent!r}, version={version!r}"
            return _PodResult(target, PodState.NO_SAMPLES, {}, message)
        return _PodResult(target, PodState.SCRAPED, samples)

    async def _get(self, target: PodTarget) -> bytes | str:
        """The default :data:`Fetch`: aiohttp, one session (and connection pool) for all pods."""
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"Accept": _ACCEPT, "User-Agent": "alm-operator"})
        async with self._session.get(target.url) as resp:
            if resp.status != 200:
                return f"HTTP {resp.status} from {target.url}"
            body = await resp.content.read(self._max_bytes + 1)
            if len(body) > self._max_bytes:
                return f"the exposition at {target.url} is larger than {self._max_bytes} bytes"
            return body


def _thin(kept: list[_Scrape], size: int) -> list[_Scrape]:
    """At most ``size`` scrapes, dropping where they are densest: the oldest and newest stay.

    Monitoring every 30 s next to an analysis over 5 m fills the history with recent scrapes; a
    plain "keep the last N" would drop the one the analysis needs. Dropping the scrape whose
    neighbours are closest keeps them spread out: at 0, 30, 60, 90, 100 s with room for four,
    90 goes (its neighbours 60 and 100 are 40 s apart, the least).
    """
    while len(kept) > size:
        drop = min(range(1, len(kept) - 1), key=lambda i: kept[i + 1].at - kept[i - 1].at)
        del kept[drop]
    return kept


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _report(result: _PodResult, change: PodChange | None) -> PodReport:
    return PodReport(result.target.name, result.state, change, result.message)


def _compare(
    result: KPIResult, baseline: _Scrape, current: _Scrape, results: Sequence[_PodResult], quantile: float
) -> KPIResult:
    """The KPIs of the increase from ``baseline`` to ``current``, with every pod's part in it."""
    window = kpis.window_increase(baseline.pods, current.pods, baseline.listed)
    reports = [_report(r, window.pods.get(r.target.name)) for r in results]
    reports += [PodReport(name, PodState.GONE, PodChange.MISSING, "no longer listed")
                for name in sorted(baseline.pods.keys() - current.listed)]  # fmt: skip
    partial = any(r.state not in (PodState.SCRAPED, PodState.GONE) or r.change is PodChange.NO_BASELINE
                  for r in reports)  # fmt: skip
    readings = kpis.compute(window.increase, quantile)
    if not any(report.counted for report in reports):
        reason = "no pod was scraped both at the baseline and now: they have a baseline for the next window"
        readings = base.all_kpis(Reading.inconclusive(reason))
    return dataclasses.replace(
        result, window_seconds=current.at - baseline.at, kpis=readings, totals=kpis.totals(window.increase),
        pods=tuple(reports), partial=partial,
    )  # fmt: skip


async def measure_window(
    provider: ScrapeProvider,
    agent: str,
    namespace: str,
    version: str,
    window_seconds: float,
    *,
    shadow: bool | None = None,
    quantile: float = 0.95,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> KPIResult:
    """Measure now if the history covers the window; else take the baseline, wait, measure.

    For callers that may wait (the CLI, tests, benchmarks): never from a kopf handler.
    """
    first = await provider.measure(agent, namespace, version, window_seconds, shadow=shadow, quantile=quantile)
    if first.window_seconds > 0:
        return first
    await sleep(window_seconds)
    return await provider.measure(agent, namespace, version, window_seconds, shadow=shadow, quantile=quantile)


def from_spec(spec: MetricProviderSpec, deps: base.Dependencies) -> ScrapeProvider:
    """The registry's factory: scrape needs the operator's pod lister."""
    if deps.pod_lister is None:
        raise base.ConfigError("the scrape metric provider needs a pod lister (the operator passes one)")
    return ScrapeProvider(deps.pod_lister)
