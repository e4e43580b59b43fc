"""The runtime reads exactly what the operator renders, and says what is wrong when it cannot."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from alm.api import AgentVersionSpec
from alm.core import versionconfig
from alm.runtime import config, credentials
from tests.unit.builders import SECRET_VALUE, version_body

ENV = {"ALM_AGENT": "bot", "ALM_AGENT_VERSION": "bot-v1"}


def rendered(**spec_overrides: Any) -> dict[str, Any]:
    """The operator's config.json for the builders' version (crm with credentials, search read-only)."""
    spec = AgentVersionSpec.model_validate(version_body(**spec_overrides)["spec"])
    return versionconfig.render_config("bot-v1", spec)


def test_parses_what_the_operator_renders() -> None:
    cfg = config.parse(rendered(), ENV, "Be polite.")
    assert cfg == config.RuntimeConfig(
        agent="bot", version="bot-v1", shadow=False,
        model=config.ModelConfig("simulated", "sim-1", {}, config.Pricing(1.0, 2.0)),
        instructions="Be polite.",
        tools=(
            config.ToolConfig("crm", "http", False, "https://crm.example.com/api",
                              pathlib.Path(versionconfig.CREDENTIALS_MOUNT) / "tool-crm"),
            config.ToolConfig("search", "http", True, "https://search.example.com"),
        ),
    )  # fmt: skip
    assert cfg.tool("search") is cfg.tools[1]
    assert cfg.tool("nope") is None


def test_model_extra_and_mcp_tools() -> None:
    doc = rendered(
        model={"provider": "simulated", "name": "sim-2", "parameters": {"temperature": 0.2, "extra": {"seed": "4"}}},
        tools=[{"name": "kb", "type": "mcp", "mcpUrl": "https://kb.example.com/mcp", "readOnly": True}],
    )
    cfg = config.parse(doc, ENV)
    assert cfg.model.extra == {"seed": "4"}
    assert cfg.model.pricing == config.Pricing()
    assert cfg.tools == (config.ToolConfig("kb", "mcp", True, "https://kb.example.com/mcp"),)


def test_credentials_are_relocated_by_file_name() -> None:
    cfg = config.parse(rendered(), ENV, credentials_dir=pathlib.Path("/tmp/creds"))
    assert cfg.tools[0].credential_file == pathlib.Path("/tmp/creds/tool-crm")


def test_environment_names_the_agent_version_and_shadow() -> None:
    cfg = config.parse(rendered(), {"ALM_AGENT": "bot", "ALM_SHADOW": "TRUE"})
    assert (cfg.version, cfg.shadow) == ("bot-v1", True)  # version from agentVersion when env has none
    assert config.parse(rendered(), {**ENV, "ALM_AGENT_VERSION": "other"}).version == "other"


@pytest.mark.parametrize(("mutate", "env", "message"), [
    (lambda d: d, {}, "ALM_AGENT is not set"),
    (lambda d: d.pop("agentVersion"), {"ALM_AGENT": "bot"}, "names the version"),
    (lambda d: d, {**ENV, "ALM_SHADOW": "yes"}, "ALM_SHADOW must be true or false"),
    (lambda d: d.pop("model"), ENV, "model must be a dict"),
    (lambda d: d["model"].pop("provider"), ENV, "model.provider must be a str"),
    (lambda d: d["model"]["pricing"].update(inputPerMillionTokensUSD=-1), ENV, "inputPerMillionTokensUSD"),
    (lambda d: d["model"].update(parameters={"extra": {"seed": 3}}), ENV, "extra must map names to strings"),
    (lambda d: d["tools"][0].pop("name"), ENV, r"tools\[0\].name must be a str"),
])  # fmt: skip
def test_wrong_configs_are_named(mutate: Any, env: dict[str, str], message: str) -> None:
    doc = rendered()
    mutate(doc)
    with pytest.raises(config.ConfigError, match=message):
        config.parse(doc, env)


def test_unknown_fields_are_ignored() -> None:
    doc = rendered()
    doc["futureField"] = {"x": 1}
    doc["tools"][1]["futureField"] = True
    assert config.parse(doc, ENV).tools[1].read_only


# --- Loading -------------------------------------------------------------------------------------


def write(directory: pathlib.Path, doc: Any, instructions: str | None = "Be polite.") -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(doc))
    if instructions is not None:
        (directory / "instructions.md").write_text(instructions)
    return {**ENV, "ALM_CONFIG_FILE": str(directory / "config.json")}


def test_load_reads_the_config_and_the_instructions_next_to_it(tmp_path: pathlib.Path) -> None:
    env = write(tmp_path / "config", rendered())
    cfg = config.load({**env, "ALM_CREDENTIALS_DIR": str(tmp_path / "creds")})
    assert cfg.instructions == "Be polite."
    assert cfg.tools[0].credential_file == tmp_path / "creds" / "tool-crm"


def test_missing_files_are_not_ready_yet(tmp_path: pathlib.Path) -> None:
    with pytest.raises(config.ConfigNotReady, match="does not exist yet"):
        config.load({**ENV, "ALM_CONFIG_FILE": str(tmp_path / "config.json")})
    env = write(tmp_path, rendered(), instructions=None)
    with pytest.raises(config.ConfigNotReady, match=r"instructions\.md does not exist yet"):
        config.load(env)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_unreadable_configs_are_errors(tmp_path: pathlib.Path, content: str) -> None:
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(config.ConfigError):
        config.load({**ENV, "ALM_CONFIG_FILE": str(tmp_path / "config.json")})


def test_load_needs_the_config_file_variable() -> None:
    with pytest.raises(config.ConfigError, match="ALM_CONFIG_FILE is not set"):
        config.load(ENV)


# --- Server settings -----------------------------------------------------------------------------


def test_server_settings() -> None:
    assert config.ServerSettings.from_env({}) == config.ServerSettings("0.0.0.0", 8080, 25.0)
    env = {"ALM_HOST": "127.0.0.1", "ALM_PORT": "0", "ALM_DRAIN_SECONDS": "2.5"}
    assert config.ServerSettings.from_env(env) == config.ServerSettings("127.0.0.1", 0, 2.5)


@pytest.mark.parametrize("env", [{"ALM_PORT": "http"}, {"ALM_DRAIN_SECONDS": "-1"}, {"ALM_PORT": "1.5"}])
def test_bad_server_settings(env: dict[str, str]) -> None:
    with pytest.raises(config.ConfigError, match=next(iter(env))):
        config.ServerSettings.from_env(env)


# --- Credentials ---------------------------------------------------------------------------------


def test_a_secret_never_prints(tmp_path: pathlib.Path) -> None:
    (tmp_path / "key").write_text(SECRET_VALUE + "\n")
    secret = credentials.read(tmp_path / "key")
    assert secret.reveal() == SECRET_VALUE
    for shown in (str(secret), repr(secret), f"{secret}", f"{secret!r}", repr([secret])):
        assert SECRET_VALUE not in shown


def test_a_missing_credential_says_which_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(credentials.CredentialUnavailable, match="tool-crm is unavailable"):
        credentials.read(tmp_path / "tool-crm")
