"""manifests/: the MCP Bundle manifest (validated by the official `mcpb` CLI), the MCP registry's
server.json (validated against the registry's schema, kept in tests/fixtures), and the client templates."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path

import jsonschema
import pytest

from gum_mcp import __version__
from gum_mcp.config import default_data_dir, env_names, load_settings
from gum_mcp.install import CLIENTS, PLACEHOLDER, SERVER_NAME, TEMPLATES_DIR

REPO = Path(__file__).resolve().parent.parent
MANIFESTS = REPO / "manifests"
MANIFEST = MANIFESTS / "manifest.json"
SERVER_JSON = MANIFESTS / "server.json"
SCHEMA = REPO / "tests" / "fixtures" / "server.schema.json"
# sha256 of https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json, byte for byte
SCHEMA_SHA256 = "3fba09590c99f61735d234822279f4223fab9e300c0a81e81c91ab62a4114de0"
MCPB = REPO / "node_modules" / ".bin" / ("mcpb.cmd" if os.name == "nt" else "mcpb")
TOOLS = {"query_user", "list_propositions", "get_proposition", "get_recent_activity", "record_observation",
         "give_feedback", "forget", "status", "suggest_actions", "respond_to_suggestion",
         "pause_observing", "resume_observing", "record_edit", "decide_or_ask"}
USER_CONFIG = re.compile(r"\$\{user_config\.(\w+)\}")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def mcpb_cli() -> list[str]:
    """The official bundle CLI from node_modules: skipped when absent, except on CI where it is required."""
    if MCPB.exists() and shutil.which("node"):
        return [str(MCPB)]
    reason = "the MCP Bundle CLI (@anthropic-ai/mcpb) is not installed: run `npm ci` in the repository root"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true, where this check is required)")
    pytest.skip(reason)


def mcpb(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([*mcpb_cli(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------------------------------------ manifest.json
def test_manifest_is_valid_for_the_official_bundle_cli() -> None:
    result = mcpb("validate", str(MANIFEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validation passes" in result.stdout


def test_the_bundle_cli_does_reject_a_broken_manifest(tmp_path) -> None:
    broken = load(MANIFEST)
    del broken["server"]["entry_point"]
    broken["user_config"]["openai_api_key"]["type"] = "password"
    (tmp_path / "manifest.json").write_text(json.dumps(broken))
    result = mcpb("validate", str(tmp_path / "manifest.json"))
    assert result.returncode != 0
    assert "entry_point" in result.stdout + result.stderr


def test_the_bundle_packs_with_the_project_it_runs(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("build_bundle", MANIFESTS / "build_bundle.py")
    build_bundle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_bundle)
    mcpb_cli()
    bundle = build_bundle.build(tmp_path / "dist")
    assert bundle.name == f"gum-mcp-{__version__}.mcpb"
    names = set(zipfile.ZipFile(bundle).namelist())
    manifest = load(MANIFEST)
    assert {"manifest.json", "pyproject.toml", "README.md", manifest["server"]["entry_point"]} <= names
    assert not any("__pycache__" in name for name in names)
    # the host runs `uv run --directory <bundle> gum-mcp serve`: the bundled project must provide `gum-mcp`
    args = manifest["server"]["mcp_config"]["args"]
    assert manifest["server"]["mcp_config"]["command"] == "uv"
    assert args[:3] == ["run", "--directory", "${__dirname}"] and args[-1] == "serve"
    assert args[3] in pyproject()["project"]["scripts"]


def test_manifest_describes_this_version_and_these_settings() -> None:
    manifest = load(MANIFEST)
    assert manifest["manifest_version"] == "0.4" and manifest["server"]["type"] == "uv"
    assert manifest["version"] == __version__ == pyproject()["project"]["version"]
    assert manifest["compatibility"]["runtimes"]["python"] == pyproject()["project"]["requires-python"]
    env = manifest["server"]["mcp_config"]["env"]
    assert set(env) <= set(env_names())
    assert set(env) >= {"GUM_DATA_DIR", "GUM_LLM_PROVIDER", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GUM_USER_NAME"}
    user_config = manifest["user_config"]
    used = {name for value in env.values() for name in USER_CONFIG.findall(value)}
    assert used == set(user_config)  # every option is passed on, and only declared options are referenced
    assert user_config["data_dir"]["type"] == "directory"
    for name, option in user_config.items():
        assert option.get("sensitive", False) == name.endswith("api_key"), name
        assert option.get("required") or "default" in option, f"{name}: an optional field needs a default"


def substitute(env: dict[str, str], values: dict[str, str]) -> dict[str, str]:
    """What an MCPB host does with mcp_config.env."""
    return {key: USER_CONFIG.sub(lambda m: values[m.group(1)], value) for key, value in env.items()}


def test_a_bundle_left_at_its_defaults_runs_with_gum_mcps_defaults(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    manifest = load(MANIFEST)
    defaults = {name: option.get("default", "") for name, option in manifest["user_config"].items()}
    settings = load_settings(env=substitute(manifest["server"]["mcp_config"]["env"], defaults), cwd=tmp_path)
    assert settings.data_dir == default_data_dir()  # the same data dir as the gum-mcp command
    assert settings.llm_provider == "openai" and settings.user_name == "the user"
    assert settings.openai_api_key is None and settings.anthropic_api_key is None
    assert settings.openai_base_url is None


def test_bundle_options_reach_the_settings(tmp_path) -> None:
    manifest = load(MANIFEST)
    values = {"data_dir": str(tmp_path / "gum"), "llm_provider": "anthropic", "openai_api_key": "",
              "anthropic_api_key": "sk-ant-test", "openai_base_url": "", "user_name": "Priya"}
    settings = load_settings(env=substitute(manifest["server"]["mcp_config"]["env"], values), cwd=tmp_path)
    assert settings.data_dir == tmp_path / "gum"
    assert settings.llm_provider == "anthropic" and settings.anthropic_api_key == "sk-ant-test"
    assert settings.user_name == "Priya" and settings.openai_api_key is None


@pytest.mark.anyio
async def test_manifest_lists_exactly_the_servers_tools_and_prompts(tmp_path) -> None:
    from mcp import Client

    from gum_mcp.runtime import Runtime
    from gum_mcp.server import build_server
    from tests.conftest import make_settings

    manifest = load(MANIFEST)
    runtime = Runtime(make_settings(tmp_path / "data"))
    try:
        async with Client(build_server(runtime, manage_runtime=False), mode="legacy") as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            prompts = {p.name: sorted(a.name for a in p.arguments or []) for p in (await client.list_prompts()).prompts}
    finally:
        runtime.close()
    assert {t["name"] for t in manifest["tools"]} == tools == TOOLS
    assert all(t.get("description") for t in manifest["tools"])
    assert {p["name"]: sorted(p.get("arguments", [])) for p in manifest["prompts"]} == prompts


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ------------------------------------------------------------------------------------------------ server.json
def validator() -> jsonschema.Draft7Validator:
    schema = load(SCHEMA)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def test_the_registry_schema_is_the_published_one() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert load(SCHEMA)["$id"] == load(SERVER_JSON)["$schema"]


def test_server_json_is_valid_against_the_registry_schema() -> None:
    errors = sorted(validator().iter_errors(load(SERVER_JSON)), key=str)
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


@pytest.mark.parametrize(("path", "value"), [
    (("description",), "x" * 101),
    (("name",), "gum-mcp"),
    (("packages", 0, "transport", "type"), "carrier-pigeon"),
    (("packages", 0, "version"), "latest"),
])
def test_the_registry_schema_does_reject_bad_server_json(path, value) -> None:
    doc = load(SERVER_JSON)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert list(validator().iter_errors(doc))


def test_server_json_describes_this_package() -> None:
    doc = load(SERVER_JSON)
    project = pyproject()["project"]
    assert doc["version"] == __version__
    [package] = doc["packages"]
    assert package["registryType"] == "pypi" and package["identifier"] == project["name"]
    assert package["version"] == project["version"]
    assert package["transport"] == {"type": "stdio"}
    assert [a["value"] for a in package["packageArguments"]] == ["serve"]
    assert package["identifier"] in project["scripts"]  # `uvx gum-mcp serve` runs the console script
    variables = {v["name"]: v for v in package["environmentVariables"]}
    assert set(variables) <= set(env_names())
    for name, variable in variables.items():
        assert variable["isSecret"] == name.endswith("_API_KEY"), name
    assert {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"} <= set(variables)


# ------------------------------------------------------------------------------------------------ clients
def test_every_client_has_one_template_holding_the_gum_server() -> None:
    assert {p.stem for p in TEMPLATES_DIR.glob("*.json")} == set(CLIENTS)
    for name, client in CLIENTS.items():
        text = (TEMPLATES_DIR / f"{name}.json").read_text(encoding="utf-8")
        template = json.loads(text)
        assert list(template) == [client.container], name
        assert list(template[client.container]) == [SERVER_NAME], name
        assert set(PLACEHOLDER.findall(text)) == {"command", "args", "data_dir", "client"}, name
        entry = template[client.container][SERVER_NAME]
        assert entry["args"] == "{{args}}"
        assert entry["env"] == {"GUM_DATA_DIR": "{{data_dir}}", "GUM_CLIENT": "{{client}}"}
        if name in ("vscode", "claude-code"):
            assert entry["type"] == "stdio"  # required by VS Code; Claude Code's own format


def test_readme_gives_each_client_its_command() -> None:
    docs = (REPO / "README.md").read_text(encoding="utf-8")
    for name, client in CLIENTS.items():
        assert f"gum-mcp install {name}" in docs, name
        assert client.title in docs
