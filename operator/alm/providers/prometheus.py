"""The ``prometheus`` metric provider: the KPIs as PromQL over the Prometheus HTTP API.

Each ``measure`` sends, concurrently and evaluated at the same instant, the five KPI queries
of the contract (``alm.metrics.contract.promql``, matching ``agent``, ``version``, the
namespace label the scrape configuration adds, and ``shadow`` when asked), the three
denominators (tasks, executed tool calls, scored tasks: how many events each KPI rests on),
tokens and cost of the window, and the user's custom queries (``AnalysisSpec.queries``, with
``{{agent}}``, ``{{version}}``, ``{{namespace}}`` and ``{{window}}`` substituted). Each answer
becomes a :class:`~alm.core.kpis.Reading`:

=============================================  ==========================================
Prometheus answers                             Reading
=============================================  ==========================================
one number                                     Measured
no series (nothing scraped with these labels)  Inconclusive: no data
NaN (0/0: no events in the window), ±Inf       Inconclusive, naming the empty denominator
HTTP 400/422 (a bad query), 503, other         Error with Prometheus' own message
HTTP 401/403                                   Error: check the credential
no answer within the timeout, unreachable      Error
several series (a custom query)                Error: a check needs one number
=============================================  ==========================================

The credential (``prometheus.authSecretRef``) reaches this module as a string and leaves it only
in the ``Authorization`` header: it is kept in a wrapper whose repr hides it, and no message
quotes a header. An address with user:password in it is refused for the same reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import yarl

from alm.api import CustomQuery, MetricProviderSpec, parse_duration
from alm.core import kpis
from alm.core.kpis import Reading, Totals
from alm.metrics import contract
from alm.metrics.contract import KPI, ToolOutcome
from alm.providers import base
from alm.providers.base import KPIResult

__all__ = ["DEFAULT_TIMEOUT", "Post", "PrometheusProvider", "authorization", "from_spec", "promql_range"]

DEFAULT_TIMEOUT = 10.0
NO_SERIES = "no data: the query matched no series (does Prometheus scrape the version's pods, with these labels?)"

_DENOMINATOR = {
    KPI.SUCCESS_RATE: "tasks",
    KPI.LATENCY: "tasks",
    KPI.COST_PER_TASK: "tasks",
    KPI.TOOL_ERROR_RATE: "tool_calls",
    KPI.ALIGNMENT: "scored",
}
_EMPTY = {"tasks": kpis.NO_TASKS, "tool_calls": kpis.NO_TOOL_CALLS, "scored": kpis.NO_SCORES}


class _Secret:
    """A string that never shows in a repr, a log line or a traceback's locals."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__


def authorization(secret: str) -> str:
    """The ``Authorization`` header for the Secret's value: a bearer token, or a whole header value.

    ``abc123`` -> ``Bearer abc123``; ``Bearer abc123`` and ``Basic dXNlcjpwdw==`` are used as they
    are. Surrounding whitespace (a Secret written with ``echo``) is dropped.
    """
    value = secret.strip()
    if not value:
        raise base.ConfigError("the Prometheus credential Secret key is empty")
    scheme = value.split(" ", 1)[0].lower()
    return value if scheme in ("bearer", "basic") and " " in value else f"Bearer {value}"


def promql_range(seconds: float) -> str:
    """A PromQL range for a window: 30 -> ``30s``, 1.5 -> ``1500ms``."""
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


Post = Callable[[str, Mapping[str, str], Mapping[str, str]], Awaitable[tuple[int, bytes]]]
"""POST a form to a URL with headers; answer (HTTP status, body). No answer raises OSError,
aiohttp.ClientError or TimeoutError. The default uses aiohttp; unit tests pass a function."""


