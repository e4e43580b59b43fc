"""The registry of alm kinds: names, models and ``kubectl get`` columns of each.

:data:`KINDS` is what :mod:`alm.api.crdgen` turns into CRDs and what other layers use to look up
a kind's plural or model (``KINDS["Agent"].plural``) instead of spelling it again.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from alm.api.agent import Agent, AgentSpec, AgentStatus
from alm.api.agentretirement import AgentRetirement, AgentRetirementSpec, AgentRetirementStatus
from alm.api.agentrollout import AgentRollout, AgentRolloutSpec, AgentRolloutStatus
from alm.api.agentversion import AgentVersion, AgentVersionSpec, AgentVersionStatus
from alm.api.base import CATEGORIES, GROUP, VERSION, AlmModel

__all__ = ["KINDS", "KindInfo", "PrinterColumn"]


@dataclasses.dataclass(frozen=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry: a column of ``kubectl get``."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str
    priority: int = 0
    """0 shows the column always, 1 only with ``-o wide``."""

    def to_schema(self) -> dict[str, object]:
        column: dict[str, object] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            column["priority"] = self.priority
        return column


_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation.")
_PHASE = PrinterColumn("Phase", "string", ".status.phase", "Lifecycle phase.")


@dataclasses.dataclass(frozen=True)
class KindInfo:
    """Everything the CRD of one kind needs besides the schema, and the models themselves."""

    kind: str
    plural: str
    singular: str
    model: type[AlmModel]
    """The whole object (apiVersion, kind, metadata, spec, status)."""
    spec_model: type[AlmModel]
    status_model: type[AlmModel]
    short_names: tuple[str, ...]
    printer_columns: tuple[PrinterColumn, ...]
    categories: tuple[str, ...] = CATEGORIES

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def crd_name(self) -> str:
        """Name of the CustomResourceDefinition, e.g. ``agents.alm.dev``."""
        return f"{self.plural}.{GROUP}"

    @property
    def api_version(self) -> str:
        return f"{GROUP}/{VERSION}"


KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo(
            kind="AgentVersion",
            plural="agentversions",
            singular="agentversion",
            model=AgentVersion,
            spec_model=AgentVersionSpec,
            status_model=AgentVersionStatus,
            short_names=("agv",),
            printer_columns=(
                PrinterColumn("Model", "string", ".spec.model.name", "Model name."),
                PrinterColumn("Provider", "string", ".spec.model.provider", "Model provider."),
                _PHASE,
                PrinterColumn("Hash", "string", ".status.specHash", "Content hash of the spec."),
                _AGE,
            ),
        ),
        KindInfo(
            kind="Agent",
            plural="agents",
            singular="agent",
            model=Agent,
            spec_model=AgentSpec,
            status_model=AgentStatus,
            short_names=("ag",),
            printer_columns=(
                PrinterColumn("Version", "string", ".spec.version", "Desired AgentVersion."),
                PrinterColumn("Stable", "string", ".status.stableVersion", "Version serving most traffic."),
                PrinterColumn("Weight", "integer", ".status.canaryWeight", "Canary traffic percent."),
                _PHASE,
                _AGE,
            ),
        ),
        KindInfo(
            kind="AgentRollout",
            plural="agentrollouts",
            singular="agentrollout",
            model=AgentRollout,
            spec_model=AgentRolloutSpec,
            status_model=AgentRolloutStatus,
            short_names=("agr",),
            printer_columns=(
                PrinterColumn("Agent", "string", ".spec.agentRef.name", "The Agent rolled out."),
                PrinterColumn("Target", "string", ".spec.targetVersion", "The AgentVersion moved to."),
                PrinterColumn("Step", "integer", ".status.currentStep", "Current canary step."),
                PrinterColumn("Weight", "integer", ".status.weight", "Percent of traffic to the target."),
                _PHASE,
                _AGE,
            ),
        ),
        KindInfo(
            kind="AgentRetirement",
            plural="agentretirements",
            singular="agentretirement",
            model=AgentRetirement,
            spec_model=AgentRetirementSpec,
            status_model=AgentRetirementStatus,
            short_names=("agret",),
            printer_columns=(
                PrinterColumn("Agent", "string", ".spec.agentRef.name", "The Agent retired."),
                _PHASE,
                PrinterColumn("Reason", "string", ".spec.reason", "Why the Agent retires."),
                _AGE,
            ),
        ),
    )
}
"""Every alm kind by kind name, in a fixed order (the order of the CRDs)."""
