//! Call history: one row per call, the record as zstd-compressed JSON, every `GET /v1/calls`
//! filter served by an index. The table is partitioned by write order (`seq`, handed out by the
//! counter row, which also orders the batches of every node). The exact count of visible records
//! lives in that row, changed in the same transaction as the records. Retention raises
//! `visible_from` (no read sees a record below it) and drops a partition once all of it is
//! below, instead of deleting rows one by one: dead rows piled up faster than vacuum removed
//! them and every batch slowed down (BENCHMARKS.md, issue 18).

use sqlx::Row;

use super::{PgStore, Tx, db};
use crate::model::{CallRecord, OutcomeFilter};
use crate::store::{CallFilter, HistoryStore, StoreError, StoreFuture};

/// Rows removed per statement by the age limit, so one prune never holds locks for long.
const AGE_BATCH: i64 = 5_000;

/// The condition every read adds: the record is not past retention.
const VISIBLE: &str = "seq >= (SELECT visible_from FROM call_count)";

/// Records per partition: an eighth of the cap (so storage stays within the cap plus an eighth),
/// between 256 and 1,000,000.
fn partition_size(max_records: usize) -> i64 {
    let eighth = i64::try_from(max_records / 8).unwrap_or(i64::MAX);
    if max_records == 0 {
        1_000_000
    } else {
        eighth.clamp(256, 1_000_000)
    }
}
/// When the record was made, for the age limit: the time in its UUIDv7 id (as the embedded
/// store reads it), else its `started_at`.
fn started_ms(r: &CallRecord) -> i64 {
    let from_id =
        r.id.rsplit_once('_')
            .and_then(|(_, hex)| uuid::Uuid::parse_str(hex).ok())
            .and_then(|u| u.get_timestamp())
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                (secs as i64).saturating_mul(1000) + i64::from(nanos / 1_000_000)
            });
    from_id.unwrap_or_else(|| {
        time::OffsetDateTime::parse(
            &r.started_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(0)
    })
}

/// One record as zstd-compressed JSON. The compressor is the batch's: making a zstd context
/// per record cost more than compressing it.
fn pack(r: &CallRecord, zstd: &mut zstd::bulk::Compressor<'_>) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    zstd.compress(&json)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn unpack(b: &[u8]) -> Result<CallRecord, StoreError> {
    let json = zstd::stream::decode_all(b).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Make sure partitions cover every seq up to `last`, each `size` long, starting where the
/// newest one ends. Runs under the counter row's lock, so two nodes never race to create one.
async fn cover(tx: &mut Tx, first: i64, last: i64, size: i64) -> Result<(), StoreError> {
    let end: Option<i64> = sqlx::query_scalar("SELECT max(hi) FROM call_parts")
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
    let mut lo = end.unwrap_or(first);
    while lo <= last {
        let hi = lo.saturating_add(size);
        // Both bounds are integers this code computed: nothing from outside reaches the DDL.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE calls_p{lo} PARTITION OF calls FOR VALUES FROM ({lo}) TO ({hi})"
        )))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        sqlx::query("INSERT INTO call_parts (lo, hi) VALUES ($1, $2)")
            .bind(lo)
            .bind(hi)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        lo = hi;
    }
    Ok(())
}

