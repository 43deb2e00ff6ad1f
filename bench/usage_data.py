"""A month of usage, made up: the usage files and the live rollups of a data directory, as the gateway
would have left them after serving the requests.

    generate(data_dir, n)
      → per UTC day of the range: the day's moments (fewer at weekends, a daily peak), sorted
      → per moment: an account (the main one, or one of the others, which add a fifth on top),
        a key, a model, a channel, tokens priced at the model's prices; ~2% failures (no tokens,
        no cost); a third of the chat requests streamed, with a time to first token
      → the day's lines (UsageEvent.to_json_line) in one file of the day's partition, written at once
        (not through LocalUsageSink, which writes and syncs line by line as requests close)
      → each event added to its rollup row (account × key × model × channel × UTC quarter-hour) in
        memory, as the settlement's transaction would add it; every row inserted in one transaction

The database is made by Database, so its schema is the gateway's own; the accounts and keys are
stored through the repositories, so that the reports can check a key filter's owner.
"""

from __future__ import annotations

import os
import random
from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from chalicelib.core.domain import Account, ApiKey
from chalicelib.core.usage import LATENCY_BOUNDS_MS, QUARTER_HOUR_MS
from chalicelib.storage.local_usage_sink import USAGE_PREFIX
from chalicelib.storage.rollups import COUNTERS, LABELS
from chalicelib.storage.sqlite.account_repo import SqliteAccountRepo
from chalicelib.storage.sqlite.database import Database
from chalicelib.storage.sqlite.key_repo import SqliteKeyRepo

MAIN = "acct_main"
OTHERS = tuple(f"acct_other{n:02d}" for n in range(10))
OTHERS_SHARE = 0.2  # the other accounts' events, beside the main account's
CHANNELS = ("primary", "fallback")
CHANNEL_WEIGHTS = (85, 15)


@dataclass(frozen=True)
class Model:
    name: str
    endpoint: str
    input_units: int  # per token (units are 10^-9 USD: $0.28 per 1M tokens is 280 units a token)
    cached_units: int
    output_units: int
    weight: int
    prompt_tokens: int  # a typical request's
    completion_tokens: int


MODELS = (
    Model("deepseek-chat", "chat/completions", 280, 28, 420, 40, 900, 300),
    Model("deepseek-reasoner", "chat/completions", 550, 140, 2190, 12, 1200, 1400),
    Model("gpt-4o-mini", "chat/completions", 150, 75, 600, 20, 700, 250),
    Model("gpt-4o", "chat/completions", 2500, 1250, 10_000, 8, 1500, 400),
    Model("claude-sonnet-4", "chat/completions", 3000, 300, 15_000, 10, 2000, 500),
    Model("text-embedding-3-small", "embeddings", 20, 0, 0, 10, 300, 0),
)
FAILURES = ((429, "rate_limit_error"), (502, "upstream_error"), (504, "upstream_timeout"))
ERROR_RATE = 0.02
# Requests by UTC hour of day: a working-day peak, a quiet night.
HOUR_WEIGHTS = (3, 2, 2, 2, 2, 3, 4, 6, 9, 12, 14, 15, 14, 15, 16, 15, 13, 11, 9, 7, 6, 5, 4, 3)
_ROLLUP_COLUMNS = ("account_id", "rollup_id", *LABELS, *COUNTERS)
_INSERT = f"INSERT INTO usage_rollups ({', '.join(_ROLLUP_COLUMNS)}) VALUES ({', '.join('?' * len(_ROLLUP_COLUMNS))})"
_ERRORS, _PROMPT, _CACHED, _COMPLETION, _COST, _LATENCY, _TTFT, _TTFT_COUNT = 1, 2, 3, 4, 6, 7, 8, 9
_HISTOGRAM = COUNTERS.index("h0")


@dataclass(frozen=True)
class Profile:
    """What one account uses: its keys and models, with weights."""

    account_id: str
    keys: tuple[str, ...]
    key_weights: tuple[int, ...]
    models: tuple[Model, ...]


