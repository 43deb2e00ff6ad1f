"""The local AWS emulator: provisioning from infra/template.yaml, usage delivery, and DynamoDB's atomicity."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from botocore.exceptions import ClientError

from chalicelib.core.domain import UsageEvent
from devstack.emulator import DEFAULT_TEMPLATE, Emulator, ProvisioningError, provision

OUTPUT_NAMES = {
    "AccountsTableName", "KeysTableName", "LedgerTableName", "HoldsTableName", "CatalogTableName",
    "UsageBucketName", "UsageStreamName", "EmailsTableName", "SessionsTableName", "LoginAttemptsTableName",
    "LimitsTableName", "SecretsKeyArn", "SecretsKeyAlias",
    "PasswordLinksTableName", "OrdersTableName", "PaymentEventsTableName", "CodesTableName",
    "UsageDatabaseName", "UsageTableName", "UsageWorkGroupName", "UsageRollupsTableName",
    "UsageOutboxTableName", "UsageOutboxStreamArn",
}
USAGE_PREFIX = "usage/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"


@dataclass
class Provisioned:
    emulator: Emulator
    prefix: str
    outputs: dict[str, str]


@pytest.fixture(scope="module")
def provisioned() -> Iterator[Provisioned]:
    # moto's state is shared by every emulator in the process, so this module's
    # resources get a prefix no other test uses.
    prefix = f"emu-{uuid.uuid4().hex[:8]}"
    with Emulator(port=0) as emulator:
        yield Provisioned(emulator, prefix, provision(emulator.client, DEFAULT_TEMPLATE, prefix))


def _keys(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(key["AttributeName"], key["KeyType"]) for key in schema]


def _table(provisioned: Provisioned, output: str) -> dict:
    return provisioned.emulator.client("dynamodb").describe_table(TableName=provisioned.outputs[output])["Table"]


def _indexes(table: dict) -> dict[str, tuple[list[tuple[str, str]], str]]:
    return {
        index["IndexName"]: (_keys(index["KeySchema"]), index["Projection"]["ProjectionType"])
        for index in table.get("GlobalSecondaryIndexes", [])
    }


def test_provisioning_creates_the_tables_bucket_and_stream(provisioned: Provisioned) -> None:
    prefix, outputs = provisioned.prefix, provisioned.outputs
    assert set(outputs) == OUTPUT_NAMES
    assert outputs["UsageStreamName"] == f"{prefix}-usage"

    accounts = _table(provisioned, "AccountsTableName")
    assert accounts["TableName"] == f"{prefix}-accounts"
    assert _keys(accounts["KeySchema"]) == [("account_id", "HASH")]
    assert _indexes(accounts) == {}

    keys = _table(provisioned, "KeysTableName")
    assert keys["TableName"] == f"{prefix}-keys"
    assert _keys(keys["KeySchema"]) == [("key_hash", "HASH")]
    assert _indexes(keys) == {
        "account-index": ([("account_id", "HASH"), ("created_at", "RANGE")], "KEYS_ONLY"),
        "key-id-index": ([("key_id", "HASH")], "KEYS_ONLY"),
    }
    assert {a["AttributeName"]: a["AttributeType"] for a in keys["AttributeDefinitions"]}["created_at"] == "N"

    outbox = _table(provisioned, "UsageOutboxTableName")
    assert _keys(outbox["KeySchema"]) == [("request_id", "HASH")]
    assert outbox["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert outputs["UsageOutboxStreamArn"] == outbox["LatestStreamArn"]
    ttl = provisioned.emulator.client("dynamodb").describe_time_to_live(TableName=outbox["TableName"])
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"

    for output, table, schema in [
        ("LedgerTableName", "ledger", [("account_id", "HASH"), ("entry_id", "RANGE")]),
        ("HoldsTableName", "holds", [("request_id", "HASH")]),
        ("CatalogTableName", "catalog", [("kind", "HASH"), ("name", "RANGE")]),
    ]:
        described = _table(provisioned, output)
        assert described["TableName"] == f"{prefix}-{table}"
        assert _keys(described["KeySchema"]) == schema
        assert _indexes(described) == {}
    rollups = _table(provisioned, "UsageRollupsTableName")
    assert rollups["TableName"] == f"{prefix}-usage-rollups"
    assert _keys(rollups["KeySchema"]) == [("account_id", "HASH"), ("rollup_id", "RANGE")]
    assert _indexes(rollups) == {"day-index": ([("day", "HASH"), ("rollup_id", "RANGE")], "ALL")}
    for output in ("AccountsTableName", "KeysTableName", "LedgerTableName", "HoldsTableName", "CatalogTableName",
                   "UsageRollupsTableName"):
        assert _table(provisioned, output)["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"

    provisioned.emulator.client("s3").head_bucket(Bucket=outputs["UsageBucketName"])

    stream = provisioned.emulator.client("firehose").describe_delivery_stream(
        DeliveryStreamName=outputs["UsageStreamName"]
    )["DeliveryStreamDescription"]
    assert stream["DeliveryStreamStatus"] == "ACTIVE"
    assert stream["DeliveryStreamType"] == "DirectPut"
    destination = stream["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert destination["BucketARN"] == f"arn:aws:s3:::{outputs['UsageBucketName']}"
    assert destination["Prefix"] == USAGE_PREFIX
    assert destination["CompressionFormat"] == "UNCOMPRESSED"
    assert destination["BufferingHints"] == {"IntervalInSeconds": 60, "SizeInMBs": 5}
    # The role is the stack's, so its ARN resolved from a real resource.
    role_name = destination["RoleARN"].rsplit("/", 1)[1]
    assert provisioned.emulator.client("iam").get_role(RoleName=role_name)["Role"]["Arn"] == destination["RoleARN"]


def test_the_secrets_key_is_aliased_from_the_prefix_and_rotated(provisioned: Provisioned) -> None:
    kms = provisioned.emulator.client("kms")
    assert provisioned.outputs["SecretsKeyAlias"] == f"alias/{provisioned.prefix}-secrets"
    key = kms.describe_key(KeyId=provisioned.outputs["SecretsKeyAlias"])["KeyMetadata"]
    assert key["Arn"] == provisioned.outputs["SecretsKeyArn"]
    assert key["KeyUsage"] == "ENCRYPT_DECRYPT" and key["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True
    # The key policy leaves access to the account's IAM policies, as the template says.
    policy = json.loads(kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])
    assert [s["Principal"] for s in policy["Statement"]] == [{"AWS": "arn:aws:iam::123456789012:root"}]


def test_the_console_tables_have_their_keys_and_time_to_live(provisioned: Provisioned) -> None:
    dynamodb = provisioned.emulator.client("dynamodb")
    for output, table, key, ttl in [
        ("EmailsTableName", "emails", "email", None),
        ("SessionsTableName", "sessions", "session_hash", "expires_at_s"),
        ("LoginAttemptsTableName", "login-attempts", "counter_id", "expires_at_s"),
        ("LimitsTableName", "limits", "counter_id", "expires_at_s"),
        ("PasswordLinksTableName", "password-links", "account_id", "expires_at_s"),
    ]:
        described = _table(provisioned, output)
        assert described["TableName"] == f"{provisioned.prefix}-{table}"
        assert _keys(described["KeySchema"]) == [(key, "HASH")] and _indexes(described) == {}
        assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        # moto's CloudFormation ignores TimeToLiveSpecification; provisioning applies it.
        status = dynamodb.describe_time_to_live(TableName=described["TableName"])["TimeToLiveDescription"]
        if ttl:
            assert status == {"TimeToLiveStatus": "ENABLED", "AttributeName": ttl}
        else:
            assert status["TimeToLiveStatus"] == "DISABLED"


def test_the_payment_tables_have_their_indexes_and_time_to_live(provisioned: Provisioned) -> None:
    dynamodb = provisioned.emulator.client("dynamodb")
    orders = _table(provisioned, "OrdersTableName")
    assert orders["TableName"] == f"{provisioned.prefix}-orders"
    assert _keys(orders["KeySchema"]) == [("order_id", "HASH")]
    assert _indexes(orders) == {
        "account-index": ([("account_id", "HASH"), ("created_at", "RANGE")], "ALL"),
        "status-index": ([("status", "HASH"), ("created_at", "RANGE")], "ALL"),
        "payment-intent-index": ([("payment_intent", "HASH")], "ALL"),
    }
    codes = _table(provisioned, "CodesTableName")
    assert _keys(codes["KeySchema"]) == [("code_hash", "HASH")]
    assert _indexes(codes) == {"code-id-index": ([("code_id", "HASH")], "ALL")}
    events = _table(provisioned, "PaymentEventsTableName")
    assert _keys(events["KeySchema"]) == [("event_id", "HASH")] and _indexes(events) == {}
    status = dynamodb.describe_time_to_live(TableName=events["TableName"])["TimeToLiveDescription"]
    assert status == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at_s"}
    for described in (orders, codes, events):
        assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def _all_keys(provisioned: Provisioned) -> set[str]:
    s3, bucket = provisioned.emulator.client("s3"), provisioned.outputs["UsageBucketName"]
    return {obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def _new_objects(provisioned: Provisioned, before: set[str]) -> dict[str, bytes]:
    s3, bucket = provisioned.emulator.client("s3"), provisioned.outputs["UsageBucketName"]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in _all_keys(provisioned) - before}


def test_a_usage_record_lands_in_the_bucket_as_a_json_line(provisioned: Provisioned) -> None:
    before = _all_keys(provisioned)
    line = b'{"request_id":"req_1","cost_units":42}\n'
    provisioned.emulator.client("firehose").put_record(
        DeliveryStreamName=provisioned.outputs["UsageStreamName"], Record={"Data": line}
    )

    objects = _new_objects(provisioned, before)
    assert list(objects.values()) == [line]
    (key,) = objects
    assert key.startswith("usage/")
    # moto writes at once (no buffering) and does not expand the prefix's
    # !{timestamp:…} expressions: it appends its own YYYY/MM/DD/HH/ and the
    # object name. On AWS the key is usage/year=2025/month=01/day=31/<name>.
    stream = re.escape(provisioned.outputs["UsageStreamName"])
    assert re.fullmatch(re.escape(USAGE_PREFIX) + rf"\d{{4}}/\d\d/\d\d/\d\d/{stream}-1-[\d-]+-[0-9a-f-]{{36}}", key)


def test_a_batch_of_records_lands_as_one_object_of_json_lines(provisioned: Provisioned) -> None:
    before = _all_keys(provisioned)
    lines = [b'{"request_id":"req_2"}\n', b'{"request_id":"req_3"}\n']
    provisioned.emulator.client("firehose").put_record_batch(
        DeliveryStreamName=provisioned.outputs["UsageStreamName"], Records=[{"Data": line} for line in lines]
    )

    assert list(_new_objects(provisioned, before).values()) == [b"".join(lines)]


def test_conditional_writes_are_atomic_under_concurrency(provisioned: Provisioned) -> None:
    dynamodb = provisioned.emulator.client("dynamodb")
    table = provisioned.outputs["AccountsTableName"]
    writers, balance = 50, 10
    # Switching threads this often lets a write land between another write's
    # condition check and its update; without the emulator's request lock
    # about half the rounds then spend more than the balance.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for round_ in range(6):
            account = {"account_id": {"S": f"race-{round_}"}}
            dynamodb.put_item(TableName=table, Item={**account, "available": {"N": str(balance)}})
            start = threading.Barrier(writers)
            succeeded: list[int] = []
            errors: list[Exception] = []

            def spend(start=start, account=account, succeeded=succeeded, errors=errors) -> None:
                start.wait()
                try:
                    dynamodb.update_item(
                        TableName=table,
                        Key=account,
                        UpdateExpression="SET available = available - :amt",
                        ConditionExpression="available >= :amt",
                        ExpressionAttributeValues={":amt": {"N": "1"}},
                    )
                    succeeded.append(1)
                except ClientError as exc:
                    if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                        errors.append(exc)
                except Exception as exc:  # surfaced by the assertion below, not lost on the thread
                    errors.append(exc)

            threads = [threading.Thread(target=spend) for _ in range(writers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

            final = dynamodb.get_item(TableName=table, Key=account, ConsistentRead=True)["Item"]["available"]["N"]
            assert errors == []
            assert (len(succeeded), final) == (balance, "0"), f"round {round_}"
    finally:
        sys.setswitchinterval(switch_interval)


def test_provisioning_the_same_stack_twice_is_refused(provisioned: Provisioned) -> None:
    with pytest.raises(ProvisioningError, match="already exists"):
        provision(provisioned.emulator.client, DEFAULT_TEMPLATE, provisioned.prefix)


def test_provisioning_over_taken_names_is_refused_before_creating_anything(provisioned: Provisioned) -> None:
    other_stack = f"{provisioned.prefix}-again"
    with pytest.raises(ProvisioningError, match="already taken"):
        provision(provisioned.emulator.client, DEFAULT_TEMPLATE, provisioned.prefix, stack_name=other_stack)

    with pytest.raises(ClientError, match="does not exist"):
        provisioned.emulator.client("cloudformation").describe_stacks(StackName=other_stack)


def test_the_request_log_table_projects_the_firehose_partitions_and_its_workgroup_caps_scans(provisioned):
    outputs, bucket = provisioned.outputs, provisioned.outputs["UsageBucketName"]
    assert outputs["UsageDatabaseName"] == provisioned.prefix.replace("-", "_")
    table = provisioned.emulator.client("glue").get_table(
        DatabaseName=outputs["UsageDatabaseName"], Name=outputs["UsageTableName"])["Table"]
    assert [(k["Name"], k["Type"]) for k in table["PartitionKeys"]] == [
        ("year", "string"), ("month", "string"), ("day", "string")]
    # The projected locations are the Firehose stream's prefix.
    assert table["Parameters"]["projection.enabled"] == "true"
    assert table["Parameters"]["storage.location.template"] == (
        f"s3://{bucket}/usage/year=${{year}}/month=${{month}}/day=${{day}}")
    assert [table["Parameters"][f"projection.{key}.digits"] for key in ("year", "month", "day")] == ["4", "2", "2"]
    storage = table["StorageDescriptor"]
    assert storage["Location"] == f"s3://{bucket}/usage/"
    assert storage["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    # Every field of the events' lines (UsageEvent.to_json_line).
    assert [c["Name"] for c in storage["Columns"]] == [f.name for f in dataclasses.fields(UsageEvent)] + ["cost_usd"]

    workgroup = provisioned.emulator.client("athena").get_work_group(
        WorkGroup=outputs["UsageWorkGroupName"])["WorkGroup"]
    configuration = workgroup["Configuration"]
    assert configuration["ResultConfiguration"]["OutputLocation"] == f"s3://{bucket}/athena-results/"
    assert configuration["EnforceWorkGroupConfiguration"] is True
    assert configuration["BytesScannedCutoffPerQuery"] == 10 * 1024 ** 3
