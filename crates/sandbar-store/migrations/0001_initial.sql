-- Timestamps are RFC 3339 UTC strings with milliseconds (fixed width, so they sort).
-- JSON columns hold serde_json documents of the sandbar-core types.

CREATE TABLE organizations (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    -- first characters of the key, for display
    prefix          TEXT NOT NULL,
    -- hex SHA-256 of the whole key; the key itself is never stored
    key_hash        TEXT NOT NULL UNIQUE,
    created_at      TEXT NOT NULL,
    revoked_at      TEXT
);

CREATE TABLE sandboxes (
    id                    TEXT PRIMARY KEY NOT NULL,
    organization_id       TEXT NOT NULL REFERENCES organizations (id),
    name                  TEXT NOT NULL,
    user                  TEXT NOT NULL,
    env                   TEXT NOT NULL,
    labels                TEXT NOT NULL,
    public                INTEGER NOT NULL,
    network_block_all     INTEGER NOT NULL,
    network_allow_list    TEXT,
    target                TEXT NOT NULL,
    cpu                   INTEGER NOT NULL,
    gpu                   INTEGER NOT NULL,
    memory                INTEGER NOT NULL,
    disk                  INTEGER NOT NULL,
    snapshot              TEXT NOT NULL,
    state                 TEXT NOT NULL,
    desired_state         TEXT NOT NULL,
    error_reason          TEXT,
    auto_stop_interval    INTEGER NOT NULL,
    auto_archive_interval INTEGER NOT NULL,
    auto_delete_interval  INTEGER NOT NULL,
    volumes               TEXT NOT NULL,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    last_activity_at      TEXT NOT NULL,
    launched_pid          INTEGER,
    launched_start_time   INTEGER,
    preview_token         TEXT NOT NULL,
    UNIQUE (organization_id, name)
);

CREATE INDEX sandboxes_by_created ON sandboxes (organization_id, created_at, id);

CREATE TABLE volumes (
    id              TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    name            TEXT NOT NULL,
    state           TEXT NOT NULL,
    error_reason    TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    last_used_at    TEXT,
    UNIQUE (organization_id, name)
);

CREATE TABLE snapshots (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    image_name TEXT,
    created_at TEXT NOT NULL
);