def profiles() -> list[Profile]:
    main = Profile(MAIN, tuple(f"key_main_{n}" for n in range(1, 6)), (50, 25, 12, 8, 5), MODELS)
    others = [Profile(account, (f"key_{account}_1", f"key_{account}_2"), (70, 30),
                      tuple(MODELS[(n + shift) % len(MODELS)] for shift in (0, 2, 5)))
              for n, account in enumerate(OTHERS)]
    return [main, *others]


@dataclass(frozen=True)
class Generated:
    since: date  # the first UTC day
    until: date  # the day after the last
    events: int
    main_events: int
    files: int
    bytes: int
    rollup_rows: int
    keys: tuple[str, ...]  # the main account's


def generate(data_dir: Path, main_events: int, *, days: int = 30, until: date | None = None,
             seed: int = 1) -> Generated:
    """`main_events` events of the main account over `days` UTC days up to `until` (today by default,
    excluded), and a fifth as many of the other accounts', in the data directory's files and rollups."""
    until = until or datetime.now(UTC).date()
    since = until - timedelta(days=days)
    rng = random.Random(seed)
    people = profiles()
    db = Database(data_dir / "tokenway.db")
    _store_accounts(db, people)
    main_per_day = _per_day(main_events, since, days)
    others_per_day = _per_day(round(main_events * OTHERS_SHARE), since, days)
    rollups: dict[tuple[str, str, str, str, int], list[int]] = {}
    files = size = 0
    hours, hour_weights = range(24), _cumulative(HOUR_WEIGHTS)
    for offset in range(days):
        day = since + timedelta(days=offset)
        start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
        who = [0] * main_per_day[offset] + [rng.randrange(1, len(people)) for _ in range(others_per_day[offset])]
        moments = sorted(zip((start + hour * 3_600_000 + rng.randrange(3_600_000)
                              for hour in rng.choices(hours, cum_weights=hour_weights, k=len(who))), who,
                             strict=True))
        lines = _lines(rng, day, start, moments, people, rollups)
        partition = data_dir / USAGE_PREFIX / f"year={day.year:04d}" / f"month={day.month:02d}" / f"day={day.day:02d}"
        partition.mkdir(parents=True, exist_ok=True)
        path = partition / f"usage-bench-{os.getpid()}-{day.isoformat()}-00-00-00-{rng.getrandbits(32):08x}.jsonl"
        data = "".join(lines).encode()
        path.write_bytes(data)
        files += 1
        size += len(data)
    with db.write() as tx:
        tx.executemany(_INSERT, ((account, f"{bucket:013d}#{key}#{model}#{channel}", bucket, key, model, channel,
                                  *counts)
                                 for (account, key, model, channel, bucket), counts in rollups.items()))
    db.close()
    return Generated(since, until, sum(main_per_day) + sum(others_per_day), sum(main_per_day), files, size,
                     len(rollups), people[0].keys)


def _store_accounts(db: Database, people: list[Profile]) -> None:
    accounts, keys = SqliteAccountRepo(db), SqliteKeyRepo(db)
    for n, person in enumerate(people):
        accounts.create(Account(account_id=person.account_id, email=f"{person.account_id}@example.com", created_at=0))
        for m, key_id in enumerate(person.keys):
            keys.create(ApiKey(key_id=key_id, key_hash=f"{n:032d}{m:032d}", account_id=person.account_id,
                               name=key_id, created_at=0, hint="sk-…"))


def _per_day(total: int, since: date, days: int) -> list[int]:
    """`total` spread over the days, weekends at 60% of a weekday, summing to `total` exactly."""
    weights = [0.6 if (since + timedelta(days=offset)).weekday() >= 5 else 1.0 for offset in range(days)]
    counts = [int(total * weight / sum(weights)) for weight in weights]
    for offset in range(total - sum(counts)):
        counts[offset % days] += 1
    return counts


def _cumulative(weights: tuple[int, ...]) -> list[int]:
    running, out = 0, []
    for weight in weights:
        running += weight
        out.append(running)
    return out


