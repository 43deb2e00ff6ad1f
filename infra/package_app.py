"""Package the application stack: `python infra/package_app.py [--stage prod [--out build/prod]]`.

Runs `chalice package --stage STAGE --merge-template infra/app-merge.yaml` (the API handler, the
sweeper, the REST API, and from the merge template the streaming function, its Function URL,
the CloudFront distribution and the gateway responses), then gives the streaming function what
it must share with the API handler Chalice generated from .chalice/config.json: runtime,
architecture, memory, timeout, role (one policy for both) and the stage's environment variables.
Without --stage, every stage of .chalice/config.json is packaged, each into build/STAGE.
The result is OUT/sam.yaml and OUT/deployment.zip, the one code artifact both functions run, for
`aws cloudformation package` and `aws cloudformation deploy`.

No AWS call is made, but Chalice needs a region: set AWS_DEFAULT_REGION (or a region in the AWS
profile) to the region the stack goes to.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore.exceptions
import botocore.session
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHALICE_CONFIG = ROOT / ".chalice" / "config.json"
MERGE_TEMPLATE = ROOT / "infra" / "app-merge.yaml"
TEMPLATE_FILE = "sam.yaml"

API_HANDLER = "APIHandler"
STREAM_FUNCTION = "StreamFunction"
# The API handler's settings the streaming function runs with too.
SHARED_PROPERTIES = ("Runtime", "Architectures", "MemorySize", "Timeout", "Role", "Tracing", "Tags")
# The Web Adapter is the streaming server's only peer: the caller is the address it forwards.
ADAPTER_PEER = "127.0.0.1/32"


class PackagingError(Exception):
    pass


def chalice_command() -> list[str]:
    beside = Path(sys.executable).with_name("chalice")
    found = str(beside) if beside.exists() else shutil.which("chalice")
    if found is None:
        raise PackagingError("chalice is not installed (pip install -r requirements-server.txt)")
    return [found]


def package(stage: str, out: Path) -> Path:
    """Package `stage` into `out`; the completed template's path."""
    try:
        region = botocore.session.Session().get_config_variable("region")
    except botocore.exceptions.BotoCoreError as exc:  # a profile named but not configured
        raise PackagingError(str(exc)) from exc
    if not region:
        raise PackagingError("set AWS_DEFAULT_REGION (or a region in your AWS profile) to the region the stack "
                             "is deployed to: chalice package needs one, though it calls no AWS service")
    if out.exists():
        shutil.rmtree(out)
    command = chalice_command() + ["--project-dir", str(ROOT), "package", "--stage", stage,
                                   "--merge-template", str(MERGE_TEMPLATE), "--template-format", "yaml", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise PackagingError(f"chalice package failed:\n{done.stdout}{done.stderr}")
    template_path = out / TEMPLATE_FILE
    template = yaml.safe_load(template_path.read_text())
    complete_stream_function(template)
    template_path.write_text(yaml.safe_dump(template, allow_unicode=True, sort_keys=True))
    return template_path


def complete_stream_function(template: dict[str, Any]) -> None:
    """Give the streaming function the API handler's settings and environment, its own on top."""
    resources = template["Resources"]
    api = resources[API_HANDLER]["Properties"]
    stream = resources[STREAM_FUNCTION]["Properties"]
    for name in SHARED_PROPERTIES:
        if name in api:
            stream[name] = api[name]
    shared_env = dict((api.get("Environment") or {}).get("Variables") or {})
    own_env = stream["Environment"]["Variables"]
    proxies = [part for part in (shared_env.get("TOKENWAY_TRUSTED_PROXIES") or "").split(",") if part.strip()]
    own_env["TOKENWAY_TRUSTED_PROXIES"] = ",".join([ADAPTER_PEER, *proxies])
    stream["Environment"]["Variables"] = {**shared_env, **own_env}


def stages() -> list[str]:
    """The stages of .chalice/config.json."""
    return sorted(json.loads(CHALICE_CONFIG.read_text())["stages"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python infra/package_app.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", help="a stage of .chalice/config.json (default: each of them)")
    parser.add_argument("--out", type=Path, help="the output directory (default build/STAGE)")
    args = parser.parse_args(argv)
    if args.out is not None and args.stage is None:
        parser.error("--out needs --stage")
    for stage in [args.stage] if args.stage else stages():
        out = args.out or ROOT / "build" / stage
        try:
            template_path = package(stage, out)
        except PackagingError as exc:
            print(exc, file=sys.stderr)
            return 1
        size = (out / "deployment.zip").stat().st_size
        print(f"{template_path}: stage {stage}, deployment.zip {size / 1e6:.1f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