@dataclasses.dataclass(frozen=True)
class _Answer:
    """What one query returned: a number, no series (``value`` None), or an ``error``."""

    value: float | None = None
    error: str = ""
    series: int = 0


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class PrometheusProvider:
    """Measures KPIs with PromQL; stateless apart from its HTTP session."""

    type = "prometheus"

    def __init__(
        self,
        address: str,
        *,
        authorization: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        namespace_label: str | None = "namespace",
        post: Post | None = None,
        now: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        """``authorization``: the whole header value (see :func:`authorization`).
        ``namespace_label``: the label the scrape configuration puts the pod's namespace in
        (Prometheus' Kubernetes discovery and the Prometheus Operator use ``namespace``); None
        when the series have none (agent names are unique per namespace only)."""
        url = yarl.URL(address)
        if url.scheme not in ("http", "https") or not url.host:
            raise base.ConfigError(f"prometheus.address must be an http(s) URL, not {address!r}")
        if url.user is not None or url.password is not None:
            raise base.ConfigError("prometheus.address must not carry credentials: use prometheus.authSecretRef")
        if timeout <= 0:
            raise base.ConfigError(f"prometheus.timeout must be positive, not {timeout}s")
        self.address = str(url).rstrip("/")
        self._query_url = self.address + "/api/v1/query"
        self._auth = None if authorization is None else _Secret(authorization)
        self._timeout = timeout
        self._namespace_label = namespace_label
        self._post: Post = post if post is not None else self._aiohttp_post
        self._session: aiohttp.ClientSession | None = None
        self._now = now

    def __repr__(self) -> str:
        return f"PrometheusProvider({self.address!r}, timeout={self._timeout:g})"

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
        """All KPI, denominator, total and custom queries of one window, at one instant."""
        base.check_arguments(window_seconds, quantile)
        moment = self._now()
        window = promql_range(window_seconds)
        sel = self._selector(agent, namespace, version, shadow)
        placeholders = {"agent": agent, "version": version, "namespace": namespace, "window": window}
        texts = {
            **{kpi.value: contract.promql(kpi, sel, window, quantile) for kpi in KPI},
            **_extras(sel, window),
            **{f"custom:{q.name}": _substitute(q.query, placeholders) for q in queries},
        }
        found = await asyncio.gather(*(self._query(text, moment) for text in texts.values()))
        answers = dict(zip(texts, found, strict=True))
        counts = {name: answers[name].value for name in ("tasks", "tool_calls", "scored")}
        return KPIResult(
            agent, namespace, version, self.type,
            observed_at=moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            window_seconds=window_seconds,
            kpis={kpi: _kpi_reading(kpi, answers[kpi.value], counts) for kpi in KPI},
            queries={q.name: _custom_reading(answers[f"custom:{q.name}"]) for q in queries},
            shadow=shadow,
            totals=_totals(answers),
        )  # fmt: skip

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None

    def _selector(self, agent: str, namespace: str, version: str, shadow: bool | None) -> str:
        extra: dict[str, str] = {}
        if self._namespace_label:
            extra[self._namespace_label] = namespace
        if shadow is not None:
            extra[contract.SHADOW] = contract.shadow_value(shadow)
        return contract.selector(agent, version, **extra)

    async def _query(self, text: str, moment: datetime.datetime) -> _Answer:
        headers = {} if self._auth is None else {"Authorization": self._auth.reveal()}
        # Prometheus stops evaluating at its own timeout too, so a slow query does not linger there.
        form = {"query": text, "time": f"{moment.timestamp():.3f}", "timeout": f"{self._timeout:g}s"}
        try:
            async with asyncio.timeout(self._timeout):
                status, raw = await self._post(self._query_url, form, headers)
        except TimeoutError:
            return _Answer(error=f"Prometheus at {self.address} did not answer within {self._timeout:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            return _Answer(error=f"Prometheus at {self.address} is unreachable: {type(exc).__name__}: {exc}")
        return _decode(status, raw, text)

    async def _aiohttp_post(self, url: str, form: Mapping[str, str], headers: Mapping[str, str]) -> tuple[int, bytes]:
        """The default :data:`Post`: aiohttp, one session for all queries."""
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": "alm-operator"})
        async with self._session.post(url, data=dict(form), headers=dict(headers)) as resp:
            return resp.status, await resp.read()


def _extras(sel: str, window: str) -> dict[str, str]:
    """Denominators and totals: how many events each KPI rests on, and what the window cost."""

    def increase(sample: str, matchers: str = "") -> str:
        return f"sum(increase({sample}{{{sel}{matchers}}}[{window}]))"

    executed = "|".join((ToolOutcome.SUCCESS, ToolOutcome.ERROR))
    return {
        "tasks": increase(contract.TASKS.total),
        "tool_calls": increase(contract.TOOL_CALLS.total, f',{contract.OUTCOME}=~"{executed}"'),
        "scored": increase(contract.ALIGNMENT.count),
        "input_tokens": increase(contract.TOKENS.total, f',{contract.TOKEN_TYPE}="input"'),
        "output_tokens": increase(contract.TOKENS.total, f',{contract.TOKEN_TYPE}="output"'),
        "cost_usd": increase(contract.COST.total),
    }


def _substitute(query: str, values: Mapping[str, str]) -> str:
    for name, value in values.items():
        query = query.replace("{{" + name + "}}", value)
    return query


def _decode(status: int, raw: bytes, query: str) -> _Answer:
    """One HTTP answer of /api/v1/query as a number, no series, or an error message."""
    if status in (401, 403):
        return _Answer(error=f"Prometheus refused the request (HTTP {status}): check the credential in the Secret "
                             "named by prometheus.authSecretRef")  # fmt: skip
    try:
        doc: Any = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        snippet = raw[:200].decode("utf-8", "replace").strip()
        return _Answer(error=f"Prometheus answered HTTP {status} without JSON: {snippet!r}")
    if status != 200 or doc.get("status") != "success":
        kind = doc.get("errorType") or "error"
        what = "rejected the query" if status in (400, 422) else "failed"
        return _Answer(error=f"Prometheus {what} (HTTP {status}, {kind}): {doc.get('error', '')} in query: {query}")
    data: Any = doc.get("data") or {}
    result: Any = data.get("result")
    try:
        if data.get("resultType") == "scalar":
            return _Answer(float(result[1]), series=1)
        if data.get("resultType") == "vector":
            if not result:
                return _Answer()
            return _Answer(float(result[0]["value"][1]), series=len(result))
    except (TypeError, ValueError, KeyError, IndexError):
        pass
    return _Answer(error=f"Prometheus returned a {data.get('resultType')!r} result, not a number: {query}")


def _kpi_reading(kpi: KPI, answer: _Answer, counts: Mapping[str, float | None]) -> Reading:
    count = counts[_DENOMINATOR[kpi]]
    samples = count if count is not None and math.isfinite(count) else None
    if answer.error:
        return Reading.error(answer.error)
    if answer.value is None:
        return Reading.inconclusive(NO_SERIES, samples)
    if not math.isfinite(answer.value):
        reason = _EMPTY[_DENOMINATOR[kpi]] if samples == 0 or math.isnan(answer.value) else None
        return Reading.inconclusive(reason or f"the query returned {answer.value}", samples)
    return Reading.measured(answer.value, samples)


def _custom_reading(answer: _Answer) -> Reading:
    if answer.error:
        return Reading.error(answer.error)
    if answer.value is None:
        return Reading.inconclusive(NO_SERIES)
    if answer.series > 1:
        return Reading.error(f"the query returned {answer.series} series; a check needs one number (use sum() or "
                             "another aggregation)")  # fmt: skip
    if not math.isfinite(answer.value):
        return Reading.inconclusive(f"the query returned {answer.value} (no events in the window?)")
    return Reading.measured(answer.value)


def _totals(answers: Mapping[str, _Answer]) -> Totals:
    def number(name: str) -> float | None:
        value = answers[name].value
        return value if value is not None and math.isfinite(value) else None

    return Totals(**{field.name: number(field.name) for field in dataclasses.fields(Totals)})


def from_spec(spec: MetricProviderSpec, deps: base.Dependencies) -> PrometheusProvider:
    """The registry's factory: the address, timeout and credential of ``spec.prometheus``."""
    settings = spec.prometheus
    if settings is None:
        raise base.ConfigError("a metric provider of type prometheus needs prometheus.address")
    if settings.auth_secret_ref is not None and deps.auth is None:
        raise base.ConfigError(f"prometheus.authSecretRef names Secret {settings.auth_secret_ref.name}, "
                               "but no value was read from it")  # fmt: skip
    header = None if deps.auth is None else authorization(deps.auth)
    return PrometheusProvider(settings.address, authorization=header, timeout=parse_duration(settings.timeout))
