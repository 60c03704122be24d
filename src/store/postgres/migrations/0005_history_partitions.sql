-- Call history partitioned by write order. Every record gets a sequence number (`seq`) from the
-- counter row, which also orders the batches of all nodes. Retention no longer deletes rows one
-- by one (the dead rows piled up faster than vacuum removed them, and the table and every scan
-- grew): it raises `visible_from`, below which no read sees a record, in the same transaction
-- as the insert, and drops a partition once all of it is below. Storage is at most the cap plus
-- one partition.
ALTER TABLE calls RENAME TO calls_0004;
ALTER INDEX calls_pkey RENAME TO calls_0004_pkey;
DROP INDEX calls_tool, calls_webhook, calls_outcome, calls_source, calls_started, calls_failed;

CREATE TABLE calls (
    seq        bigint NOT NULL,
    id         text   NOT NULL,
    tool       text,
    webhook_id text   NOT NULL,
    outcome    text   NOT NULL,
    source     text   NOT NULL,
    started_ms bigint NOT NULL,
    record     bytea  NOT NULL
) PARTITION BY RANGE (seq);
CREATE INDEX calls_seq ON calls (seq);
CREATE INDEX calls_id ON calls (id);
CREATE INDEX calls_tool ON calls (tool, id);
CREATE INDEX calls_webhook ON calls (webhook_id, id);
CREATE INDEX calls_outcome ON calls (outcome, id);
CREATE INDEX calls_source ON calls (source, id);
CREATE INDEX calls_started ON calls (started_ms);
CREATE INDEX calls_failed ON calls (id) WHERE outcome <> 'success';

-- The partitions: `calls_p<lo>` holds seq in [lo, hi).
CREATE TABLE call_parts (
    lo bigint PRIMARY KEY,
    hi bigint NOT NULL
);

-- `n` stays the exact number of visible records.
ALTER TABLE call_count
    ADD COLUMN seq bigint NOT NULL DEFAULT 0,
    ADD COLUMN visible_from bigint NOT NULL DEFAULT 1;

DO $$
DECLARE
    k bigint;
BEGIN
    SELECT count(*) INTO k FROM calls_0004;
    IF k > 0 THEN
        EXECUTE format('CREATE TABLE calls_p1 PARTITION OF calls FOR VALUES FROM (1) TO (%s)', k + 1);
        INSERT INTO call_parts VALUES (1, k + 1);
        INSERT INTO calls
            SELECT row_number() OVER (ORDER BY id), id, tool, webhook_id, outcome, source,
                   started_ms, record
            FROM calls_0004;
    END IF;
    UPDATE call_count SET seq = k, n = k, visible_from = 1;
END $$;
DROP TABLE calls_0004;
