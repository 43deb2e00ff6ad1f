"""What schema version 2 added to the one-machine database: the payment tables, the usage rollups,
and the upgrade of a version-1 file (see Database), all of it in the transaction that opens the file:

    version 1 ──► accounts gain frozen, debt, disputes (0, CHECK >= 0)
                  models gain cache_write_per_1m (NULL: cache writes cost the input price)
                  topup_orders, payment_events, settings, redemption_codes, usage_rollups created
                  ledger kinds renamed: operator, credit → adjustment; payment → topup; redemption → redeem
                  claims `credit#operator#…` → `credit#adjustment#…` (payment → topup, redemption → redeem),
                  in credit_claims and in the ledger entry ids that embed them
                  channels gain extra_headers ('[]') and state ('auto'); models gain fallbacks ('[]')
                  groups gain rpm, tpm, concurrency (NULL: unlimited) and model_limits ('{}');
                  keys gain rpm_limit, tpm_limit, concurrency_limit (NULL: the plan's)
                  limit_counters, limit_leases created
              ──► version 2
"""

from __future__ import annotations

PAYMENT_TABLES = """
CREATE TABLE topup_orders (
    order_id       TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL,
    status         TEXT NOT NULL,
    pay_cents      INTEGER NOT NULL CHECK (pay_cents >= 0),
    credit_units   INTEGER NOT NULL CHECK (credit_units >= 0),
    bonus_units    INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    currency       TEXT NOT NULL,
    provider       TEXT NOT NULL,
    livemode       INTEGER NOT NULL,
    version        INTEGER NOT NULL,             -- moves on by one with every change
    updated_at     INTEGER NOT NULL,
    session_id     TEXT,
    checkout_url   TEXT,
    expires_at     INTEGER,
    payment_intent TEXT,
    paid_at        INTEGER,
    refunded_cents INTEGER NOT NULL CHECK (refunded_cents >= 0),
    refunded_units INTEGER NOT NULL CHECK (refunded_units >= 0),
    dispute_id     TEXT,
    dispute_status TEXT,
    frozen_units   INTEGER NOT NULL CHECK (frozen_units >= 0),
    review_reason  TEXT,
    reviewed_at    INTEGER,
    note           TEXT
);
CREATE INDEX topup_orders_by_age ON topup_orders (created_at, order_id);
CREATE INDEX topup_orders_by_account ON topup_orders (account_id, created_at, order_id);
CREATE INDEX topup_orders_by_status ON topup_orders (status, created_at, order_id);
CREATE INDEX topup_orders_by_payment ON topup_orders (payment_intent) WHERE payment_intent IS NOT NULL;

-- Payment provider events handled: each is acted on once.
CREATE TABLE payment_events (
    event_id    TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX payment_events_by_expiry ON payment_events (expires_at);

-- The operator's settings, one JSON value per name.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Redemption codes by the hash of their secret (`code_id` is the public name).
CREATE TABLE redemption_codes (
    code_hash   TEXT PRIMARY KEY,
    code_id     TEXT NOT NULL UNIQUE,
    hint        TEXT NOT NULL,
    value_units INTEGER NOT NULL CHECK (value_units > 0),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    status      TEXT NOT NULL,                   -- active, used or disabled
    batch       TEXT,
    note        TEXT,
    redeemed_by TEXT,
    redeemed_at INTEGER
) WITHOUT ROWID;
CREATE INDEX redemption_codes_by_age ON redemption_codes (created_at, code_id);
CREATE INDEX redemption_codes_by_batch ON redemption_codes (batch, created_at, code_id);
"""

# The live usage rollups: one row per account × key × model × channel × UTC quarter-hour, added to
# by the transaction that settles or releases each request (see wallet_repo.py). `rollup_id` is
# `<13-digit bucket ms>#<key>#<model>#<channel>`, so an account's rows sort by bucket. The latency
# histogram is one counter per bucket of LATENCY_BOUNDS_MS (h0 … h18), each added to on its own.
USAGE_TABLES = """
CREATE TABLE usage_rollups (
    account_id        TEXT NOT NULL,
    rollup_id         TEXT NOT NULL,
    bucket            INTEGER NOT NULL,          -- epoch ms, the UTC quarter-hour's start
    key_id            TEXT NOT NULL,
    model             TEXT NOT NULL,
    channel           TEXT,
    requests          INTEGER NOT NULL DEFAULT 0 CHECK (requests >= 0),
    errors            INTEGER NOT NULL DEFAULT 0 CHECK (errors >= 0),
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    cached_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    images            INTEGER NOT NULL DEFAULT 0,
    cost              INTEGER NOT NULL DEFAULT 0 CHECK (cost >= 0),  -- units charged
    latency_sum_ms    INTEGER NOT NULL DEFAULT 0,
    ttft_sum_ms       INTEGER NOT NULL DEFAULT 0,
    ttft_count        INTEGER NOT NULL DEFAULT 0,
    h0                INTEGER NOT NULL DEFAULT 0,
    h1                INTEGER NOT NULL DEFAULT 0,
    h2                INTEGER NOT NULL DEFAULT 0,
    h3                INTEGER NOT NULL DEFAULT 0,
    h4                INTEGER NOT NULL DEFAULT 0,
    h5                INTEGER NOT NULL DEFAULT 0,
    h6                INTEGER NOT NULL DEFAULT 0,
    h7                INTEGER NOT NULL DEFAULT 0,
    h8                INTEGER NOT NULL DEFAULT 0,
    h9                INTEGER NOT NULL DEFAULT 0,
    h10               INTEGER NOT NULL DEFAULT 0,
    h11               INTEGER NOT NULL DEFAULT 0,
    h12               INTEGER NOT NULL DEFAULT 0,
    h13               INTEGER NOT NULL DEFAULT 0,
    h14               INTEGER NOT NULL DEFAULT 0,
    h15               INTEGER NOT NULL DEFAULT 0,
    h16               INTEGER NOT NULL DEFAULT 0,
    h17               INTEGER NOT NULL DEFAULT 0,
    h18               INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, rollup_id)
) WITHOUT ROWID;
-- Every account's rows of a time range (the operator's views).
CREATE INDEX usage_rollups_by_bucket ON usage_rollups (bucket, account_id, rollup_id);
"""

