-- API keys (the SHA-256 hash of a key, never the key) and the audit log.
CREATE TABLE api_keys (
    id   text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    doc  text NOT NULL
);

CREATE TABLE audit (
    id       text PRIMARY KEY,
    actor    text NOT NULL,
    resource text,
    doc      text NOT NULL
);
CREATE INDEX audit_actor ON audit (actor, id);
CREATE INDEX audit_resource ON audit (resource, id);
