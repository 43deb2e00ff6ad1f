-- The one-machine database at schema version 1, as gateways before version 2 created it.
CREATE TABLE accounts (
    account_id    TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    email_key     TEXT NOT NULL UNIQUE,          -- the email in lower case: one account per email
    created_at    INTEGER NOT NULL,
    status        TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT,
    session_epoch INTEGER NOT NULL,
    groups        TEXT NOT NULL,                 -- JSON array of plan names
    default_plan  INTEGER NOT NULL,
    available     INTEGER NOT NULL DEFAULT 0 CHECK (available >= 0),
    held          INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    shortfall     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX accounts_by_age ON accounts (created_at, account_id);

CREATE TABLE keys (
    key_id            TEXT PRIMARY KEY,
    key_hash          TEXT NOT NULL UNIQUE,
    account_id        TEXT NOT NULL,
    name              TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    hint              TEXT NOT NULL,
    plan              TEXT,
    status            TEXT NOT NULL,
    expires_at        INTEGER,
    quota             INTEGER,
    models            TEXT NOT NULL,             -- JSON array
    cidrs             TEXT NOT NULL,             -- JSON array
    spent             INTEGER NOT NULL DEFAULT 0,
    reserved          INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    quota_left        INTEGER,
    requests          INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    last_used_at      INTEGER
);
CREATE INDEX keys_by_account ON keys (account_id, created_at);

-- The hashes a regenerated key had: no secret authenticates or holds with them, and a
-- request held under one settles on the key.
CREATE TABLE key_forwards (
    old_hash TEXT PRIMARY KEY,
    key_id   TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE holds (
    request_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    key_hash   TEXT NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount >= 0),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    key_quota  INTEGER NOT NULL,
    plan       TEXT NOT NULL
);
CREATE INDEX holds_by_expiry ON holds (expires_at);

CREATE TABLE ledger (
    account_id        TEXT NOT NULL,
    entry_id          TEXT NOT NULL,             -- 13-digit epoch ms first: sorts in time order
    kind              TEXT NOT NULL,
    amount            INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    request_id        TEXT,
    key_id            TEXT,
    model             TEXT,
    shortfall         INTEGER NOT NULL DEFAULT 0,
    note              TEXT,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    reference         TEXT,
    PRIMARY KEY (account_id, entry_id)           -- an entry is written once
) WITHOUT ROWID;

-- A credit's claim: unique across accounts, naming the entry that took it.
CREATE TABLE credit_claims (
    claim      TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    entry_id   TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE channels (
    name               TEXT PRIMARY KEY,
    base_url           TEXT NOT NULL,
    kind               TEXT NOT NULL,
    api_key_sealed     BLOB NOT NULL,            -- AES-256-GCM ciphertext (storage/secrets)
    api_key_data_key   BLOB NOT NULL,            -- its data key, wrapped by the keeper
    api_key_wrapped_by TEXT NOT NULL
);

CREATE TABLE models (
    name                TEXT PRIMARY KEY,
    kind                TEXT NOT NULL,
    input_per_1m        INTEGER NOT NULL,
    output_per_1m       INTEGER NOT NULL,
    cached_input_per_1m INTEGER,
    per_image           INTEGER NOT NULL,
    image_prices        TEXT NOT NULL,           -- JSON array of {quality, size, price}
    routes              TEXT NOT NULL,           -- JSON array of {channel, upstream_model}
    context_window      INTEGER,
    max_output_tokens   INTEGER,
    use_case            TEXT NOT NULL,
    timeout_s           REAL,
    owned_by            TEXT NOT NULL,
    cap_field           TEXT NOT NULL,
    pass_through        TEXT NOT NULL            -- JSON array
);

CREATE TABLE groups (
    name           TEXT PRIMARY KEY,
    multiplier_ppm INTEGER NOT NULL,
    models         TEXT NOT NULL,                -- JSON array
    description    TEXT NOT NULL
);

CREATE TABLE sessions (
    session_hash  TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL,
    session_epoch INTEGER NOT NULL,
    csrf_hash     TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE login_attempts (
    counter_id   TEXT PRIMARY KEY,
    attempts     INTEGER NOT NULL DEFAULT 0,
    expires_at_s INTEGER NOT NULL,
    not_before_s INTEGER                         -- a lock's: taken until then
) WITHOUT ROWID;
CREATE INDEX login_attempts_by_expiry ON login_attempts (expires_at_s);

CREATE TABLE password_links (
    account_id TEXT PRIMARY KEY,
    link_hash  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX password_links_by_expiry ON password_links (expires_at);
