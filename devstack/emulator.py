"""Local AWS for development and tests: an in-process moto server, provisioned from infra/template.yaml.

`Emulator` serves DynamoDB, S3, Firehose, IAM, KMS, Glue, Athena and CloudFormation on loopback.
`provision` creates the stack from the production template, and creates with
boto3 the resources moto's CloudFormation cannot, so the local resources have
the names, keys and indexes that AWS would give them.

Run `python -m devstack.emulator --port 4566 --prefix tokenway-dev` to start
one, provision it and print the stack outputs as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server, select_address_family

REGION = "us-east-1"
# moto accepts any credentials; these keep boto3 from looking for real ones.
DUMMY_CREDENTIAL = "testing"
DEFAULT_TEMPLATE = Path(__file__).resolve().parent.parent / "infra" / "template.yaml"

ClientsFactory = Callable[[str], Any]

# moto keeps every service's state in process-wide dictionaries, shared by all
# emulators in the process, so a single lock guards them all.
_REQUEST_LOCK = threading.Lock()


class _SerializedApp:
    """A WSGI application that lets one request at a time reach moto."""

    def __init__(self, app: Any, lock: threading.Lock) -> None:
        self._app = app
        self._lock = lock

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        # moto evaluates a DynamoDB ConditionExpression and then applies the
        # write without any lock, so two concurrent conditional writes (or
        # transactions) can both pass their condition. Real DynamoDB never
        # allows that, and the wallet's invariants (a balance never goes below
        # zero) rely on it, so the emulator must keep that atomicity.
        # moto calls other services' backends in-process, never over HTTP, so
        # a request never waits on another one and the lock cannot deadlock.
        # The body is read inside the lock in case it is produced lazily.
        with self._lock:
            result = self._app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return [body]


class _QuietHandler(MotoRequestHandler):
    # Every AWS call would otherwise print an access-log line.
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    # Headers and body go out as separate writes; without TCP_NODELAY each
    # keep-alive response waits for the client's delayed ACK (about 40 ms).
    disable_nagle_algorithm = True


class Emulator:
    """An in-process moto server that serves DynamoDB, S3, Firehose, IAM, KMS and CloudFormation on loopback.

    moto's state belongs to the process, not to the server: every emulator
    started in one process sees the same tables, buckets and stacks.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 4566) -> None:
        # Port 0 lets the OS pick a free port; `endpoint_url` tells which.
        self._host = host
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        # One session keeps the loaded service models, which makes each new
        # client cheap; a session is not thread-safe, its clients are.
        self._session = boto3.session.Session()
        self._session_lock = threading.Lock()

    def start(self) -> None:
        """Bind the port and serve requests on a daemon thread."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        app = _SerializedApp(DomainDispatcherApplication(create_backend_app), _REQUEST_LOCK)
        # Bound here, so a taken port fails start() with OSError: werkzeug would
        # print a message and exit the whole process instead.
        family = select_address_family(self._host, self._port)
        with socket.create_server((self._host, self._port), family=family, backlog=128) as listener:
            # make_server duplicates the descriptor, so this one is closed after.
            self._server = make_server(
                self._host,
                self._port,
                app,
                threaded=True,
                request_handler=_QuietHandler,
                fd=listener.fileno(),
            )
        # A short poll interval keeps stop() quick; the default waits up to 0.5 s.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="aws-emulator", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port; the emulated state stays in the process."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        """The URL to give boto3 as `endpoint_url`, e.g. http://127.0.0.1:4566."""
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        host, port = self._server.server_address[:2]
        # A wildcard bind address is not one a client can connect to.
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def client(self, service: str) -> Any:
        """A boto3 client for `service`, pointed at this emulator with dummy credentials."""
        endpoint_url = self.endpoint_url
        with self._session_lock:
            return self._session.client(
                service,
                region_name=REGION,
                endpoint_url=endpoint_url,
                aws_access_key_id=DUMMY_CREDENTIAL,
                aws_secret_access_key=DUMMY_CREDENTIAL,
                # The gateway and its tests call from many threads at once.
                config=Config(max_pool_connections=64),
            )


