"""The request log on AWS: the queries sent to Athena (Trino SQL, partition-pruned, every value a
parameter), and their execution against moto's Athena, which runs no SQL but returns the rows registered
for the next query (its documented way of giving query results)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest
import sqlglot
from botocore.config import Config
from moto import mock_aws
from moto.athena.models import QueryResults, athena_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_api import state_manager
from sqlglot import exp

from chalicelib.core.domain import UsageEvent
from chalicelib.core.errors import InvalidRequest, StorageError
from chalicelib.core.usage import LogFilter
from chalicelib.storage.athena_usage_log import AthenaUsageLog
from chalicelib.storage.cursors import encode_cursor
from chalicelib.storage.usage_log_sql import FIELDS, Position

REGION = "us-east-1"
NOW_MS = 1_773_100_000_000
WORKGROUP = "tokenway-test-usage"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def event(request_id: str, time: str, **fields) -> UsageEvent:
    values = {"account_id": "acct_1", "key_id": "key_1", "endpoint": "chat/completions", "model": "test-chat",
              "channel": "primary", "stream": False, "status": 200, "prompt_tokens": 10, "completion_tokens": 5,
              "cost_units": 18_000, **fields}
    return UsageEvent(time=time, request_id=request_id, **values)


def as_athena_row(sent: UsageEvent) -> dict:
    """The event as GetQueryResults gives a row: every value text, a null without a value."""
    data = []
    for name in FIELDS:
        value = getattr(sent, name)
        if value is None:
            data.append({})
        else:
            data.append({"VarCharValue": str(value).lower() if isinstance(value, bool) else str(value)})
    return {"Data": data}


def register_results(events: list[UsageEvent]) -> None:
    """The rows moto's Athena returns for the next query, opening with the column names as Athena's do."""
    columns = [{"Name": name, "Label": name, "Type": "varchar"} for name in FIELDS]
    header = {"Data": [{"VarCharValue": name} for name in FIELDS]}
    backend = athena_backends[DEFAULT_ACCOUNT_ID][REGION]
    backend.query_results_queue.append(QueryResults([header, *map(as_athena_row, events)], columns))


@pytest.fixture
def athena() -> Iterator:
    with mock_aws():
        client = boto3.client("athena", region_name=REGION)
        client.create_work_group(Name=WORKGROUP, Configuration={
            "ResultConfiguration": {"OutputLocation": "s3://usage-bucket/athena-results/"}})
        yield client


def usage_log(athena, **options) -> AthenaUsageLog:
    return AthenaUsageLog(athena, database="tokenway_test", table="usage_events", workgroup=WORKGROUP,
                          now_ms=lambda: NOW_MS, **options)


def executions(athena) -> list[dict]:
    ids = athena.list_query_executions(WorkGroup=WORKGROUP)["QueryExecutionIds"]
    return [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"] for i in ids]


HOSTILE = "x' OR 1=1 --"
WHERE = LogFilter(ms("2026-02-27T10:00:00"), ms("2026-03-02T08:00:00"), account_id="acct_1", key_id=HOSTILE,
                  model="test-chat", status="error")


def test_the_query_is_trino_sql_pruned_to_the_ranges_partitions_with_every_value_a_parameter(athena):
    query = usage_log(athena).query(WHERE, Position("2026-03-01T00:00:00.000+00:00", "req_9"), newest_first=True,
                                    limit=26)

    parsed = sqlglot.parse_one(query.sql, read="trino")
    placeholders = list(parsed.find_all(exp.Placeholder))
    assert len(placeholders) == len(query.values)
    # Nothing but placeholders and the validated LIMIT are literals: no value is in the text.
    assert [literal.this for literal in parsed.find_all(exp.Literal)] == ["26"]
    assert HOSTILE not in query.sql and "acct_1" not in query.sql
    assert {column.name for column in parsed.find_all(exp.Column)} >= {"year", "month", "day", "time", "status"}
    # One clause per month of the range: February's last two days, March's first two.
    assert query.values[:8] == ("2026", "02", "27", "28", "2026", "03", "01", "02")
    assert query.values[8:] == ("2026-02-27T10:00:00.000+00:00", "2026-03-02T08:00:00.000+00:00", "acct_1", HOSTILE,
                                "test-chat", 200, 299, "2026-03-01T00:00:00.000+00:00",
                                "2026-03-01T00:00:00.000+00:00", "req_9")
    assert parsed.args["order"].sql(dialect="trino") == 'ORDER BY "time" DESC, request_id DESC'


def test_a_page_runs_its_query_to_completion_and_reads_its_rows_into_events(athena):
    rows = [event("req_3", "2026-03-01T10:00:00.000+00:00", stream=True, ttft_ms=120),
            event("req_2", "2026-03-01T09:00:00.000+00:00", status=500, error_type="upstream_error", ttft_ms=None),
            event("req_1", "2026-03-01T08:00:00.000+00:00")]
    register_results(rows)

    page = usage_log(athena, buffer_s=60).page(WHERE, limit=2)

    assert list(page.events) == rows[:2]
    assert page.as_of == NOW_MS - 60_000
    assert page.cursor == encode_cursor({"time": rows[1].time, "request_id": "req_2"})
    [execution] = executions(athena)
    assert execution["Status"]["State"] == "SUCCEEDED"
    assert execution["QueryExecutionContext"] == {"Database": "tokenway_test"}
    # Values reach Athena as literals beside the query, never inside it.
    assert "'x'' OR 1=1 --'" in execution["ExecutionParameters"]
    assert "'acct_1'" in execution["ExecutionParameters"] and "'2026'" in execution["ExecutionParameters"]
    assert HOSTILE not in execution["Query"] and execution["Query"].endswith("LIMIT 3")
    assert len(execution["ExecutionParameters"]) == execution["Query"].count("?")


def test_a_page_after_a_cursor_starts_past_its_position(athena):
    register_results([])
    cursor = encode_cursor({"time": "2026-03-01T09:00:00.000+00:00", "request_id": "req_2"})

    page = usage_log(athena).page(WHERE, limit=2, cursor=cursor)

    assert (page.events, page.cursor) == ((), None)
    [execution] = executions(athena)
    assert execution["ExecutionParameters"][-3:] == [
        "'2026-03-01T09:00:00.000+00:00'", "'2026-03-01T09:00:00.000+00:00'", "'req_2'"]


def test_an_export_reads_every_row_oldest_first(athena):
    rows = [event(f"req_{n:03d}", f"2026-03-01T08:{n // 60:02d}:{n % 60:02d}.000+00:00") for n in range(120)]
    register_results(rows)

    assert list(usage_log(athena).export(WHERE)) == rows
    [execution] = executions(athena)
    assert 'ORDER BY "time" ASC, request_id ASC' in execution["Query"] and "LIMIT" not in execution["Query"]


def test_an_empty_range_runs_no_query(athena):
    log = usage_log(athena)
    empty = LogFilter(WHERE.since_ms, WHERE.since_ms)

    assert log.page(empty, limit=5).events == ()
    assert list(log.export(empty)) == []
    assert executions(athena) == []


def test_a_bad_cursor_is_refused_before_any_query(athena):
    with pytest.raises(InvalidRequest) as refused:
        usage_log(athena).page(WHERE, limit=5, cursor="bm90IGEgY3Vyc29y")

    assert refused.value.param == "cursor"
    assert executions(athena) == []


@pytest.fixture
def queued_until_told() -> Iterator[None]:
    """Queries stay QUEUED (for a thousand polls) unless something else ends them."""
    state_manager.set_transition("athena::execution", {"progression": "manual", "times": 1000})
    yield
    state_manager.unset_transition("athena::execution")


@pytest.mark.usefixtures("queued_until_told")
@pytest.mark.parametrize("state", ["FAILED", "CANCELLED"])
def test_a_query_athena_ends_without_success_is_a_storage_error_without_its_sql(athena, state):
    def sleep(_seconds: float) -> None:  # while the engine waits, Athena ends the query
        for execution_id in athena.list_query_executions()["QueryExecutionIds"]:
            if state == "CANCELLED":
                athena.stop_query_execution(QueryExecutionId=execution_id)
            else:
                athena_backends[DEFAULT_ACCOUNT_ID][REGION].executions[execution_id].status = "FAILED"

    with pytest.raises(StorageError) as failed:
        usage_log(athena, sleep=sleep).page(WHERE, limit=5)

    assert state.lower() in failed.value.message
    assert HOSTILE not in failed.value.message and "SELECT" not in failed.value.message
    assert failed.value.status == 503


def test_a_query_still_running_at_the_deadline_is_stopped(athena, queued_until_told):
    slept = []

    with pytest.raises(StorageError) as late:
        usage_log(athena, sleep=slept.append, timeout_s=5).page(WHERE, limit=5)

    assert "did not finish within 5 s" in late.value.message
    assert sum(slept[:-1]) < 5 <= sum(slept) and max(slept) == 1.0
    [execution] = executions(athena)
    assert execution["Status"]["State"] == "CANCELLED"


def test_an_unreachable_athena_is_a_storage_error(athena):
    unreachable = boto3.client("athena", region_name=REGION, endpoint_url="http://127.0.0.1:9",
                               config=Config(retries={"max_attempts": 1}, connect_timeout=1))

    with pytest.raises(StorageError):
        usage_log(unreachable).page(WHERE, limit=5)
