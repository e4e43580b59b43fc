"""The Gateway API's HTTPRoute kind on a cluster that lacks it, for the gatewayAPI router's scenario.

A bare control plane has no Gateway API CRDs, and this machine cannot fetch the upstream
ones. When ``httproutes.gateway.networking.k8s.io`` is not served, the suite installs a
stand-in CRD of the same group, version and kind whose schema keeps every field (what
alm writes and reads back is then stored as the real CRD would store it, without the real
one's validation). A cluster that has the real CRD keeps it untouched. The stand-in is
labelled ``alm.dev/e2e=gateway-api-stand-in`` and, like alm's CRDs, left installed.
"""

from __future__ import annotations

import time
from typing import Any

from alm.kube import errors
from alm.kube.api import APPLY, Kube

__all__ = ["HTTPROUTE_CRD", "ensure_httproute_kind"]

HTTPROUTE_CRD = "httproutes.gateway.networking.k8s.io"
_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def _stand_in() -> dict[str, Any]:
    keep = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": HTTPROUTE_CRD,
            "labels": {"alm.dev/e2e": "gateway-api-stand-in"},
            # Groups under k8s.io must say whether the API was approved; this one is a test stand-in.
            "annotations": {"api-approved.kubernetes.io": "unapproved, alm e2e stand-in for the Gateway API"},
        },
        "spec": {
            "group": "gateway.networking.k8s.io",
            "scope": "Namespaced",
            "names": {"kind": "HTTPRoute", "listKind": "HTTPRouteList", "plural": "httproutes",
                      "singular": "httproute"},
            "versions": [{
                "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": keep, "status": keep}}},
            }],
        },
    }


def ensure_httproute_kind(kube: Kube, timeout: float = 60) -> str:
    """``"present"`` if the cluster already serves HTTPRoute v1, else ``"installed"`` once the stand-in is served."""
    try:
        kube.request("GET", "/apis/gateway.networking.k8s.io/v1/httproutes", query={"limit": "1"})
        return "present"
    except errors.NotFound:
        pass
    kube.request("PATCH", f"{_PATH}/{HTTPROUTE_CRD}", query={"fieldManager": "alm-e2e", "force": "true"},
                 body=_stand_in(), content_type=APPLY)
    deadline = time.monotonic() + timeout
    while True:
        try:
            kube.request("GET", "/apis/gateway.networking.k8s.io/v1/httproutes", query={"limit": "1"})
            return "installed"
        except errors.NotFound:
            if time.monotonic() > deadline:
                raise AssertionError(f"the stand-in CRD {HTTPROUTE_CRD} was not served within {timeout:.0f}s") \
                    from None
            time.sleep(0.5)