class ProvisioningError(RuntimeError):
    """The stack could not be created as the template describes it."""


# --- Template parsing -------------------------------------------------------


class _TemplateLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation's short-form tags (!Ref, !Sub, …) as their long forms."""


def _construct_intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation YAML template into its JSON form."""
    template = yaml.load(path.read_text(encoding="utf-8"), Loader=_TemplateLoader)  # noqa: S506 (safe loader)
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise ProvisioningError(f"{path} is not a CloudFormation template with Resources")
    return template


# `${Name}` or `${Name.Attribute}` in a Fn::Sub string; `${!Literal}` is an escape.
_SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")


def _references(node: Any) -> set[str]:
    """The logical names a template fragment refers to through Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= _references(item)
    elif isinstance(node, dict):
        if set(node) == {"Ref"} and isinstance(node["Ref"], str):
            found.add(node["Ref"])
        elif set(node) == {"Fn::GetAtt"}:
            found.add(node["Fn::GetAtt"][0])
        elif set(node) == {"Fn::Sub"}:
            text, variables = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]
            names = {match.split(".", 1)[0] for match in _SUB_VARIABLE.findall(text)}
            found |= (names - set(variables)) | _references(variables)
        else:
            for value in node.values():
                found |= _references(value)
    return found


# --- Intrinsic functions ----------------------------------------------------

_ARN_RESOLVERS: dict[str, Callable[[ClientsFactory, str, str], str]] = {
    "AWS::S3::Bucket": lambda clients, partition, name: f"arn:{partition}:s3:::{name}",
    "AWS::IAM::Role": lambda clients, partition, name: clients("iam").get_role(RoleName=name)["Role"]["Arn"],
    "AWS::DynamoDB::Table": lambda clients, partition, name: clients("dynamodb").describe_table(TableName=name)[
        "Table"
    ]["TableArn"],
    "AWS::KinesisFirehose::DeliveryStream": lambda clients, partition, name: clients(
        "firehose"
    ).describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["DeliveryStreamARN"],
}


