"""The live usage rollups on DynamoDB: the usage-rollups table, added to inside the wallet's
settle and release transactions (`rollup_item`), read back by bucket range.

Where things live:
- item: partition `account_id`, sort `rollup_id` = `<13-digit bucket ms>#<key>#<model>#<channel>`,
  so an account's rows of a time range are one key range; `bucket`, `day` (the bucket's UTC
  date, `YYYY-MM-DD`), `key_id`, `model`, `channel` (absent: none); the counters, absent until
  first added to (read as 0), the latency histogram as one counter per bucket, `h0` … `h18`;
- `day-index`: partition `day`, sort `rollup_id`: every account's rows, one UTC day at a time.

    settle() / release() closing a request ─► one more item of its transaction, role "rollup":
        Update: ADD the request's counters, SET its labels (the same for every request of the row)
        unconditional: the transaction's other conditions (the hold's delete, the charge's put)
        decide whether the request is counted, and a cancelled transaction counts nothing
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.core.usage import RollupRow, UsageDelta
from chalicelib.storage.dynamodb.common import TransactItem, read_all, to_item
from chalicelib.storage.ports import UsageRollupRepo
from chalicelib.storage.rollups import counters, labels, row_of, summed, utc_day

_DAY_INDEX = "day-index"


def rollup_item(table: str, account_id: str, usage: UsageDelta, charged: int, *, error: bool = False) -> TransactItem:
    """The rollup's part of closing a request: its counters added to its row."""
    added = {name: value for name, value in counters(usage, charged, error=error).items() if value}
    # The labels are the same for every request of the row: setting them again changes nothing.
    given = {name: value for name, value in {**labels(usage), "day": utc_day(usage.bucket)}.items()
             if value is not None}
    return TransactItem("rollup", {"Update": {
        "TableName": table,
        "Key": to_item({"account_id": account_id, "rollup_id": usage.rollup_id}),
        "UpdateExpression": "SET " + ", ".join(f"#{name} = :{name}" for name in given)
                            + " ADD " + ", ".join(f"#{name} :{name}" for name in added),
        "ExpressionAttributeNames": {f"#{name}": name for name in (*given, *added)},
        "ExpressionAttributeValues": {f":{name}": value for name, value in to_item({**given, **added}).items()},
    }})


class DynamoUsageRollupRepo(UsageRollupRepo):
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def rows(self, account_id: str | None, since_ms: int, until_ms: int) -> list[RollupRow]:
        if until_ms <= since_ms:
            return []
        # A bucket starts in [since, until) exactly when its 13-digit id prefix does: `~` sorts
        # after the `#` that follows the bucket, so the upper bound takes every row of until - 1.
        bounds = {":since": {"S": f"{since_ms:013d}"}, ":until": {"S": f"{until_ms - 1:013d}~"}}
        if account_id is not None:
            items = read_all(self._client.query, "read the usage rollups", TableName=self._table,
                             KeyConditionExpression="account_id = :id AND rollup_id BETWEEN :since AND :until",
                             ExpressionAttributeValues={":id": {"S": account_id}, **bounds}, ConsistentRead=True)
        else:
            # The index is read one UTC day at a time (a global index is read eventually consistent:
            # a request closed a moment ago may be missing); BETWEEN keeps the range's ends.
            items = []
            for day in _days(since_ms, until_ms):
                items.extend(read_all(self._client.query, "read the usage rollups", TableName=self._table,
                                      IndexName=_DAY_INDEX,
                                      KeyConditionExpression="#day = :day AND rollup_id BETWEEN :since AND :until",
                                      ExpressionAttributeNames={"#day": "day"},
                                      ExpressionAttributeValues={":day": {"S": day}, **bounds}))
            items.sort(key=lambda item: (item["bucket"], item["account_id"], item["rollup_id"]))
        return [row_of(item["account_id"], item) for item in items]


    def sums(self, account_id: str | None, since_ms: int, until_ms: int, by: str, *,
             latency: bool = True) -> list[RollupRow]:
        # DynamoDB has no GROUP BY: the rows are read and summed here.
        return summed(self.rows(account_id, since_ms, until_ms), by)


def _days(since_ms: int, until_ms: int) -> list[str]:
    """The UTC dates of [since, until), first to last."""
    day = datetime.fromtimestamp(since_ms / 1000, UTC).date()
    last = datetime.fromtimestamp((until_ms - 1) / 1000, UTC).date()
    days = []
    while day <= last:
        days.append(day.isoformat())
        day += timedelta(days=1)
    return days
