-- toolgate's shared store. Definitions are kept as the JSON text the sled store keeps (json text,
-- not jsonb, so a body template's key order survives), with the columns that constraints and
-- indexes need beside them.

CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- Bumped in the transaction of every definition or secret change: nodes that missed a
-- notification see the new version on their next check.
CREATE TABLE catalog_version (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint  NOT NULL
);
INSERT INTO catalog_version VALUES (true, 0);

CREATE TABLE secrets (
    id         text PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    sealed     text NOT NULL,
    created_at text NOT NULL,
    updated_at text NOT NULL
);

-- Which webhooks and subscriptions use a secret (the delete guard). Not a foreign key: a
-- definition from a file may name a secret that is set later.
CREATE TABLE secret_refs (
    secret_name text NOT NULL,
    owner_id    text NOT NULL,
    PRIMARY KEY (secret_name, owner_id)
);
CREATE INDEX secret_refs_owner ON secret_refs (owner_id);

CREATE TABLE webhooks (
    id  text PRIMARY KEY,
    doc text NOT NULL
);

-- The foreign key makes the webhook delete guard atomic against a link made on another node.
CREATE TABLE tools (
    id         text PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    webhook_id text REFERENCES webhooks (id),
    doc        text NOT NULL
);
CREATE INDEX tools_webhook ON tools (webhook_id);

CREATE TABLE agents (
    id   text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    doc  text NOT NULL
);

CREATE TABLE subscriptions (
    id             text PRIMARY KEY,
    doc            text NOT NULL,
    signing_sealed text NOT NULL
);

CREATE TABLE outbox (
    seq bigserial PRIMARY KEY,
    doc text NOT NULL
);

-- A pending delivery is claimed by setting lease_until; another node takes it only once the
-- lease has run out (its holder died mid-delivery).
CREATE TABLE deliveries (
    id              text PRIMARY KEY,
    subscription_id text   NOT NULL,
    status          text   NOT NULL,
    next_attempt_at bigint,
    lease_until     bigint NOT NULL DEFAULT 0,
    doc             text   NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, id);
CREATE INDEX deliveries_status ON deliveries (status, id);

-- Call history: one row per call, the record zstd-compressed JSON, filter columns indexed.
CREATE TABLE calls (
    id         text   PRIMARY KEY,
    tool       text,
    webhook_id text   NOT NULL,
    outcome    text   NOT NULL,
    source     text   NOT NULL,
    started_ms bigint NOT NULL,
    record     bytea  NOT NULL
);
CREATE INDEX calls_tool ON calls (tool, id);
CREATE INDEX calls_webhook ON calls (webhook_id, id);
CREATE INDEX calls_outcome ON calls (outcome, id);
CREATE INDEX calls_source ON calls (source, id);
CREATE INDEX calls_started ON calls (started_ms);

-- The exact record count, changed in the same transaction as the records.
CREATE TABLE call_count (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    n   bigint  NOT NULL
);
INSERT INTO call_count VALUES (true, 0);

-- MCP sessions, so a session's requests may land on any node.
CREATE TABLE mcp_sessions (
    id         text PRIMARY KEY,
    state      text NOT NULL,
    updated_ms bigint NOT NULL
);