class _Resolver:
    """Evaluates Ref, Fn::GetAtt and Fn::Sub against the stack's parameters and physical resource ids."""

    def __init__(
        self,
        template: dict[str, Any],
        clients: ClientsFactory,
        values: dict[str, str],
        physical_ids: dict[str, str],
    ) -> None:
        self._resources: dict[str, Any] = template["Resources"]
        self._clients = clients
        # Parameters and pseudo parameters (AWS::Region, …), by name.
        self._values = values
        # Filled in as resources are created, so later ones can refer to them.
        self.physical_ids = physical_ids

    def resolve(self, node: Any) -> Any:
        """`node` with every intrinsic function replaced by its value."""
        if isinstance(node, list):
            return [self.resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, argument), = node.items()
            if key == "Ref":
                return self._ref(argument)
            if key == "Fn::GetAtt":
                return self._get_att(*argument)
            if key == "Fn::Sub":
                return self._sub(argument)
            if key == "Fn::Join":
                separator, items = argument
                return separator.join(str(item) for item in self.resolve(items))
            if key == "Fn::Split":
                separator, text = argument
                return str(self.resolve(text)).split(separator)
            if key.startswith("Fn::"):
                raise ProvisioningError(f"{key} is not supported by the emulator's provisioning")
        return {key: self.resolve(value) for key, value in node.items()}

    def _ref(self, name: str) -> str:
        if name in self._values:
            return self._values[name]
        if name in self.physical_ids:
            return self.physical_ids[name]
        raise ProvisioningError(f"Ref {name}: no such parameter, or the resource does not exist yet")

    def _get_att(self, name: str, attribute: str) -> str:
        resource_type = self._resources.get(name, {}).get("Type")
        if (resource_type, attribute) == ("AWS::DynamoDB::Table", "StreamArn"):
            return self._clients("dynamodb").describe_table(TableName=self._ref(name))["Table"]["LatestStreamArn"]
        resolver = _ARN_RESOLVERS.get(resource_type) if attribute == "Arn" else None
        if resolver is None:
            raise ProvisioningError(f"Fn::GetAtt {name}.{attribute} ({resource_type}) is not supported")
        return resolver(self._clients, self._values["AWS::Partition"], self._ref(name))

    def _sub(self, argument: str | list[Any]) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        variables = {key: str(self.resolve(value)) for key, value in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return variables[name]
            if "." in name:
                return self._get_att(*name.split(".", 1))
            return self._ref(name)

        # `${!Literal}` stands for the literal text `${Literal}`.
        return _SUB_VARIABLE.sub(substitute, text).replace("${!", "${")


def _pseudo_parameters(stack_id: str, stack_name: str) -> dict[str, str]:
    # A stack id is arn:<partition>:cloudformation:<region>:<account>:stack/<name>/<uuid>.
    _, partition, _, region, account, _ = stack_id.split(":", 5)
    return {
        "AWS::AccountId": account,
        "AWS::Partition": partition,
        "AWS::Region": region,
        "AWS::StackId": stack_id,
        "AWS::StackName": stack_name,
        "AWS::URLSuffix": "amazonaws.com",
    }


# --- Resources moto's CloudFormation does not create ------------------------


def _wait_until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise ProvisioningError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


def _create_delivery_stream(clients: ClientsFactory, properties: dict[str, Any]) -> str:
    # The resource's properties carry the API's parameter names, so once
    # resolved they are the request itself.
    name = properties.get("DeliveryStreamName")
    if not name:
        raise ProvisioningError("a delivery stream needs a DeliveryStreamName to be created locally")
    firehose = clients("firehose")
    firehose.create_delivery_stream(**properties)

    def active() -> bool:
        description = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
        return description["DeliveryStreamStatus"] == "ACTIVE"

    _wait_until(active, f"delivery stream {name} to become ACTIVE")
    return name


def _create_glue_database(clients: ClientsFactory, properties: dict[str, Any]) -> str:
    clients("glue").create_database(**properties)
    return properties["DatabaseInput"]["Name"]


def _create_glue_table(clients: ClientsFactory, properties: dict[str, Any]) -> str:
    clients("glue").create_table(**properties)
    return properties["TableInput"]["Name"]


def _create_work_group(clients: ClientsFactory, properties: dict[str, Any]) -> str:
    # The resource's WorkGroupConfiguration is the API's Configuration; RecursiveDeleteOption and State
    # matter only to CloudFormation (a new workgroup is enabled).
    clients("athena").create_work_group(
        Name=properties["Name"], Configuration=properties.get("WorkGroupConfiguration", {}),
        Description=properties.get("Description", ""), Tags=properties.get("Tags", []),
    )
    return properties["Name"]


# Resource type → creator taking the resolved properties and returning the
# physical id (what Ref gives). moto 5.2's CloudFormation skips these types
# with only a warning, drops the outputs that refer to them, and lists them
# in DescribeStackResources without a logical id.
_BOTO3_CREATORS: dict[str, Callable[[ClientsFactory, dict[str, Any]], str]] = {
    "AWS::KinesisFirehose::DeliveryStream": _create_delivery_stream,
    "AWS::Glue::Database": _create_glue_database,
    "AWS::Glue::Table": _create_glue_table,
    "AWS::Athena::WorkGroup": _create_work_group,
}


def _enable_time_to_live(clients: ClientsFactory, properties: dict[str, Any], name: str) -> None:
    spec = properties.get("TimeToLiveSpecification")
    if spec and spec.get("Enabled"):
        clients("dynamodb").update_time_to_live(
            TableName=name, TimeToLiveSpecification={"AttributeName": spec["AttributeName"], "Enabled": True}
        )


def _put_key_policy(clients: ClientsFactory, properties: dict[str, Any], key_id: str) -> None:
    # moto's CloudFormation keeps a KeyPolicy given as an object (as templates give it) unserialized,
    # and its KMS then fails every call on the key with a 500; KMS's own API takes the JSON text.
    policy = properties.get("KeyPolicy")
    if policy is not None:
        policy_text = policy if isinstance(policy, str) else json.dumps(policy)
        clients("kms").put_key_policy(KeyId=key_id, PolicyName="default", Policy=policy_text)


# Resource type → a step applying properties that moto's CloudFormation accepts
# but ignores or keeps wrongly, given the resolved properties and the physical id.
_BOTO3_COMPLETERS: dict[str, Callable[[ClientsFactory, dict[str, Any], str], None]] = {
    "AWS::DynamoDB::Table": _enable_time_to_live,
    "AWS::KMS::Key": _put_key_policy,
}


# Resource type → the property that names it, and a call that fails with
# ResourceNotFoundException when no resource has that name.
_NAMED_TYPES: dict[str, tuple[str, Callable[[ClientsFactory, str], Any]]] = {
    "AWS::DynamoDB::Table": ("TableName", lambda clients, name: clients("dynamodb").describe_table(TableName=name)),
    "AWS::KinesisFirehose::DeliveryStream": (
        "DeliveryStreamName",
        lambda clients, name: clients("firehose").describe_delivery_stream(DeliveryStreamName=name),
    ),
}


def _is_taken(clients: ClientsFactory, resource_type: str, name: str) -> bool:
    try:
        _NAMED_TYPES[resource_type][1](clients, name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return False
        raise
    return True


# --- Provisioning -----------------------------------------------------------


def _refuse_existing(
    cfn: Any, clients: ClientsFactory, resolver: _Resolver, template: dict[str, Any], stack_name: str
) -> None:
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ValidationError":  # how CloudFormation says "no such stack"
            raise
        stacks = []
    if any(stack["StackStatus"] != "DELETE_COMPLETE" for stack in stacks):
        raise ProvisioningError(f"stack {stack_name} already exists on this emulator; it is provisioned once")
    # A name taken by another stack would make moto fail halfway through,
    # with an error that does not say which resource.
    taken = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] not in _NAMED_TYPES:
            continue
        name_spec = resource.get("Properties", {}).get(_NAMED_TYPES[resource["Type"]][0])
        # A name built from another resource cannot be known before the stack.
        if name_spec is None or _references(name_spec) & set(template["Resources"]):
            continue
        name = resolver.resolve(name_spec)
        if _is_taken(clients, resource["Type"], name):
            taken.append(f"{logical_id} ({name})")
    if taken:
        raise ProvisioningError(
            f"names already taken on this emulator: {', '.join(taken)}; "
            "moto's state is shared by the whole process, so use another prefix"
        )


def _split_template(template: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The template moto's CloudFormation can create, and the resources left for boto3."""
    deferred = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] in _BOTO3_CREATORS
    }
    kept = {
        logical_id: resource for logical_id, resource in template["Resources"].items() if logical_id not in deferred
    }
    for logical_id, resource in kept.items():
        needed = (_references(resource) | set(_as_list(resource.get("DependsOn")))) & set(deferred)
        if needed:
            raise ProvisioningError(
                f"{logical_id} depends on {', '.join(sorted(needed))}, which the emulator creates after the stack"
            )
    outputs = {
        name: output
        for name, output in template.get("Outputs", {}).items()
        if not _references(output) & set(deferred)
    }
    return {**template, "Resources": kept, "Outputs": outputs}, deferred


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _wait_for_stack(cfn: Any, stack_name: str, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            return stack
        if not status.endswith("_IN_PROGRESS"):
            raise ProvisioningError(f"stack {stack_name} ended in {status}: {stack.get('StackStatusReason')}")
        if time.monotonic() > deadline:
            raise ProvisioningError(f"stack {stack_name} still {status} after {timeout_s:.0f} s")
        time.sleep(0.2)


def _memoized(clients_factory: ClientsFactory) -> ClientsFactory:
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = clients_factory(service)
        return clients[service]

    return client


def provision(
    clients_factory: ClientsFactory, template_path: Path, prefix: str, stack_name: str | None = None
) -> dict[str, str]:
    """Create the stack from the template, then with boto3 what moto's CloudFormation cannot; return the Outputs."""
    stack_name = stack_name or prefix
    clients_factory = _memoized(clients_factory)
    template = load_template(template_path)
    moto_template, deferred = _split_template(template)
    cfn = clients_factory("cloudformation")

    parameters = template.get("Parameters", {})
    defaults = {name: str(spec["Default"]) for name, spec in parameters.items() if "Default" in spec}
    values = {**defaults, "ResourcePrefix": prefix}
    # Before the stack exists only parameters resolve, which is all that names use.
    placeholder_id = f"arn:aws:cloudformation:{REGION}:000000000000:stack/{stack_name}/0"
    early = _Resolver(template, clients_factory, {**values, **_pseudo_parameters(placeholder_id, stack_name)}, {})
    _refuse_existing(cfn, clients_factory, early, template, stack_name)

    try:
        cfn.create_stack(
            StackName=stack_name,
            # JSON, because the parsed template no longer has the YAML tags.
            TemplateBody=json.dumps(moto_template, default=str),
            Parameters=[{"ParameterKey": "ResourcePrefix", "ParameterValue": prefix}],
        )
    except (ClientError, BotoCoreError) as exc:
        raise ProvisioningError(f"creating stack {stack_name} failed: {exc}") from exc
    stack = _wait_for_stack(cfn, stack_name)

    described = cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
    physical_ids = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in described if r.get("LogicalResourceId")}
    # moto skips a resource type it does not know with only a warning.
    missing = [f"{lid} ({r['Type']})" for lid, r in moto_template["Resources"].items() if lid not in physical_ids]
    if missing:
        raise ProvisioningError(
            f"moto's CloudFormation did not create {', '.join(missing)}; give the type a creator in _BOTO3_CREATORS"
        )

    stack_values = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}
    resolver = _Resolver(
        template,
        clients_factory,
        {**values, **stack_values, **_pseudo_parameters(stack["StackId"], stack_name)},
        physical_ids,
    )
    # In template order; a deferred resource may refer to one created before it.
    for logical_id, resource in deferred.items():
        properties = resolver.resolve(resource.get("Properties", {}))
        try:
            resolver.physical_ids[logical_id] = _BOTO3_CREATORS[resource["Type"]](clients_factory, properties)
        except (ClientError, BotoCoreError) as exc:
            raise ProvisioningError(f"creating {logical_id} ({resource['Type']}) failed: {exc}") from exc
    for logical_id, resource in moto_template["Resources"].items():
        complete = _BOTO3_COMPLETERS.get(resource["Type"])
        if complete is None:
            continue
        try:
            complete(clients_factory, resolver.resolve(resource.get("Properties", {})), physical_ids[logical_id])
        except (ClientError, BotoCoreError) as exc:
            raise ProvisioningError(f"completing {logical_id} ({resource['Type']}) failed: {exc}") from exc

    from_moto = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return {
        name: from_moto[name] if name in from_moto else str(resolver.resolve(output["Value"]))
        for name, output in template.get("Outputs", {}).items()
    }


