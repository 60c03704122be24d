-- The history table is written and pruned all the time once retention starts: vacuum it after
-- every ~10,000 dead rows instead of after 20 % of the table, without cost-based pauses, so
-- dead rows do not pile up in front of the retention delete and the newest-first pages.
ALTER TABLE calls SET (
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0.05
);

-- `outcome=failed` (every outcome but success) gets an index of its own.
CREATE INDEX calls_failed ON calls (id) WHERE outcome <> 'success';
