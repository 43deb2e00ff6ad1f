"""Each stage's application stack as `python infra/package_app.py` packages it for a deploy (build/STAGE:
sam.yaml and deployment.zip), and infra/template.yaml, read as CloudFormation reads them.

`make test` packages every stage first (`make package`); run alone, the tests package what is
missing or older than its sources, one process at a time."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.emulator import load_template
from tests.conftest import ROOT, TEMPLATE

BUILD = ROOT / "build"
CHALICE_CONFIG = ROOT / ".chalice" / "config.json"
STAGES = sorted(json.loads(CHALICE_CONFIG.read_text())["stages"])
# What a packaged stage is made from.
SOURCES = [ROOT / "app.py", ROOT / "requirements.txt", ROOT / "infra" / "app-merge.yaml",
           ROOT / "infra" / "package_app.py", *(ROOT / ".chalice").glob("*.json"), *(ROOT / "chalicelib").rglob("*")]


def _stale(stage: str) -> bool:
    built = BUILD / stage / "sam.yaml"
    if not built.exists() or not (BUILD / stage / "deployment.zip").exists():
        return True
    newest = max(path.stat().st_mtime for path in SOURCES if path.is_file() and "__pycache__" not in path.parts)
    return built.stat().st_mtime < newest


def _package(stage: str) -> None:
    BUILD.mkdir(exist_ok=True)
    with (BUILD / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one packaging at a time across test processes
        if _stale(stage):
            env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
            done = subprocess.run([sys.executable, "infra/package_app.py", "--stage", stage], cwd=ROOT, env=env,
                                  capture_output=True, text=True)
            assert done.returncode == 0, done.stdout + done.stderr


def packaged_stage(stage: str) -> Path:
    """build/STAGE, packaged from the current sources."""
    if _stale(stage):
        _package(stage)
    return BUILD / stage


@pytest.fixture(scope="session")
def packaged() -> Iterator[dict[str, dict[str, Any]]]:
    """Stage → its packaged template (build/STAGE/sam.yaml)."""
    yield {stage: yaml.safe_load((packaged_stage(stage) / "sam.yaml").read_text()) for stage in STAGES}


@pytest.fixture(scope="session")
def infra() -> dict[str, Any]:
    return load_template(TEMPLATE)


def resources_of(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: resource for name, resource in template["Resources"].items() if resource["Type"] == resource_type}


def environment(function: dict[str, Any]) -> dict[str, str]:
    return dict(function["Properties"].get("Environment", {}).get("Variables", {}))


def resolve(node: Any, parameters: dict[str, str]) -> Any:
    """`node` with Ref, Fn::Sub, Fn::Join and Fn::Split of the given parameters evaluated."""
    if isinstance(node, list):
        return [resolve(item, parameters) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        return parameters[node["Ref"]]
    if set(node) == {"Fn::Sub"}:
        text = node["Fn::Sub"]
        for name, value in parameters.items():
            text = text.replace("${" + name + "}", value)
        return text
    if set(node) == {"Fn::Join"}:
        separator, items = node["Fn::Join"]
        return separator.join(resolve(items, parameters))
    if set(node) == {"Fn::Split"}:
        separator, text = node["Fn::Split"]
        return resolve(text, parameters).split(separator)
    return {key: resolve(value, parameters) for key, value in node.items()}
