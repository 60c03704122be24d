//! Call history: one row per call, the record as zstd-compressed JSON, every `GET /v1/calls`
//! filter served by an index. The exact count lives in a one-row table changed in the same
//! transaction as the records; retention deletes the oldest excess in that transaction, so the
//! count never drifts and a batch never removes more than it added once the cap is reached.

use sqlx::Row;

use super::{PgStore, db};
use crate::model::{CallRecord, OutcomeFilter};
use crate::store::{CallFilter, HistoryStore, StoreError, StoreFuture};

/// Rows removed per statement by the age limit, so one prune never holds locks for long.
const AGE_BATCH: i64 = 5_000;

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

fn pack(r: &CallRecord) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    zstd::bulk::compress(&json, 3).map_err(|e| StoreError::Corrupt(e.to_string()))
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
            for r in records {
                ids.push(r.id.clone());
                tools.push(r.tool.clone());
                hooks.push(r.webhook_id.clone());
                outcomes.push(r.outcome.as_str());
                sources.push(r.source.as_str());
                started.push(started_ms(r));
                packed.push(pack(r)?);
            }
            let mut tx = self.begin().await?;
            let added = sqlx::query(
                "INSERT INTO calls (id, tool, webhook_id, outcome, source, started_ms, record)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::bigint[], $7::bytea[])
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&ids)
            .bind(&tools)
            .bind(&hooks)
            .bind(&outcomes)
            .bind(&sources)
            .bind(&started)
            .bind(&packed)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected() as i64;
            let mut count: i64 = sqlx::query_scalar("UPDATE call_count SET n = n + $1 RETURNING n")
                .bind(added)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
            let mut removed: i64 = 0;
            let max = i64::try_from(max_records).unwrap_or(i64::MAX);
            if max_records > 0 && count > max {
                removed += sqlx::query(
                    "DELETE FROM calls WHERE id IN (SELECT id FROM calls ORDER BY id LIMIT $1)",
                )
                .bind(count - max)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected() as i64;
            }
            if max_age_secs > 0 {
                let cutoff = now_ms().saturating_sub((max_age_secs as i64).saturating_mul(1000));
                loop {
                    let n = sqlx::query(
                        "DELETE FROM calls WHERE id IN
                         (SELECT id FROM calls WHERE started_ms < $1 LIMIT $2)",
                    )
                    .bind(cutoff)
                    .bind(AGE_BATCH)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?
                    .rows_affected() as i64;
                    removed += n;
                    if n < AGE_BATCH {
                        break;
                    }
                }
            }
            if removed > 0 {
                count = sqlx::query_scalar("UPDATE call_count SET n = n - $1 RETURNING n")
                    .bind(removed)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            tracing::trace!(count, "call history written");
            Self::commit(tx).await
        })
    }

    fn get_call<'a>(&'a self, id: &'a str) -> StoreFuture<'a, CallRecord> {
        Box::pin(async move {
            let packed: Vec<u8> = sqlx::query_scalar("SELECT record FROM calls WHERE id = $1")
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
            let mut q =
                sqlx::QueryBuilder::<sqlx::Postgres>::new("SELECT record FROM calls WHERE true");
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
