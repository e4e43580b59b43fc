"""What the runtime is told: the operator's rendered config file plus a few environment variables.

The operator mounts ``config.json`` (shape: ``alm.core.versionconfig.render_config``) and the
instructions next to it, and sets ``ALM_AGENT``, ``ALM_AGENT_VERSION``, ``ALM_CONFIG_FILE``,
``ALM_CREDENTIALS_DIR`` and ``ALM_SHADOW``. ``parse`` is pure; ``load`` reads the files.

The runtime parses the document itself rather than with the API models: an image built from
another release must still start, so unknown fields are ignored here, while the fields the
runtime needs are checked and named in the error when wrong.

Paths are relocatable so the same config runs outside a pod: the instructions are read from the
directory of ``ALM_CONFIG_FILE`` and credentials from ``ALM_CREDENTIALS_DIR`` (by file name)
when those are set; in a pod both equal the mount points the config names.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = [
    "ConfigError",
    "ConfigNotReady",
    "ModelConfig",
    "Pricing",
    "RuntimeConfig",
    "ServerSettings",
    "ToolConfig",
    "load",
    "parse",
]


class ConfigError(Exception):
    """The config is wrong and will stay wrong (a ConfigMap is immutable): fix the AgentVersion."""


class ConfigNotReady(Exception):
    """A file the config needs is not there yet (a mount still settling): try again shortly."""


@dataclasses.dataclass(frozen=True)
class Pricing:
    """US dollars per million tokens, from ``model.pricing``."""

    input_per_million_usd: float = 0.0
    output_per_million_usd: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """Cost of a model call, e.g. 1000 in + 500 out at $3/$15 = 0.003 + 0.0075 = $0.0105."""
        return (input_tokens * self.input_per_million_usd + output_tokens * self.output_per_million_usd) / 1e6


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    provider: str
    name: str
    extra: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """``model.parameters.extra``: provider-specific settings, all strings."""
    pricing: Pricing = Pricing()


@dataclasses.dataclass(frozen=True)
class ToolConfig:
    name: str
    type: str
    read_only: bool = False
    endpoint: str | None = None
    credential_file: pathlib.Path | None = None


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """Everything the runtime serves with; one per process."""

    agent: str
    version: str
    shadow: bool
    model: ModelConfig
    instructions: str = ""
    tools: tuple[ToolConfig, ...] = ()

    def tool(self, name: str) -> ToolConfig | None:
        return next((t for t in self.tools if t.name == name), None)


_N = TypeVar("_N", int, float)


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """How the HTTP server listens and drains (env ``ALM_HOST``, ``ALM_PORT``, ``ALM_DRAIN_SECONDS``)."""

    host: str = "0.0.0.0"
    port: int = 8080
    """0 picks a free port (tests read it from the log line)."""
    drain_seconds: float = 25.0
    """At most this long to finish in-flight tasks after SIGTERM; below the pod's grace period."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ServerSettings:
        return cls(
            host=environ.get("ALM_HOST", cls.host),
            port=_number(environ, "ALM_PORT", cls.port, int),
            drain_seconds=_number(environ, "ALM_DRAIN_SECONDS", cls.drain_seconds, float),
        )


def _number(environ: Mapping[str, str], key: str, default: _N, kind: type[_N]) -> _N:
    raw = environ.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a {kind.__name__}") from None
    if value < 0:
        raise ConfigError(f"{key}={raw!r} must not be negative")
    return value


# --- Parsing (pure) ------------------------------------------------------------------------------


def _require(doc: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind):
        raise ConfigError(f"{where}{key} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _pricing(doc: Mapping[str, Any]) -> Pricing:
    values = []
    for key in ("inputPerMillionTokensUSD", "outputPerMillionTokensUSD"):
        value = doc.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"model.pricing.{key} must be a non-negative number, got {value!r}")
        values.append(float(value))
    return Pricing(*values)


def _model(doc: Mapping[str, Any]) -> ModelConfig:
    model = _require(doc, "model", dict, "")
    parameters = model.get("parameters") or {}
    extra = parameters.get("extra") or {}
    if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
        raise ConfigError("model.parameters.extra must map names to strings")
    return ModelConfig(
        provider=_require(model, "provider", str, "model."),
        name=_require(model, "name", str, "model."),
        extra=dict(extra),
        pricing=_pricing(model.get("pricing") or {}),
    )


def _relocate(path: str | None, directory: pathlib.Path | None) -> pathlib.Path | None:
    if path is None:
        return None
    return directory / pathlib.PurePath(path).name if directory is not None else pathlib.Path(path)


def _tools(doc: Mapping[str, Any], credentials_dir: pathlib.Path | None) -> tuple[ToolConfig, ...]:
    tools = []
    for i, entry in enumerate(doc.get("tools") or []):
        where = f"tools[{i}]."
        if not isinstance(entry, dict):
            raise ConfigError(f"tools[{i}] must be an object")
        tools.append(ToolConfig(
            name=_require(entry, "name", str, where),
            type=_require(entry, "type", str, where),
            read_only=entry.get("readOnly", False) is True,
            endpoint=entry.get("endpoint") or entry.get("mcpUrl"),
            credential_file=_relocate(entry.get("credentialFile"), credentials_dir),
        ))  # fmt: skip
    return tuple(tools)


def parse(
    doc: Mapping[str, Any],
    environ: Mapping[str, str],
    instructions: str = "",
    credentials_dir: pathlib.Path | None = None,
) -> RuntimeConfig:
    """The runtime config from the rendered document and the environment."""
    agent = environ.get("ALM_AGENT", "")
    if not agent:
        raise ConfigError("ALM_AGENT is not set (the operator sets it to the Agent's name)")
    version = environ.get("ALM_AGENT_VERSION") or doc.get("agentVersion")
    if not isinstance(version, str) or not version:
        raise ConfigError("neither ALM_AGENT_VERSION nor agentVersion in the config names the version")
    shadow = environ.get("ALM_SHADOW", "false").lower()
    if shadow not in ("true", "false"):
        raise ConfigError(f"ALM_SHADOW must be true or false, got {shadow!r}")
    return RuntimeConfig(
        agent=agent,
        version=version,
        shadow=shadow == "true",
        model=_model(doc),
        instructions=instructions,
        tools=_tools(doc, credentials_dir),
    )


# --- Loading (I/O) -------------------------------------------------------------------------------


def load(environ: Mapping[str, str] = os.environ) -> RuntimeConfig:
    """Read ``ALM_CONFIG_FILE`` and the instructions next to it, then ``parse``."""
    path_value = environ.get("ALM_CONFIG_FILE")
    if not path_value:
        raise ConfigError("ALM_CONFIG_FILE is not set (the operator sets it to the mounted config.json)")
    path = pathlib.Path(path_value)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigNotReady(f"{path} does not exist yet") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    instructions = ""
    if isinstance(doc.get("instructionsFile"), str):
        instructions_path = path.parent / pathlib.PurePath(doc["instructionsFile"]).name
        try:
            instructions = instructions_path.read_text()
        except FileNotFoundError:
            raise ConfigNotReady(f"{instructions_path} does not exist yet") from None
    credentials_dir = environ.get("ALM_CREDENTIALS_DIR")
    return parse(doc, environ, instructions, pathlib.Path(credentials_dir) if credentials_dir else None)
