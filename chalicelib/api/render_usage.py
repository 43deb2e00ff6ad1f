"""How usage summaries, log rows and CSV exports look: money as decimal USD strings, times in ISO 8601."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from chalicelib.api.render import iso
from chalicelib.core.money import units_to_usd

if TYPE_CHECKING:
    from chalicelib.core.domain import UsageEvent
    from chalicelib.usage.summary import Summary, Totals

# The log's columns, in the CSV's order; `channel` only for operators.
LOG_COLUMNS = ("time", "request_id", "key_id", "model", "endpoint", "stream", "status", "error_type",
               "prompt_tokens", "cached_tokens", "completion_tokens", "images", "cost_usd", "latency_ms", "ttft_ms")


def counters_json(totals: Totals) -> dict[str, Any]:
    return {
        "requests": totals.requests,
        "successful_requests": totals.successes,
        "failed_requests": totals.errors,
        "spend_usd": units_to_usd(totals.cost),
        "prompt_tokens": totals.prompt_tokens,
        "cached_tokens": totals.cached_tokens,
        "completion_tokens": totals.completion_tokens,
        "total_tokens": totals.prompt_tokens + totals.completion_tokens,
        "images": totals.images,
    }


def totals_json(totals: Totals) -> dict[str, Any]:
    return {
        **counters_json(totals),
        "error_rate": round(totals.errors / totals.requests, 4) if totals.requests else None,
        "latency_mean_ms": totals.latency_mean_ms(),
        "latency_p50_ms": totals.percentile_ms(0.5),
        "latency_p95_ms": totals.percentile_ms(0.95),
        "ttft_mean_ms": totals.ttft_mean_ms(),
    }


def summary_json(summary: Summary) -> dict[str, Any]:
    span = summary.range
    name = {"key": "key_id"}.get(summary.group_by, summary.group_by)
    return {
        "from": span.local(span.since_ms).isoformat(),
        "to": span.local(span.until_ms).isoformat(),
        "tz": span.zone.key,
        "granularity": summary.granularity,
        "group_by": summary.group_by,
        "totals": totals_json(summary.totals),
        "series": [{"start": start.isoformat(), **counters_json(totals)} for start, totals in summary.series],
        "breakdown": [{name: group, **totals_json(totals)} for group, totals in summary.breakdown],
        "as_of": iso(summary.as_of),
    }


def event_json(event: UsageEvent, *, operator: bool = False) -> dict[str, Any]:
    shown = {column: getattr(event, column) for column in LOG_COLUMNS if column != "cost_usd"}
    shown["cost_usd"] = units_to_usd(event.cost_units)
    if operator:
        shown.update(account_id=event.account_id, channel=event.channel,
                     shortfall_usd=units_to_usd(event.shortfall_units))
    return shown


def csv_lines(events: Iterable[UsageEvent], *, operator: bool = False) -> Iterator[str]:
    """The log as CSV text, a header then one line per event, produced as the events are read."""
    columns = list(LOG_COLUMNS) + (["account_id", "channel", "shortfall_usd"] if operator else [])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(values: list[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(columns)
    for event in events:
        shown = event_json(event, operator=operator)
        yield line(["" if shown[column] is None else shown[column] for column in columns])