# Request limits (see storage/sqlite/limit_repo.py): a counter row is a scope's minute window
# (`<scope>#<epoch minute>`: requests, tokens; expires a minute after the window ends) or its
# in-flight counter (`<scope>`: inflight, never expires); a lease is an admitted request's hold on
# the in-flight counters it names, until it finishes or the sweeper finishes it.
LIMIT_TABLES = """
CREATE TABLE limit_counters (
    counter_id   TEXT PRIMARY KEY,
    requests     INTEGER NOT NULL DEFAULT 0,
    tokens       INTEGER NOT NULL DEFAULT 0,
    inflight     INTEGER NOT NULL DEFAULT 0 CHECK (inflight >= 0),
    expires_at_s INTEGER                         -- NULL: an in-flight counter
) WITHOUT ROWID;
CREATE INDEX limit_counters_by_expiry ON limit_counters (expires_at_s) WHERE expires_at_s IS NOT NULL;

CREATE TABLE limit_leases (
    request_id   TEXT PRIMARY KEY,
    scopes       TEXT NOT NULL,                  -- JSON array of in-flight counters held
    expires_at_s INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX limit_leases_by_expiry ON limit_leases (expires_at_s);
"""

# Version 1 to 2: the wallet's frozen credit, debt and disputes; models' cache-write price; the payment
# and usage tables; ledger kinds as the customer reads them, and the claims (and the credit entry ids
# that embed them) renamed with them.
_RENAMED_CLAIMS = (("operator", "adjustment"), ("payment", "topup"), ("redemption", "redeem"))
MIGRATE_1_TO_2 = [
    "ALTER TABLE accounts ADD COLUMN frozen INTEGER NOT NULL DEFAULT 0 CHECK (frozen >= 0)",
    "ALTER TABLE accounts ADD COLUMN debt INTEGER NOT NULL DEFAULT 0 CHECK (debt >= 0)",
    "ALTER TABLE accounts ADD COLUMN disputes INTEGER NOT NULL DEFAULT 0 CHECK (disputes >= 0)",
    "ALTER TABLE models ADD COLUMN cache_write_per_1m INTEGER",
    "ALTER TABLE channels ADD COLUMN extra_headers TEXT NOT NULL DEFAULT '[]'",
    "ALTER TABLE channels ADD COLUMN state TEXT NOT NULL DEFAULT 'auto'",
    "ALTER TABLE models ADD COLUMN fallbacks TEXT NOT NULL DEFAULT '[]'",
    *[f"ALTER TABLE groups ADD COLUMN {name} INTEGER" for name in ("rpm", "tpm", "concurrency")],
    "ALTER TABLE groups ADD COLUMN model_limits TEXT NOT NULL DEFAULT '{}'",
    *[f"ALTER TABLE keys ADD COLUMN {name} INTEGER" for name in ("rpm_limit", "tpm_limit", "concurrency_limit")],
    *[statement for statement in (PAYMENT_TABLES + USAGE_TABLES + LIMIT_TABLES).split(";") if statement.strip()],
    "UPDATE ledger SET kind = CASE kind WHEN 'operator' THEN 'adjustment' WHEN 'payment' THEN 'topup' "
    "WHEN 'redemption' THEN 'redeem' WHEN 'credit' THEN 'adjustment' END "
    "WHERE kind IN ('operator', 'payment', 'redemption', 'credit')",
    *[statement
      for old, new in _RENAMED_CLAIMS
      for statement in (
          f"UPDATE credit_claims SET claim = 'credit#{new}#' || substr(claim, {len(f'credit#{old}#') + 1}), "
          f"entry_id = replace(entry_id, '#credit#{old}#', '#credit#{new}#') "
          f"WHERE substr(claim, 1, {len(f'credit#{old}#')}) = 'credit#{old}#'",
          # An entry id is `<13-digit ms>#<claim>`; a hash has no `#`, so the one occurrence is the claim's.
          f"UPDATE ledger SET entry_id = replace(entry_id, '#credit#{old}#', '#credit#{new}#') "
          f"WHERE instr(entry_id, '#credit#{old}#') = 14",
      )],
]