/// Drop the partitions that lie wholly below `visible_from`: no read sees their records.
async fn drop_hidden(tx: &mut Tx, visible_from: i64) -> Result<(), StoreError> {
    let gone: Vec<i64> = sqlx::query_scalar("DELETE FROM call_parts WHERE hi <= $1 RETURNING lo")
        .bind(visible_from)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
    for lo in gone {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE calls_p{lo}")))
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

impl HistoryStore for PgStore {
    fn insert_calls<'a>(
        &'a self,
        records: &'a [CallRecord],
        max_records: usize,
        max_age_secs: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if records.is_empty() {
                return Ok(());
            }
            let mut ids = Vec::with_capacity(records.len());
            let mut tools = Vec::with_capacity(records.len());
            let mut hooks = Vec::with_capacity(records.len());
            let mut outcomes = Vec::with_capacity(records.len());
            let mut sources = Vec::with_capacity(records.len());
            let mut started = Vec::with_capacity(records.len());
            let mut packed = Vec::with_capacity(records.len());
            let mut zstd =
                zstd::bulk::Compressor::new(3).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            for r in records {
                ids.push(r.id.as_str());
                tools.push(r.tool.clone());
                hooks.push(r.webhook_id.clone());
                outcomes.push(r.outcome.as_str());
                sources.push(r.source.as_str());
                started.push(started_ms(r));
                packed.push(pack(r, &mut zstd)?);
            }
            let k = i64::try_from(records.len()).unwrap_or(i64::MAX);
            let mut tx = self.begin().await?;
            // The counter row's lock orders this batch against every other node's.
            let (last, mut visible_from, mut count): (i64, i64, i64) = sqlx::query_as(
                "UPDATE call_count SET seq = seq + $1 RETURNING seq, visible_from, n",
            )
            .bind(k)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            let first = last - k + 1;
            cover(&mut tx, first, last, partition_size(max_records)).await?;
            // No duplicate check: ids are UUIDv7 made by the node, and the writer never sends a
            // batch twice (a failed batch is logged and dropped). Probing every partition's id
            // index for each record cost more than the insert once there were a few.
            let added = sqlx::query(
                "INSERT INTO calls (seq, id, tool, webhook_id, outcome, source, started_ms, record)
                 SELECT $8 + u.ord - 1, u.id, u.tool, u.webhook_id, u.outcome, u.source,
                        u.started_ms, u.record
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::bigint[], $7::bytea[])
                      WITH ORDINALITY
                      AS u(id, tool, webhook_id, outcome, source, started_ms, record, ord)",
            )
            .bind(&ids)
            .bind(&tools)
            .bind(&hooks)
            .bind(&outcomes)
            .bind(&sources)
            .bind(&started)
            .bind(&packed)
            .bind(first)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected() as i64;
            count += added;
            let max = i64::try_from(max_records).unwrap_or(i64::MAX);
            if max_records > 0 && count > max {
                // The seq of the newest record to hide: walks only the excess, all visible.
                let newest_hidden: i64 = sqlx::query_scalar(
                    "SELECT seq FROM calls WHERE seq >= $1 ORDER BY seq OFFSET $2 LIMIT 1",
                )
                .bind(visible_from)
                .bind(count - max - 1)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
                visible_from = newest_hidden + 1;
                count = max;
            }
            if max_age_secs > 0 {
                let cutoff = now_ms().saturating_sub((max_age_secs as i64).saturating_mul(1000));
                // Hidden records past the age go too (else every batch would walk them again);
                // only the visible ones were counted.
                loop {
                    let (n, visible): (i64, i64) = sqlx::query_as(
                        "WITH gone AS (
                             DELETE FROM calls WHERE seq IN
                             (SELECT seq FROM calls WHERE started_ms < $2 LIMIT $3)
                             RETURNING seq)
                         SELECT count(*), count(*) FILTER (WHERE seq >= $1) FROM gone",
                    )
                    .bind(visible_from)
                    .bind(cutoff)
                    .bind(AGE_BATCH)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
                    count -= visible;
                    if n < AGE_BATCH {
                        break;
                    }
                }
            }
            drop_hidden(&mut tx, visible_from).await?;
            sqlx::query("UPDATE call_count SET n = $1, visible_from = $2")
                .bind(count)
                .bind(visible_from)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tracing::trace!(count, visible_from, "call history written");
            Self::commit(tx).await
        })
    }

    fn get_call<'a>(&'a self, id: &'a str) -> StoreFuture<'a, CallRecord> {
        Box::pin(async move {
            let packed: Vec<u8> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT record FROM calls WHERE id = $1 AND {VISIBLE}"
            )))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or(StoreError::NotFound("call"))?;
            unpack(&packed)
        })
    }

    fn list_calls<'a>(&'a self, filter: &'a CallFilter) -> StoreFuture<'a, Vec<CallRecord>> {
        Box::pin(async move {
            // Only the filters given go into the statement, so the planner picks their index.
            let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
                "SELECT record FROM calls WHERE {VISIBLE}"
            ));
            if let Some(w) = &filter.webhook_id {
                q.push(" AND webhook_id = ").push_bind(w.clone());
            }
            if let Some(t) = &filter.tool {
                q.push(" AND tool = ").push_bind(t.clone());
            }
            match filter.outcome {
                Some(OutcomeFilter::Failed) => {
                    q.push(" AND outcome <> 'success'");
                }
                Some(OutcomeFilter::Is(o)) => {
                    q.push(" AND outcome = ").push_bind(o.as_str());
                }
                None => {}
            }
            if let Some(s) = filter.source {
                q.push(" AND source = ").push_bind(s.as_str());
            }
            super::newest_first(&mut q, filter.before.as_deref(), filter.limit);
            let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
            rows.iter().map(|r| unpack(r.get::<&[u8], _>(0))).collect()
        })
    }
}
