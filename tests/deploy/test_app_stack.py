"""The packaged application stack of each stage: its functions, the streaming function behind its
Function URL, the sweeper's schedule, the CloudFront base URL, the outputs, and the package itself."""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import stat
import subprocess
import sys
import zipfile
from fnmatch import fnmatchcase
from typing import Any

import pytest

from app import app
from chalicelib.api.routing import served_routes
from chalicelib.config import Settings
from tests.conftest import ROOT
from tests.deploy.conftest import BUILD, CHALICE_CONFIG, STAGES, environment, resources_of

FUNCTION = "AWS::Serverless::Function"
# CloudFront's managed policies: CachingDisabled, and AllViewerExceptHostHeader.
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
ALL_METHODS = {"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"}


def settings_of(function: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a function builds from its environment, as config.py reads it on Lambda."""
    for name in list(Settings.model_fields) + ["AWS_REGION", "AWS_DEFAULT_REGION"]:
        monkeypatch.delenv(f"TOKENWAY_{name.upper()}", raising=False)
    for name, value in environment(function).items():
        if name != "TOKENWAY_SECRETS_ID":  # the secret's values (credentials, keys) are not what is checked here
            monkeypatch.setenv(name, str(value))
    return Settings()


def test_every_stage_of_the_chalice_config_is_packaged(packaged: dict[str, Any]) -> None:
    assert set(packaged) == set(STAGES) == {"dev", "prod"}
    for stage in STAGES:
        assert (BUILD / stage / "deployment.zip").stat().st_size > 0


@pytest.mark.parametrize("stage", STAGES)
def test_every_function_outlasts_the_upstream_timeout_it_is_configured_with(
        packaged: dict[str, Any], stage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    functions = resources_of(packaged[stage], FUNCTION)
    assert set(functions) == {"APIHandler", "SweepExpiredHolds", "UsageForwarder", "StreamFunction"}
    for name, function in functions.items():
        settings = settings_of(function, monkeypatch)
        assert settings.upstream_timeout_s == 120
        # Past the upstream's timeout the relay still settles the hold and answers.
        assert function["Properties"]["Timeout"] > settings.upstream_timeout_s + 10, name
        assert settings.resource_prefix == f"tokenway-{stage}", name


@pytest.mark.parametrize("stage", STAGES)
def test_the_streaming_function_runs_the_server_under_the_web_adapter_behind_a_streaming_url(
        packaged: dict[str, Any], stage: str) -> None:
    resources = packaged[stage]["Resources"]
    stream = resources["StreamFunction"]["Properties"]
    env = environment(resources["StreamFunction"])
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["AWS_LWA_READINESS_CHECK_PATH"] == "/api/openapi.json"
    assert int(env["AWS_LWA_PORT"]) > 1024
    assert (env["TOKENWAY_SERVER_WORKERS"], env["TOKENWAY_SERVER_THREADS"]) == ("1", "4")
    # Frozen between requests: the worker is never taken for hung, the adapter's connection outlives a freeze.
    assert env["TOKENWAY_SERVER_WORKER_TIMEOUT_S"] == "0" and int(env["TOKENWAY_SERVER_KEEPALIVE_S"]) > 90
    # The readiness path is a route the app serves with GET, and its handler script is in the package.
    assert "GET" in served_routes(app)["/api/openapi.json"]
    with zipfile.ZipFile(BUILD / stage / "deployment.zip") as package:
        script = package.getinfo(stream["Handler"])
        assert stat.S_IMODE(script.external_attr >> 16) & 0o111 == 0o111  # executable by the wrapper
        assert b"-m chalicelib.api.server" in package.read(script)
    # The published x86_64 layer by default; the architecture it is built for.
    layer = stream["Layers"][0]["Fn::If"]
    assert layer[0] == "PublishedWebAdapter" and ":layer:LambdaAdapterLayerX86:" in layer[1]["Fn::Sub"]
    assert stream["Architectures"] == ["x86_64"]

    url = resources["StreamFunctionUrl"]
    assert url["Type"] == "AWS::Lambda::Url"
    assert url["Properties"] == {"TargetFunctionArn": {"Fn::GetAtt": ["StreamFunction", "Arn"]},
                                 "AuthType": "NONE", "InvokeMode": "RESPONSE_STREAM"}
    grants = {resource["Properties"]["Action"]: resource["Properties"]
              for resource in resources_of(packaged[stage], "AWS::Lambda::Permission").values()
              if resource["Properties"]["FunctionName"] == {"Ref": "StreamFunction"}}
    assert grants["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"] == "NONE"
    assert grants["lambda:InvokeFunction"]["InvokedViaFunctionUrl"] is True


@pytest.mark.parametrize("stage", STAGES)
def test_the_streaming_function_is_the_api_handler_with_the_web_adapter(packaged: dict[str, Any], stage: str) -> None:
    """Same code, settings, role (one policy) and stage environment; only what the adapter needs added."""
    resources = packaged[stage]["Resources"]
    api, stream = resources["APIHandler"]["Properties"], resources["StreamFunction"]["Properties"]
    for name in ("CodeUri", "Runtime", "Architectures", "MemorySize", "Timeout", "Role"):
        assert stream[name] == api[name], name
    assert api["Role"] == {"Fn::GetAtt": ["ApiHandlerRole", "Arn"]}
    api_env, stream_env = environment(resources["APIHandler"]), environment(resources["StreamFunction"])
    for name, value in api_env.items():
        if name != "TOKENWAY_TRUSTED_PROXIES":
            assert stream_env[name] == value, name
    assert set(stream_env) - set(api_env) == {
        "AWS_LAMBDA_EXEC_WRAPPER", "AWS_LWA_INVOKE_MODE", "AWS_LWA_PORT", "AWS_LWA_READINESS_CHECK_PATH",
        "AWS_LWA_READINESS_CHECK_HEALTHY_STATUS", "TOKENWAY_SERVER_WORKERS", "TOKENWAY_SERVER_THREADS",
        "TOKENWAY_SERVER_WORKER_TIMEOUT_S", "TOKENWAY_SERVER_KEEPALIVE_S", "TOKENWAY_TRUSTED_PROXIES"} - set(api_env)
    # The adapter is the server's only peer; the caller is the address it forwards.
    assert stream_env["TOKENWAY_TRUSTED_PROXIES"].split(",")[0] == "127.0.0.1/32"


@pytest.mark.parametrize("stage", STAGES)
def test_the_memory_of_each_stage_is_the_chalice_configs(packaged: dict[str, Any], stage: str) -> None:
    config = json.loads(CHALICE_CONFIG.read_text())
    memory = config["stages"][stage].get("lambda_memory_size", config["lambda_memory_size"])
    for function in resources_of(packaged[stage], FUNCTION).values():
        assert function["Properties"]["MemorySize"] == memory


@pytest.mark.parametrize("stage", STAGES)
def test_the_sweeper_runs_on_the_apps_schedule(packaged: dict[str, Any], stage: str) -> None:
    (scheduled,) = app.event_sources
    sweeper = packaged[stage]["Resources"]["SweepExpiredHolds"]["Properties"]
    assert sweeper["Handler"] == "chalicelib.api.maintenance.sweep_expired_holds"
    (event,) = sweeper["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == scheduled.schedule_expression.to_string() == "rate(5 minutes)"


@pytest.mark.parametrize("stage", STAGES)
def test_the_usage_forwarder_reads_the_outbox_stream_the_infra_stack_exports(
        packaged: dict[str, Any], infra: dict[str, Any], stage: str) -> None:
    template = packaged[stage]
    forwarder = template["Resources"]["UsageForwarder"]["Properties"]
    assert forwarder["Handler"] == "chalicelib.api.maintenance.forward_usage_events"
    (event,) = forwarder["Events"].values()
    assert event["Type"] == "DynamoDB"
    source = event["Properties"]
    assert source["Stream"] == {"Fn::ImportValue": {"Fn::Sub": "${ResourcePrefix}-usage-outbox-stream"}}
    assert json.loads(source["FilterCriteria"]["Filters"][0]["Pattern"]) == {"eventName": ["INSERT"]}
    assert source["StartingPosition"] == "TRIM_HORIZON" and source["BisectBatchOnFunctionError"] is True
    prefix = environment(template["Resources"]["APIHandler"])["TOKENWAY_RESOURCE_PREFIX"]
    assert template["Parameters"]["ResourcePrefix"]["Default"] == prefix
    # The infra stack exports the stream under that name, for the prefix it is deployed with.
    exported = infra["Outputs"]["UsageOutboxStreamArn"]
    assert exported["Value"] == {"Fn::GetAtt": ["UsageOutboxTable", "StreamArn"]}
    assert exported["Export"]["Name"] == {"Fn::Sub": "${ResourcePrefix}-usage-outbox-stream"}
    outbox = infra["Resources"]["UsageOutboxTable"]["Properties"]
    assert outbox["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}


def behaviours(template: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    config = template["Resources"]["Distribution"]["Properties"]["DistributionConfig"]
    return config["DefaultCacheBehavior"], config["CacheBehaviors"]


def origin_of(template: dict[str, Any], path: str) -> str:
    """The origin CloudFront sends `path` to: the first behaviour whose pattern matches, else the default."""
    default, ordered = behaviours(template)
    for behaviour in ordered:
        if fnmatchcase(path, behaviour["PathPattern"]):
            return behaviour["TargetOriginId"]
    return default["TargetOriginId"]


def concrete(route: str) -> str:
    return "/".join("sample" if part.startswith("{") else part for part in route.split("/"))


@pytest.mark.parametrize("stage", STAGES)
def test_one_base_url_sends_the_openai_api_to_the_streaming_function_and_the_rest_to_the_rest_api(
        packaged: dict[str, Any], stage: str) -> None:
    template = packaged[stage]
    config = template["Resources"]["Distribution"]["Properties"]["DistributionConfig"]
    origins = {origin["Id"]: origin for origin in config["Origins"]}
    assert origins["stream"]["DomainName"] == {
        "Fn::Select": [2, {"Fn::Split": ["/", {"Fn::GetAtt": ["StreamFunctionUrl", "FunctionUrl"]}]}]}
    assert "OriginPath" not in origins["stream"]
    stage_name = json.loads(CHALICE_CONFIG.read_text())["stages"][stage]["api_gateway_stage"]
    assert origins["api"]["OriginPath"] == f"/{stage_name}"
    assert origins["api"]["DomainName"] == {"Fn::Sub": "${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}"}

    served = served_routes(app)
    openai_routes = [route for route in served if route.startswith("/v1/")]
    assert "/v1/chat/completions" in openai_routes and "/v1/messages" in openai_routes
    for route in openai_routes:
        assert origin_of(template, concrete(route)) == "stream", route
        unversioned = route.removeprefix("/v1")
        if unversioned in served:  # the same API without /v1
            assert origin_of(template, concrete(unversioned)) == "stream", unversioned
    for route in served:
        if not route.startswith("/v1/") and "/v1" + route not in served:  # the console, admin, webhooks
            assert origin_of(template, concrete(route)) == "api", route
    assert origin_of(template, "/api/auth/login") == "api"
    assert origin_of(template, "/webhooks/stripe") == "api"


@pytest.mark.parametrize("stage", STAGES)
def test_nothing_is_cached_every_method_passes_and_hosts_are_the_origins_own(
        packaged: dict[str, Any], stage: str) -> None:
    default, ordered = behaviours(packaged[stage])
    for behaviour in [default, *ordered]:
        assert behaviour["CachePolicyId"] == CACHING_DISABLED
        assert behaviour["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST
        assert set(behaviour["AllowedMethods"]) == ALL_METHODS
        assert behaviour["ViewerProtocolPolicy"] == "https-only"
        assert behaviour["Compress"] is False  # events pass as they come


@pytest.mark.parametrize("stage", STAGES)
def test_the_streaming_origin_waits_as_long_as_cloudfront_allows(packaged: dict[str, Any], stage: str) -> None:
    template = packaged[stage]
    config = template["Resources"]["Distribution"]["Properties"]["DistributionConfig"]
    stream = next(origin for origin in config["Origins"] if origin["Id"] == "stream")
    assert stream["CustomOriginConfig"]["OriginReadTimeout"] == {"Ref": "StreamOriginReadTimeout"}
    parameter = template["Parameters"]["StreamOriginReadTimeout"]
    # 60 s without a quota raise; the quota goes to 180 s.
    assert (parameter["Default"], parameter["MaxValue"]) == (60, 180)


@pytest.mark.parametrize("stage", STAGES)
def test_the_outputs_name_the_public_urls(packaged: dict[str, Any], stage: str) -> None:
    outputs = packaged[stage]["Outputs"]
    assert outputs["BaseUrl"]["Value"] == {"Fn::Sub": "https://${Distribution.DomainName}"}
    assert outputs["OpenAIBaseUrl"]["Value"] == {"Fn::Sub": "https://${Distribution.DomainName}/v1"}
    assert outputs["StreamFunctionUrl"]["Value"] == {"Fn::GetAtt": ["StreamFunctionUrl", "FunctionUrl"]}
    stage_name = json.loads(CHALICE_CONFIG.read_text())["stages"][stage]["api_gateway_stage"]
    assert outputs["ApiGatewayUrl"]["Value"] == {
        "Fn::Sub": f"https://${{RestAPI}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/{stage_name}"}
    assert f"/{stage_name}" in outputs["ApiGatewayUrl"]["Description"]


def test_the_package_holds_the_server_and_leaves_boto3_to_the_lambda_runtime(packaged: dict[str, Any]) -> None:
    with zipfile.ZipFile(BUILD / STAGES[0] / "deployment.zip") as package:
        tops = {name.split("/")[0] for name in package.namelist()}
    assert {"app.py", "chalicelib", "chalice", "gunicorn", "httpx", "pydantic", "cryptography", "stripe"} <= tops
    assert not tops & {"boto3", "botocore", "s3transfer", "duckdb"}


def test_packaging_asks_for_a_region_before_it_starts(tmp_path) -> None:
    env = {name: value for name, value in os.environ.items()
           if name not in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")}
    env["AWS_CONFIG_FILE"] = str(tmp_path / "none")  # and no region in a profile
    done = subprocess.run([sys.executable, "infra/package_app.py", "--stage", "dev", "--out", str(tmp_path / "out")],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert "set AWS_DEFAULT_REGION" in done.stderr
    assert not (tmp_path / "out").exists()


def test_the_package_carries_the_bytecode_of_its_modules_for_a_read_only_code_directory(
        packaged: dict[str, Any]) -> None:
    """Compiled for the functions' runtime, hash-based and unchecked (Lambda's file times are not the
    sources'), under the paths Lambda unpacks the code to."""
    runtime = packaged[STAGES[0]]["Resources"]["APIHandler"]["Properties"]["Runtime"]
    tag = "cpython-" + runtime.removeprefix("python").replace(".", "")
    with zipfile.ZipFile(BUILD / STAGES[0] / "deployment.zip") as package:
        names = set(package.namelist())
        sources = [name for name in names if name.endswith(".py") and name.startswith(("app.py", "chalicelib/"))]
        for source in sources:
            folder, _, module = source.rpartition("/")
            compiled = f"{folder + '/' if folder else ''}__pycache__/{module[:-3]}.{tag}.pyc"
            assert compiled in names, source
        data = package.read(f"__pycache__/app.{tag}.pyc")
    assert data[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(data[4:8], "little") == 0b01  # hash-based, source not checked
    assert marshal.loads(data[16:]).co_filename == "/var/task/app.py"
