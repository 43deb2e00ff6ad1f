"""Package the application stack: `python infra/package_app.py [--stage prod [--out build/prod]]`.

Runs `chalice package --stage STAGE --merge-template infra/app-merge.yaml` (the API handler, the
sweeper, the REST API, and from the merge template the streaming function, its Function URL,
the CloudFront distribution and the gateway responses), then gives the streaming function what
it must share with the API handler Chalice generated from .chalice/config.json: runtime,
architecture, memory, timeout, role (one policy for both) and the stage's environment variables;
and adds the modules' compiled bytecode to the package.
Without --stage, every stage of .chalice/config.json is packaged, each into build/STAGE.
The result is OUT/sam.yaml and OUT/deployment.zip, the one code artifact both functions run, for
`aws cloudformation package` and `aws cloudformation deploy`.

No AWS call is made, but Chalice needs a region: set AWS_DEFAULT_REGION (or a region in the AWS
profile) to the region the stack goes to.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import py_compile
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import botocore.exceptions
import botocore.session
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHALICE_CONFIG = ROOT / ".chalice" / "config.json"
MERGE_TEMPLATE = ROOT / "infra" / "app-merge.yaml"
TEMPLATE_FILE = "sam.yaml"
ARCHIVE_FILE = "deployment.zip"
BYTECODE_CACHE = ROOT / "build" / ".bytecode"
# Where Lambda unpacks the code: the paths tracebacks name.
TASK_ROOT = "/var/task"

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
    name_resource_prefix(template)
    add_bytecode(out / ARCHIVE_FILE, template["Resources"][API_HANDLER]["Properties"]["Runtime"])
    template_path.write_text(yaml.safe_dump(template, allow_unicode=True, sort_keys=True))
    return template_path


def add_bytecode(archive: Path, runtime: str) -> None:
    """Add every module's compiled bytecode to the package. Lambda's code directory is read-only, so
    without it each cold start compiles every module it imports (seconds, against Lambda's 10 s for
    a function's start). Hash-based and unchecked: the files are read as they are, whatever the
    sources' times. Chalice took the runtime from this interpreter, so the bytecode is the runtime's;
    both stages' packages are the same archive, compiled once (build/.bytecode)."""
    if runtime != f"python{sys.version_info.major}.{sys.version_info.minor}":
        raise PackagingError(f"the functions run {runtime}, this interpreter is {sys.version.split()[0]}")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    cached = BYTECODE_CACHE / f"{digest}.zip"
    if not cached.exists():
        BYTECODE_CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            compiled = Path(tmp) / "code"
            with zipfile.ZipFile(archive) as source:
                source.extractall(compiled)
            compileall.compile_dir(compiled, quiet=2, stripdir=str(compiled), prependdir=TASK_ROOT,
                                   invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
            partial = Path(tmp) / "with-bytecode.zip"
            with zipfile.ZipFile(archive) as source, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as target:
                for info in source.infolist():
                    target.writestr(info, source.read(info))
                for path in sorted(compiled.rglob("*.pyc")):
                    entry = zipfile.ZipInfo(path.relative_to(compiled).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
                    entry.external_attr = 0o644 << 16
                    entry.compress_type = zipfile.ZIP_DEFLATED
                    target.writestr(entry, path.read_bytes())
            for stale in BYTECODE_CACHE.glob("*.zip"):
                stale.unlink()
            shutil.move(partial, cached)
    shutil.copyfile(cached, archive)


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


def name_resource_prefix(template: dict[str, Any]) -> None:
    """The stage's resource prefix as the default of the template's ResourcePrefix parameter, which
    names the infra stack's exports (the usage-outbox stream)."""
    variables = (template["Resources"][API_HANDLER]["Properties"].get("Environment") or {}).get("Variables") or {}
    prefix = variables.get("TOKENWAY_RESOURCE_PREFIX")
    if not prefix:
        raise PackagingError("the stage sets no TOKENWAY_RESOURCE_PREFIX in .chalice/config.json")
    template["Parameters"]["ResourcePrefix"]["Default"] = prefix


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
        size = (out / ARCHIVE_FILE).stat().st_size
        print(f"{template_path}: stage {stage}, deployment.zip {size / 1e6:.1f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
