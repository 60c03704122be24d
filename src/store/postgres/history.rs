//! Call history. A write batch's records are stored together as zstd-compressed chunks of the
//! embedded store's format (`call_chunks`; records of one batch are alike, so together they
//! compress to a fraction of their size one by one), and every record keeps a slim row in `calls`
//! for the `GET /v1/calls` filters, each served by an index. Both tables are partitioned by write
//! order (`seq`, handed out by the counter row, which also orders the batches of every node). The
//! exact count of visible records lives in that row, changed in the same transaction as the
//! records. Retention raises `visible_from` (no read sees a record below it) and drops a
//! partition once all of it is below, instead of deleting rows one by one: dead rows piled up
//! faster than vacuum removed them and every batch slowed down (BENCHMARKS.md, issue 18).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use sqlx::Row;

use super::{PgStore, Tx, db};
use crate::model::{CallRecord, OutcomeFilter};
use crate::store::history_codec::{self as codec, CHUNK_MAX};
use crate::store::{CallFilter, HistoryStore, StoreError, StoreFuture};

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
/// The smallest UUIDv7 made at `ms` (milliseconds since the epoch), as PostgreSQL reads a
/// uuid: every call id made before `ms` sorts below it, since a UUIDv7 starts with its time.
fn first_id_at(ms: i64) -> String {
    format!("{:012x}{}", ms.clamp(0, (1 << 48) - 1), "0".repeat(20))
}

/// A record written before chunks: zstd-compressed JSON in its own row.
fn unpack(b: &[u8]) -> Result<CallRecord, StoreError> {
    let json = zstd::stream::decode_all(b).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The 32 hex digits of a call id, as PostgreSQL reads a uuid; `None` for what is no call id.
fn id_hex(id: &str) -> Option<String> {
    codec::key(id)
        .ok()
        .map(|k| format!("{:032x}", u128::from_be_bytes(k)))
}

/// Where record `seq` sits in the chunk of `len` records whose newest is `last` (a chunk holds
/// seq `last - len + 1` to `last`, oldest first).
fn position(seq: i64, last: i64, len: usize) -> Option<usize> {
    let from_end = usize::try_from(last.checked_sub(seq)?).ok()?;
    len.checked_sub(from_end.checked_add(1)?)
}

/// The records of `rows` (`seq`, `chunk`, `record`), in their order: the ones in chunks are
/// read from their chunks, each chunk fetched and decoded once.
async fn records(
    store: &PgStore,
    rows: &[sqlx::postgres::PgRow],
) -> Result<Vec<CallRecord>, StoreError> {
    let keys: Vec<(i64, Option<i64>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut wanted: Vec<i64> = keys.iter().filter_map(|(_, chunk)| *chunk).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut chunks: HashMap<i64, Vec<Option<CallRecord>>> = HashMap::new();
    if !wanted.is_empty() {
        let found = sqlx::query("SELECT last, body FROM call_chunks WHERE last = ANY($1)")
            .bind(&wanted)
            .fetch_all(&store.pool)
            .await
            .map_err(db)?;
        for c in found {
            let last: i64 = c.get(0);
            let body: &[u8] = c.get(1);
            // Only the records the rows ask for are built; the rest are skipped.
            let len = codec::chunk_header(body)?.count;
            let mut mask = vec![false; len];
            for (seq, _) in keys.iter().filter(|(_, chunk)| *chunk == Some(last)) {
                if let Some(m) = position(*seq, last, len).and_then(|i| mask.get_mut(i)) {
                    *m = true;
                }
            }
            chunks.insert(last, codec::decode_chunk_some(body, &mask)?);
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for (r, (seq, chunk)) in rows.iter().zip(&keys) {
        let Some(last) = *chunk else {
            out.push(unpack(r.get::<Option<&[u8]>, _>(2).unwrap_or_default())?);
            continue;
        };
        // A chunk goes only with its partition, once every record in it is hidden: gone
        // between the two reads, the record was past retention.
        let Some(records) = chunks.get_mut(&last) else {
            continue;
        };
        let record = position(*seq, last, records.len())
            .and_then(|i| records.get_mut(i))
            .and_then(Option::take)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("call history chunk {last}: no record {seq}"))
            })?;
        out.push(record);
    }
    Ok(out)
}

/// How often a node applies the age limit: a record outlives it by at most this much. Every
/// batch applied it before, and the deletion costs more with every partition (it is planned
/// over each one and its indexes): PostgreSQL's CPU per call doubled as the history filled
/// (BENCHMARKS.md, issue 18). The cap is still applied by every batch.
const AGE_CHECK_MS: i64 = 1_000;

/// Allow or forbid sequential scans for the rest of the transaction (`SET LOCAL`).
async fn set_seqscan(tx: &mut Tx, on: bool) -> Result<(), StoreError> {
    let sql = if on {
        "SET LOCAL enable_seqscan = on"
    } else {
        "SET LOCAL enable_seqscan = off"
    };
    sqlx::query(sql)
        .execute(&mut **tx)
        .await
        .map(drop)
        .map_err(db)
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
        for ddl in [
            format!("CREATE TABLE calls_p{lo} PARTITION OF calls FOR VALUES FROM ({lo}) TO ({hi})"),
            format!(
                "CREATE TABLE call_chunks_p{lo} PARTITION OF call_chunks \
                 FOR VALUES FROM ({lo}) TO ({hi})"
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(ddl))
                .execute(&mut **tx)
                .await
                .map_err(db)?;
        }
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

/// Drop the partitions that lie wholly below `visible_from`: no read sees their records, nor
/// any record of their chunks (a chunk is in the partition of its newest record).
async fn drop_hidden(tx: &mut Tx, visible_from: i64) -> Result<(), StoreError> {
    let gone: Vec<i64> = sqlx::query_scalar("DELETE FROM call_parts WHERE hi <= $1 RETURNING lo")
        .bind(visible_from)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
    for lo in gone {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP TABLE calls_p{lo}, call_chunks_p{lo}"
        )))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    Ok(())
}

