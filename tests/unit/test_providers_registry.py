"""Choosing a provider: every known type builds, an unknown one is refused, never replaced."""

from __future__ import annotations

import inspect
import typing

import pytest

from alm import providers
from alm.api import MetricProviderSpec, MetricProviderType
from alm.providers import base, prometheus, scrape
from alm.providers.base import Dependencies, PodTarget

SECRET = "prom-token-never-shown-51c0de"


async def no_pods(agent: str, namespace: str, version: str) -> list[PodTarget]:
    return []


def spec(**fields: object) -> MetricProviderSpec:
    return MetricProviderSpec.model_validate(fields)


def test_the_registry_knows_scrape_and_prometheus() -> None:
    assert providers.REGISTRY.types == ("prometheus", "scrape")
    assert set(providers.REGISTRY.types) == set(typing.get_args(MetricProviderType))


def test_scrape_is_the_default_and_needs_the_pod_lister() -> None:
    provider = providers.REGISTRY.create(MetricProviderSpec(), Dependencies(pod_lister=no_pods))
    assert isinstance(provider, scrape.ScrapeProvider) and provider.type == "scrape"
    with pytest.raises(base.ConfigError, match="needs a pod lister"):
        providers.REGISTRY.create(MetricProviderSpec())


def test_prometheus_from_its_spec() -> None:
    provider = providers.REGISTRY.create(
        spec(type="prometheus", prometheus={"address": "https://prom.example:9090/", "timeout": "1m30s"}),
    )
    assert isinstance(provider, prometheus.PrometheusProvider)
    assert provider.address == "https://prom.example:9090"
    assert repr(provider) == "PrometheusProvider('https://prom.example:9090', timeout=90)"


def test_prometheus_with_a_credential_never_shows_it() -> None:
    deps = Dependencies(auth=SECRET)
    provider = providers.REGISTRY.create(
        spec(type="prometheus", prometheus={"address": "http://prom:9090", "authSecretRef": {"name": "p", "key": "t"}}),
        deps,
    )
    assert SECRET not in repr(deps) and SECRET not in repr(provider) and SECRET not in repr(vars(provider))


def test_prometheus_without_its_settings_is_a_configuration_error() -> None:
    # The CRD and the model refuse this already (model_construct skips them); the registry must too.
    with pytest.raises(base.ConfigError, match=r"needs prometheus\.address"):
        providers.REGISTRY.create(MetricProviderSpec.model_construct(type="prometheus", prometheus=None))


def test_a_credential_secret_without_its_value_is_a_configuration_error() -> None:
    settings = {"address": "http://prom:9090", "authSecretRef": {"name": "prom-auth", "key": "token"}}
    with pytest.raises(base.ConfigError, match="names Secret prom-auth, but no value was read from it"):
        providers.REGISTRY.create(spec(type="prometheus", prometheus=settings))


@pytest.mark.parametrize("kind", ["datadog", "", "Scrape"])
def test_an_unknown_type_is_refused_loudly(kind: str) -> None:
    with pytest.raises(base.UnknownProviderType, match=f"unknown metric provider type {kind!r}: use one of prometheus, "
                                                       "scrape"):  # fmt: skip
        providers.REGISTRY.create(MetricProviderSpec.model_construct(type=kind), Dependencies(pod_lister=no_pods))


def test_unknown_type_is_a_configuration_error() -> None:
    assert issubclass(base.UnknownProviderType, base.ConfigError)
    assert issubclass(base.ConfigError, ValueError)


def test_both_providers_satisfy_the_protocol() -> None:
    protocol = inspect.signature(base.MetricProvider.measure)
    for cls in (scrape.ScrapeProvider, prometheus.PrometheusProvider):
        assert inspect.signature(cls.measure) == protocol, cls
        assert inspect.iscoroutinefunction(cls.measure) and inspect.iscoroutinefunction(cls.close)


@pytest.mark.parametrize("module", [providers, base, scrape, prometheus], ids=lambda m: m.__name__)
def test_every_exported_name_exists(module: object) -> None:
    for name in module.__all__:  # type: ignore[attr-defined]
        assert hasattr(module, name), name


def test_the_package_reexports_the_protocol_and_its_types() -> None:
    for_implementers = {"all_kpis", "check_arguments"}  # helpers a provider module imports from base
    missing = set(base.__all__) - for_implementers - set(providers.__all__)
    assert not missing, f"alm.providers does not re-export {sorted(missing)}"