# --- Command line -----------------------------------------------------------


def _parse_args(argv: Iterable[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.emulator",
        description="Serve local AWS, provisioned from the Tokenway template, until interrupted.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=4566, help="port, 0 for any free one (default: %(default)s)")
    parser.add_argument("--prefix", default="tokenway-dev", help="the template's ResourcePrefix (default: %(default)s)")
    parser.add_argument("--stack-name", default=None, help="CloudFormation stack name (default: the prefix)")
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE, help="template to provision")
    return parser.parse_args(None if argv is None else list(argv))


def main(argv: Iterable[str] | None = None) -> int:
    """Start the emulator, provision it, print the outputs as JSON and serve until SIGINT or SIGTERM."""
    args = _parse_args(argv)
    stopping = threading.Event()
    # Set before starting, so a signal at any point leads to a clean stop.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())

    emulator = Emulator(args.host, args.port)
    try:
        emulator.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        outputs = provision(emulator.client, args.template, args.prefix, args.stack_name)
        print(json.dumps(outputs, indent=2), flush=True)
        print(f"AWS emulator on {emulator.endpoint_url}; Ctrl-C to stop.", file=sys.stderr, flush=True)
        # A timed wait, so the main thread keeps returning to run signal handlers.
        while not stopping.wait(0.5):
            pass
    except ProvisioningError as exc:
        print(f"provisioning failed: {exc}", file=sys.stderr)
        return 1
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