def _chooser(weights: tuple[int, ...]) -> tuple[list[float], float]:
    cumulative = _cumulative(weights)
    return [float(value) for value in cumulative], float(cumulative[-1])


def _lines(rng: random.Random, day: date, start: int, moments: list[tuple[int, int]], people: list[Profile],
           rollups: dict[tuple[str, str, str, str, int], list[int]]) -> list[str]:
    """The day's events as JSON lines, each added to its rollup row on the way.

    A line is formatted here rather than by UsageEvent.to_json_line() (a dataclass, a dict and json.dumps per
    event: ten times slower); tests/unit/test_usage_bench.py checks that the two agree, byte for byte."""
    date_text = day.isoformat()
    keys = [(person.keys, *_chooser(person.key_weights)) for person in people]
    models = [(person.models, *_chooser(tuple(model.weight for model in person.models))) for person in people]
    channel_cum, channel_total = _chooser(CHANNEL_WEIGHTS)
    random_, randint, getrandbits, lognorm = rng.random, rng.randint, rng.getrandbits, rng.lognormvariate
    lines = []
    for at, person in moments:
        account = people[person].account_id
        names, cumulative, total = keys[person]
        key = names[bisect_left(cumulative, random_() * total)]
        choices, cumulative, total = models[person]
        model = choices[bisect_left(cumulative, random_() * total)]
        channel = CHANNELS[bisect_left(channel_cum, random_() * channel_total)]
        since_midnight = at - start
        seconds, millis = divmod(since_midnight, 1000)
        minutes, second = divmod(seconds, 60)
        hour, minute = divmod(minutes, 60)
        chat = model.endpoint == "chat/completions"
        stream = chat and random_() < 1 / 3
        ttft: int | None = None
        if random_() < ERROR_RATE:
            status, error_type = FAILURES[int(random_() * len(FAILURES))]
            prompt = cached = completion = cost = 0
            latency = randint(20, 2000)
        else:
            status, error_type = 200, None
            prompt = max(1, int(lognorm(0, 0.8) * model.prompt_tokens))
            cached = int(prompt * (0.3 + 0.6 * random_())) if chat and random_() < 0.3 else 0
            completion = max(1, int(lognorm(0, 0.7) * model.completion_tokens)) if chat else 0
            cost = ((prompt - cached) * model.input_units + cached * model.cached_units
                    + completion * model.output_units)
            ttft = randint(150, 900) if stream else None
            latency = (ttft or randint(150, 600)) + int(completion * (5 + 10 * random_()))
        whole, fraction = divmod(cost, 1_000_000_000)
        lines.append(
            f'{{"time":"{date_text}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}+00:00",'
            f'"request_id":"req_{getrandbits(128):032x}","account_id":"{account}","key_id":"{key}",'
            f'"endpoint":"{model.endpoint}","model":"{model.name}","channel":"{channel}",'
            f'"stream":{"true" if stream else "false"},"status":{status},'
            f'"error_type":{"null" if error_type is None else chr(34) + error_type + chr(34)},'
            f'"prompt_tokens":{prompt},"cached_tokens":{cached},"completion_tokens":{completion},"images":0,'
            f'"cost_units":{cost},"shortfall_units":0,"latency_ms":{latency},'
            f'"ttft_ms":{"null" if ttft is None else ttft},'
            f'"cost_usd":"{whole}.{f"{fraction:09d}".rstrip("0").ljust(2, "0")}"}}\n')
        row = (account, key, model.name, channel, at - at % QUARTER_HOUR_MS)
        counts = rollups.get(row)
        if counts is None:
            counts = rollups[row] = [0] * len(COUNTERS)
        counts[0] += 1
        counts[_ERRORS] += status != 200
        counts[_PROMPT] += prompt
        counts[_CACHED] += cached
        counts[_COMPLETION] += completion
        counts[_COST] += cost
        counts[_LATENCY] += latency
        if ttft is not None:
            counts[_TTFT] += ttft
            counts[_TTFT_COUNT] += 1
        counts[_HISTOGRAM + bisect_left(LATENCY_BOUNDS_MS, latency)] += 1
    return lines
