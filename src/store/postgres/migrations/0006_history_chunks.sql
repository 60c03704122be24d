-- Call history in chunks (issue 18: a record took about 1.1 KB). A write batch's records are
-- stored together as one zstd-compressed chunk (`call_chunks`, the embedded store's format),
-- which compresses records that are alike far better than one at a time. `calls` keeps a slim
-- row per record for the filters: the id as a uuid, one single-column index per filter (B-tree
-- deduplication stores a repeated value once). The start time is not stored: the id is a UUIDv7,
-- whose first 48 bits are it, so the age limit reads it through the id's index. A record written
-- before this migration keeps its compressed JSON in `record` instead of a chunk.
DO $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT lo FROM call_parts LOOP
        EXECUTE format('ALTER TABLE calls_p%s RENAME TO calls_0005_p%s', p.lo, p.lo);
    END LOOP;
END $$;
ALTER TABLE calls RENAME TO calls_0005;
DROP INDEX calls_seq, calls_id, calls_tool, calls_webhook, calls_outcome, calls_source,
    calls_started, calls_failed;

CREATE TABLE calls (
    seq        bigint NOT NULL,
    id         uuid   NOT NULL,
    tool       text,
    webhook_id text   NOT NULL,
    outcome    text   NOT NULL,
    source     text   NOT NULL,
    -- The `last` of the chunk that holds the record.
    chunk      bigint,
    -- A record from before chunks: zstd-compressed JSON.
    record     bytea,
    CHECK ((chunk IS NULL) <> (record IS NULL))
) PARTITION BY RANGE (seq);
CREATE INDEX calls_seq ON calls (seq);
CREATE INDEX calls_id ON calls (id);
CREATE INDEX calls_tool ON calls (tool);
CREATE INDEX calls_webhook ON calls (webhook_id);
CREATE INDEX calls_outcome ON calls (outcome);
CREATE INDEX calls_source ON calls (source);
CREATE INDEX calls_failed ON calls (id) WHERE outcome <> 'success';

-- A chunk holds the records seq `last - count + 1` to `last` (its header has the count). It is
-- partitioned by `last` on the same bounds as `calls`: a partition of chunks is dropped with the
-- partition of records, when every record of every chunk in it is past retention.
CREATE TABLE call_chunks (
    last bigint NOT NULL,
    body bytea  NOT NULL
) PARTITION BY RANGE (last);
CREATE INDEX call_chunks_last ON call_chunks (last);
-- Chunks are compressed already: no second compression when they go to TOAST (partitions
-- take the column's storage from here).
ALTER TABLE call_chunks ALTER COLUMN body SET STORAGE EXTERNAL;

DO $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT lo, hi FROM call_parts LOOP
        EXECUTE format('CREATE TABLE calls_p%s PARTITION OF calls FOR VALUES FROM (%s) TO (%s)',
                       p.lo, p.lo, p.hi);
        EXECUTE format('CREATE TABLE call_chunks_p%s PARTITION OF call_chunks
                        FOR VALUES FROM (%s) TO (%s)', p.lo, p.lo, p.hi);
    END LOOP;
END $$;
INSERT INTO calls (seq, id, tool, webhook_id, outcome, source, record)
    SELECT seq, substr(id, 6)::uuid, tool, webhook_id, outcome, source, record
    FROM calls_0005
    WHERE seq >= (SELECT visible_from FROM call_count);
DROP TABLE calls_0005;