impl HistoryStore for PgStore {
    fn insert_packed<'a>(
        &'a self,
        records: &'a [codec::PackedCall<'a>],
        max_records: usize,
        max_age_secs: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if records.is_empty() {
                return Ok(());
            }
            // Oldest id first, like the embedded store, so a chunk's records are in id order.
            let mut sorted: Vec<&codec::PackedCall<'_>> = records.iter().collect();
            sorted.sort_by_key(|r| r.key);
            let mut ids = Vec::with_capacity(sorted.len());
            let mut tools = Vec::with_capacity(sorted.len());
            let mut hooks = Vec::with_capacity(sorted.len());
            let mut outcomes = Vec::with_capacity(sorted.len());
            let mut sources = Vec::with_capacity(sorted.len());
            for r in &sorted {
                ids.push(format!("{:032x}", u128::from_be_bytes(r.key)));
                tools.push(r.tool);
                hooks.push(r.webhook_id);
                outcomes.push(r.outcome.as_str());
                sources.push(r.source.as_str());
            }
            // Compressed before the transaction, so the counter row is held only for the writes.
            // A chunk is known by its newest record's seq; until the batch has its seqs, by
            // that record's offset in the batch.
            let mut bodies = Vec::new();
            let mut chunk_ends = Vec::new();
            let mut chunk_of = Vec::with_capacity(sorted.len());
            for (j, c) in sorted.chunks(CHUNK_MAX).enumerate() {
                let end = i64::try_from(j * CHUNK_MAX + c.len() - 1).unwrap_or(i64::MAX);
                bodies.push(codec::encode_packed_chunk(c)?.1);
                chunk_ends.push(end);
                chunk_of.extend(std::iter::repeat_n(end, c.len()));
            }
            let k = i64::try_from(sorted.len()).unwrap_or(i64::MAX);
            let now = super::now_ms();
            let age_due = max_age_secs > 0
                && now.saturating_sub(self.age_checked_ms.load(Ordering::Relaxed)) >= AGE_CHECK_MS;
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
            sqlx::query(
                "INSERT INTO call_chunks (last, body)
                 SELECT $3 + u.end_offset, u.body
                 FROM unnest($1::bigint[], $2::bytea[]) AS u(end_offset, body)",
            )
            .bind(&chunk_ends)
            .bind(&bodies)
            .bind(first)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            // No duplicate check: ids are UUIDv7 made by the node, and the writer never sends a
            // batch twice (a failed batch is logged and dropped). Probing every partition's id
            // index for each record cost more than the insert once there were a few.
            let added = sqlx::query(
                "INSERT INTO calls (seq, id, tool, webhook_id, outcome, source, chunk)
                 SELECT $6 + u.ord - 1, u.id::uuid, u.tool, u.webhook_id, u.outcome, u.source,
                        $6 + u.chunk
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $7::bigint[])
                      WITH ORDINALITY
                      AS u(id, tool, webhook_id, outcome, source, chunk, ord)",
            )
            .bind(&ids)
            .bind(&tools)
            .bind(&hooks)
            .bind(&outcomes)
            .bind(&sources)
            .bind(first)
            .bind(&chunk_of)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected() as i64;
            // Every seq from `visible_from` on holds a record unless the age limit deleted
            // some: then the count is the seq range's length.
            let dense = count == first - visible_from;
            count += added;
            let max = i64::try_from(max_records).unwrap_or(i64::MAX);
            if max_records > 0 && count > max {
                // The seq of the newest record to hide: with no gaps, counted; else found by
                // walking the excess, all visible.
                let newest_hidden: i64 = if dense && added == k {
                    visible_from + (count - max) - 1
                } else {
                    sqlx::query_scalar(
                        "SELECT seq FROM calls WHERE seq >= $1 ORDER BY seq OFFSET $2 LIMIT 1",
                    )
                    .bind(visible_from)
                    .bind(count - max - 1)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?
                };
                visible_from = newest_hidden + 1;
                count = max;
            }
            if age_due {
                let cutoff = now.saturating_sub((max_age_secs as i64).saturating_mul(1000));
                // The time is the id's first 48 bits (when the record was queued): the id's
                // index finds the old records (a BRIN index on a time column did not: fresh
                // partitions are not summarised, so every batch read every partition whole).
                // Hidden records past the age go too (else every batch would walk them again);
                // only the visible ones were counted.
                // One statement over the id index, with no `seq IN (SELECT … LIMIT n)` join for
                // the planner to turn into a scan of every partition.
                // The partitions being written have no statistics until autovacuum analyses
                // them (once a minute at best), so the planner guessed a third of their rows
                // match and read them whole: up to 45 ms a batch. For this statement only, the
                // id index is the way in.
                set_seqscan(&mut tx, false).await?;
                let visible: i64 = sqlx::query_scalar(
                    "WITH gone AS (DELETE FROM calls WHERE id < $2::uuid RETURNING seq)
                     SELECT count(*) FILTER (WHERE seq >= $1) FROM gone",
                )
                .bind(visible_from)
                .bind(first_id_at(cutoff))
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
                set_seqscan(&mut tx, true).await?;
                count -= visible;
            }
            drop_hidden(&mut tx, visible_from).await?;
            sqlx::query("UPDATE call_count SET n = $1, visible_from = $2")
                .bind(count)
                .bind(visible_from)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tracing::trace!(count, visible_from, "call history written");
            Self::commit(tx).await?;
            if age_due {
                self.age_checked_ms.store(now, Ordering::Relaxed);
            }
            Ok(())
        })
    }

    fn get_call<'a>(&'a self, id: &'a str) -> StoreFuture<'a, CallRecord> {
        Box::pin(async move {
            // What is not a call id names no record.
            let hex = id_hex(id).ok_or(StoreError::NotFound("call"))?;
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT seq, chunk, record FROM calls WHERE id = $1::uuid AND {VISIBLE}"
            )))
            .bind(hex)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or(StoreError::NotFound("call"))?;
            records(self, std::slice::from_ref(&row))
                .await?
                .pop()
                .ok_or(StoreError::NotFound("call"))
        })
    }

    fn list_calls<'a>(&'a self, filter: &'a CallFilter) -> StoreFuture<'a, Vec<CallRecord>> {
        Box::pin(async move {
            // Only the filters given go into the statement, so the planner picks their index.
            let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
                "SELECT seq, chunk, record FROM calls WHERE {VISIBLE}"
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
            if let Some(b) = &filter.before {
                // An id that is not a call id names no record: nothing is before it.
                let Some(hex) = id_hex(b) else {
                    return Ok(Vec::new());
                };
                q.push(" AND id < ").push_bind(hex).push("::uuid");
            }
            q.push(" ORDER BY id DESC LIMIT ")
                .push_bind(i64::try_from(filter.limit).unwrap_or(i64::MAX));
            let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
            records(self, &rows).await
        })
    }
}
