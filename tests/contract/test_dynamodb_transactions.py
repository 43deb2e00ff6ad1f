"""The one way DynamoDB transactions are run and their cancellations read (storage/dynamodb/common.py)."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from chalicelib.core.errors import StorageError
from chalicelib.storage.dynamodb.common import TransactionCancelled, TransactItem, to_item, transact
from tests.contract.conftest import PREFIX

ACCOUNTS = f"{PREFIX}-accounts"
EMAILS = f"{PREFIX}-emails"


def _add(amount: int, *, need: int) -> TransactItem:
    return TransactItem("account", {"Update": {
        "TableName": ACCOUNTS, "Key": to_item({"account_id": "acct_t"}),
        "UpdateExpression": "SET available = available + :amount",
        "ConditionExpression": "available >= :need",
        "ExpressionAttributeValues": to_item({":amount": amount, ":need": need}),
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }})


def _claim(email: str) -> TransactItem:
    return TransactItem("email", {"Put": {
        "TableName": EMAILS, "Item": to_item({"email": email, "account_id": "acct_t"}),
        "ConditionExpression": "attribute_not_exists(email)",
    }})


def test_a_cancelled_transaction_names_every_failed_role_and_writes_nothing(dynamo_repos):
    client = dynamo_repos.dynamodb
    client.put_item(TableName=ACCOUNTS, Item=to_item({"account_id": "acct_t", "available": 5}))
    client.put_item(TableName=EMAILS, Item=to_item({"email": "taken@example.com", "account_id": "acct_0"}))
    new_claim = TransactItem("other", {"Put": {"TableName": EMAILS,
                                               "Item": to_item({"email": "new@example.com", "account_id": "x"})}})
    with pytest.raises(TransactionCancelled) as cancelled:
        transact(client, [_add(-10, need=10), _claim("taken@example.com"), new_claim], action="test")
    # The account's refusal carries the item as it was; the claim asked for nothing back.
    assert cancelled.value.failed == {"account": {"account_id": "acct_t", "available": 5}, "email": None}
    assert "account" in cancelled.value and "other" not in cancelled.value
    assert "Item" not in client.get_item(TableName=EMAILS, Key=to_item({"email": "new@example.com"}))

    transact(client, [_add(-5, need=5), _claim("new@example.com")], action="test")
    item = client.get_item(TableName=ACCOUNTS, Key=to_item({"account_id": "acct_t"}), ConsistentRead=True)["Item"]
    assert item["available"] == {"N": "0"}


# Moto never reports a TransactionConflict (it runs one request at a time), so these two
# cases answer as DynamoDB does through botocore's own stubber: AWS faked, nothing of ours.

def _conflict(stubber: Stubber) -> None:
    stubber.add_client_error(
        "transact_write_items", service_error_code="TransactionCanceledException",
        service_message="Transaction cancelled", http_status_code=400,
        modeled_fields={"CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}]})


def test_a_transaction_conflict_is_retried_with_backoff_then_reported_as_storage_unavailable():
    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    items = [_add(1, need=0), _claim("a@example.com")]
    slept: list[float] = []
    with Stubber(client) as stubber:
        _conflict(stubber)
        _conflict(stubber)
        stubber.add_response("transact_write_items", {})
        transact(client, items, action="test", sleep=slept.append)
        assert slept == [0.01, 0.02]

        for _ in range(3):
            _conflict(stubber)
        with pytest.raises(StorageError):
            transact(client, items, action="test", sleep=slept.append, conflict_retries=2)
        stubber.assert_no_pending_responses()


def test_an_unreachable_store_is_storage_unavailable():
    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                          aws_access_key_id="x", aws_secret_access_key="x",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    with pytest.raises(StorageError) as failed:
        transact(client, [_claim("a@example.com")], action="test")
    assert failed.value.code == "storage_unavailable"
