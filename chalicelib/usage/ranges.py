"""The time range a usage query names: `from` and `to` in a time zone, checked and turned into UTC.

`from` and `to` are ISO 8601 dates (midnight in the zone) or date-times (in the zone unless they carry
an offset); the range is [from, to). It is widened to whole UTC quarter-hours — the rollups' buckets,
which every zone's hours and days are made of — and may span at most MAX_DAYS days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.core.errors import InvalidRequest
from chalicelib.core.usage import QUARTER_HOUR_MS, quarter_hour

MAX_DAYS = 400
DEFAULT_DAYS = 7
_MAX_TEXT = 64


@dataclass(frozen=True)
class TimeRange:
    since_ms: int  # UTC, a quarter-hour start
    until_ms: int  # UTC, a quarter-hour start, after since_ms
    zone: ZoneInfo

    def local(self, epoch_ms: int) -> datetime:
        return datetime.fromtimestamp(epoch_ms / 1000, tz=self.zone)


def zone(name: str | None) -> ZoneInfo:
    """The IANA time zone `name` (default UTC); InvalidRequest naming `tz` if there is none."""
    text = (name or "UTC").strip()
    if not text or len(text) > _MAX_TEXT or text.startswith(("/", ".")) or ".." in text:
        raise InvalidRequest(f"tz must be an IANA time zone name such as Asia/Shanghai, not {text[:_MAX_TEXT]!r}.",
                             param="tz", code="invalid_value")
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(f"tz must be an IANA time zone name such as Asia/Shanghai, not {text!r}.",
                             param="tz", code="invalid_value") from None


def time_range(since: str | None, until: str | None, tz: str | None, *, now_ms: int) -> TimeRange:
    """The range [since, until) in `tz`; by default the last DEFAULT_DAYS days up to the end of today."""
    place = zone(tz)
    today = datetime.fromtimestamp(now_ms / 1000, tz=place).date()
    end = _moment(until, "to", place) if until else _midnight(today + timedelta(days=1), place)
    start = _moment(since, "from", place) if since else _midnight(today - timedelta(days=DEFAULT_DAYS - 1), place)
    since_ms = quarter_hour(int(start.timestamp() * 1000))
    until_ms = -quarter_hour(-int(end.timestamp() * 1000))  # rounded up
    if since_ms >= until_ms:
        raise InvalidRequest("from must be before to.", param="from", code="invalid_value")
    if until_ms - since_ms > MAX_DAYS * 24 * 3600 * 1000 + QUARTER_HOUR_MS:
        raise InvalidRequest(f"The range may span at most {MAX_DAYS} days.", param="to", code="range_too_long")
    return TimeRange(since_ms, until_ms, place)


def _moment(text: str, name: str, place: ZoneInfo) -> datetime:
    value = text.strip()
    try:
        if len(value) > _MAX_TEXT:
            raise ValueError
        if len(value) == 10:
            return _midnight(date.fromisoformat(value), place)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{name} must be an ISO 8601 date or date-time, e.g. 2026-11-01 or "
                             f"2026-11-01T08:00:00+08:00.", param=name, code="invalid_value") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=place)


def _midnight(day: date, place: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=place)
