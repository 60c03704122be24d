//! The PostgreSQL store: the conformance suite every backend passes, then what only a shared
//! store must do: nodes starting together, a foreign master key, delete guards raced from two
//! nodes, and deliveries claimed once.

mod common;
mod conformance;

use std::sync::Arc;
use std::time::Duration;

use common::pg::TestDb;
use serde_json::json;
use toolgate::model::{Event, SubscriptionSpec, ToolSpec, WebhookSpec};
use toolgate::store::{DefinitionStore, EventStore, PgStore, SecretStore, StoreError};

const KEY: [u8; 32] = [7u8; 32];
const TIMEOUT: Duration = Duration::from_secs(10);

async fn open(db: &TestDb) -> PgStore {
    PgStore::connect(&db.url, &KEY, TIMEOUT)
        .await
        .expect("open the PostgreSQL store")
}

fn hook(name: &str, secret: Option<&str>) -> WebhookSpec {
    let mut v = json!({"name": name, "method": "GET", "url": "https://api.example/x"});
    if let Some(s) = secret {
        v["headers"] = json!([{"name": "X-Key", "value_type": "secret", "secret": s}]);
    }
    serde_json::from_value(v).unwrap()
}

fn tool(name: &str, webhook_id: &str) -> ToolSpec {
    conformance::tool(name, Some(webhook_id))
}

#[tokio::test]
async fn postgres_store_conforms() {
    let db = TestDb::create().await;
    conformance::all(Arc::new(open(&db).await)).await;
}

#[tokio::test]
async fn nodes_starting_together_migrate_once() {
    let db = TestDb::create().await;
    let opened = futures::future::join_all((0..4).map(|_| open(&db))).await;
    assert_eq!(opened.len(), 4);
    // Each sees the others' writes.
    opened[0]
        .create_secret(&conformance::secret("shared"), "v")
        .await
        .unwrap();
    for s in &opened {
        assert!(s.secret_exists("shared").await.unwrap());
    }
}

#[tokio::test]
async fn a_node_with_another_master_key_refuses_to_start() {
    let db = TestDb::create().await;
    let first = open(&db).await;
    first
        .create_secret(&conformance::secret("k"), "value")
        .await
        .unwrap();
    let other = PgStore::connect(&db.url, &[9u8; 32], TIMEOUT).await;
    match other {
        Err(e @ StoreError::WrongKey) => {
            assert!(e.to_string().contains("TOOLGATE_MASTER_KEY"), "{e}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a node with another key started"),
    }
}

#[tokio::test]
async fn names_stay_unique_across_nodes() {
    let db = TestDb::create().await;
    let (a, b) = (open(&db).await, open(&db).await);
    let w = a.create_webhook(hook("w", None), true).await.unwrap();
    let (x, y) = tokio::join!(
        a.create_tool(tool("same", &w.id)),
        b.create_tool(tool("same", &w.id))
    );
    let taken = [&x, &y]
        .iter()
        .filter(|r| matches!(r, Err(StoreError::NameTaken(_))))
        .count();
    assert_eq!((x.is_ok() as usize + y.is_ok() as usize, taken), (1, 1));
    assert_eq!(a.list_tools().await.unwrap().len(), 1);
}

/// Link on one node while the other deletes, many times: each round either the delete is
/// refused (the link won) or the link is refused (the delete won); never a tool pointing at a
/// deleted webhook, never a secret deleted under a webhook.
#[tokio::test]
async fn delete_guards_hold_against_a_link_from_another_node() {
    let db = TestDb::create().await;
    let (a, b) = (open(&db).await, open(&db).await);
    let (mut deleted, mut refused) = (0, 0);
    for i in 0..30 {
        let w = a
            .create_webhook(hook(&format!("w{i}"), None), true)
            .await
            .unwrap();
        let (del, link) = tokio::join!(
            a.delete_webhook(&w.id),
            b.create_tool(tool(&format!("t{i}"), &w.id))
        );
        match (&del, &link) {
            (Ok(()), Err(StoreError::Invalid(_))) => deleted += 1,
            (Err(StoreError::InUse { .. }), Ok(_)) => refused += 1,
            other => panic!("round {i}: both or neither won: {other:?}"),
        }
    }
    assert_eq!(deleted + refused, 30);
    for t in a.list_tools().await.unwrap() {
        let w = t.spec.webhook_id.clone().unwrap();
        assert!(
            a.get_webhook(&w).await.is_ok(),
            "tool {} links a deleted webhook",
            t.spec.name
        );
    }
    for i in 0..30 {
        let s = a
            .create_secret(&conformance::secret(&format!("s{i}")), "v")
            .await
            .unwrap();
        let (del, link) = tokio::join!(
            a.delete_secret(&s.id),
            b.create_webhook(hook(&format!("h{i}"), Some(&format!("s{i}"))), true)
        );
        match (&del, &link) {
            (Ok(()), Err(StoreError::Invalid(_))) | (Err(StoreError::InUse { .. }), Ok(_)) => {}
            other => panic!("secret round {i}: {other:?}"),
        }
    }
}

/// Two nodes draining one outbox and claiming due deliveries: every delivery is handed to
/// exactly one of them.
#[tokio::test]
async fn outbox_and_deliveries_are_claimed_once() {
    let db = TestDb::create().await;
    let (a, b) = (open(&db).await, open(&db).await);
    let spec: SubscriptionSpec = serde_json::from_value(json!({
        "name": "rec", "url": "https://receiver.example/hook", "event_types": ["*"]
    }))
    .unwrap();
    a.create_subscription(spec, "whsec_test").await.unwrap();
    for i in 0..200 {
        a.append_event(&Event::new("ping", json!({"n": i}), json!({})))
            .await
            .unwrap();
    }
    let (x, y) = tokio::join!(a.dispatch_outbox(1, 64), b.dispatch_outbox(1, 64));
    let mut fanned = x.unwrap() + y.unwrap();
    while fanned < 200 {
        let n = a.dispatch_outbox(1, 64).await.unwrap();
        assert!(n > 0, "outbox drained early at {fanned}");
        fanned += n;
    }
    assert_eq!(fanned, 200);
    let mut seen = std::collections::HashSet::new();
    loop {
        let (x, y) = tokio::join!(a.due_deliveries(10, 16), b.due_deliveries(10, 16));
        let (x, y) = (x.unwrap(), y.unwrap());
        if x.is_empty() && y.is_empty() {
            break;
        }
        for d in x.into_iter().chain(y) {
            assert!(seen.insert(d.id.clone()), "delivery {} claimed twice", d.id);
        }
    }
    assert_eq!(seen.len(), 200);
    // Claimed and never saved (the node died): free again once the lease has run out.
    let lease_ms = 30_000;
    assert!(
        a.due_deliveries(10 + lease_ms - 1, 500)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        a.due_deliveries(10 + lease_ms, 500).await.unwrap().len(),
        200
    );
}

/// A successful invoke of `tool` with a fresh id.
fn call(tool: &str) -> toolgate::model::CallRecord {
    use toolgate::model::{Outcome, Source};
    conformance::record(
        &toolgate::model::ids::new_id("call"),
        tool,
        Outcome::Success,
        Source::Invoke,
    )
}

/// Visible ids, newest first.
async fn visible(s: &PgStore) -> Vec<String> {
    conformance::newest_ids(s, 100_000).await
}

/// (partitions, rows stored including hidden ones, the counter's n).
async fn layout(db: &TestDb) -> (i64, i64, i64) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let parts: i64 = sqlx::query_scalar("SELECT count(*) FROM call_parts")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM calls")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT n FROM call_count")
        .fetch_one(&mut c)
        .await
        .unwrap();
    (parts, rows, n)
}

/// Store `r` as schemas 4 and 5 did, zstd-compressed JSON in its own row; with `seq` (schema 5)
/// or without (schema 4).
async fn insert_as_json(
    c: &mut sqlx::PgConnection,
    r: &toolgate::model::CallRecord,
    seq: Option<i64>,
) {
    let (columns, values) = match seq {
        Some(_) => ("seq, ", "$4, "),
        None => ("", ""),
    };
    let json = serde_json::to_vec(r).unwrap();
    let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO calls ({columns}id, tool, webhook_id, outcome, source, started_ms, record)
         VALUES ({values}$1, $2, 'wh_x', 'success', 'invoke', 0, $3)"
    )))
    .bind(r.id.to_string())
    .bind(r.tool.clone())
    .bind(zstd::bulk::compress(&json, 3).unwrap());
    if let Some(seq) = seq {
        q = q.bind(seq);
    }
    q.execute(c).await.unwrap();
}

#[tokio::test]
async fn history_retention_drops_whole_partitions_and_stays_exact() {
    use toolgate::store::HistoryStore;
    let db = TestDb::create().await;
    let s = open(&db).await;
    // A cap of 3,000 makes partitions of 375 records (an eighth).
    let cap = 3_000;
    let mut written: Vec<String> = Vec::new();
    for round in 0..12 {
        let batch: Vec<_> = (0..1_000).map(|_| call(&format!("t{round}"))).collect();
        written.extend(batch.iter().map(|r| r.id.to_string()));
        s.insert_calls(&batch, cap, 0).await.unwrap();
        let seen = visible(&s).await;
        let expect: Vec<String> = written.iter().rev().take(cap).cloned().collect();
        assert_eq!(
            seen, expect,
            "round {round}: exactly the newest {cap}, newest first"
        );
        let (parts, rows, n) = layout(&db).await;
        assert_eq!(n, seen.len() as i64, "round {round}: the count is exact");
        // Storage: the cap plus at most one partition of hidden records.
        assert!(
            rows < (cap + 375) as i64,
            "round {round}: {rows} rows stored"
        );
        assert!(parts <= 10, "round {round}: {parts} partitions");
    }
    // A hidden record is gone for reads by id too.
    use toolgate::store::StoreError;
    assert!(matches!(
        s.get_call(&written[0]).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.get_call(written.last().unwrap()).await.is_ok());
    // A node that stops mid-batch (its transaction dropped after it took the counter) changes
    // nothing: the partition table is locked so the batch waits inside its transaction.
    {
        use sqlx::Connection;
        let mut blocker = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let mut tx = blocker.begin().await.unwrap();
        sqlx::query("LOCK TABLE call_parts IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .unwrap();
        let lost: Vec<_> = (0..500).map(|_| call("lost")).collect();
        let cut =
            tokio::time::timeout(Duration::from_millis(500), s.insert_calls(&lost, cap, 0)).await;
        assert!(cut.is_err(), "the batch waited on the lock");
        tx.rollback().await.unwrap();
    }
    let before = visible(&s).await;
    assert_eq!(before.len(), cap);
    assert_eq!(before[0], *written.last().unwrap());
    // Another node on the same database goes on from the exact count.
    let other = open(&db).await;
    let one = vec![call("after")];
    other.insert_calls(&one, cap, 0).await.unwrap();
    let after = visible(&other).await;
    assert_eq!(after.len(), cap);
    assert_eq!(after[0], one[0].id);
    assert_eq!(after[1..], before[..cap - 1]);
    assert_eq!(layout(&db).await.2, cap as i64);
}

#[tokio::test]
async fn a_batch_is_stored_in_chunks_and_every_record_reads_back_whole() {
    use sqlx::Connection;
    use toolgate::model::{Outcome, Source};
    use toolgate::store::{CallFilter, HistoryStore};
    let db = TestDb::create().await;
    let s = open(&db).await;
    // 1,200 records in one batch: chunks of 512, 512 and 176; every tenth failed, every third
    // from MCP, with arguments of their own so a mix-up between records shows.
    let batch: Vec<_> = (0..1_200)
        .map(|i| {
            let outcome = if i % 10 == 0 {
                Outcome::Timeout
            } else {
                Outcome::Success
            };
            let source = if i % 3 == 0 {
                Source::Mcp
            } else {
                Source::Invoke
            };
            let mut r = conformance::record(
                &toolgate::model::ids::new_id("call"),
                &format!("t{}", i % 7),
                outcome,
                source,
            );
            r.arguments = json!({"i": i});
            r
        })
        .collect();
    s.insert_calls(&batch, 0, 0).await.unwrap();
    let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM call_chunks")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(chunks, 3, "one chunk per 512 records of a batch");
    let _ = c.close().await;
    for r in batch.iter().step_by(97) {
        let got = s.get_call(&r.id).await.unwrap();
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            serde_json::to_value(r).unwrap()
        );
    }
    // Filtered pages, walked with `before`, give exactly the matching records, newest first,
    // each with its own arguments.
    let mut expect: Vec<_> = batch
        .iter()
        .filter(|r| r.outcome == Outcome::Timeout && r.source == Source::Mcp)
        .collect();
    expect.sort_by(|a, b| b.id.cmp(&a.id));
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .list_calls(&CallFilter {
                outcome: Some(toolgate::model::OutcomeFilter::Failed),
                source: Some(Source::Mcp),
                before: before.clone(),
                limit: 7,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id.to_string());
        seen.extend(page);
    }
    assert_eq!(seen.len(), expect.len());
    for (got, want) in seen.iter().zip(&expect) {
        assert_eq!(got.id, want.id);
        assert_eq!(got.arguments, want.arguments);
    }
    // What is not a call id names no record and has nothing before it.
    assert!(matches!(
        s.get_call("call_nope").await,
        Err(StoreError::NotFound(_))
    ));
    let none = s
        .list_calls(&CallFilter {
            before: Some("'; DROP TABLE calls; --".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn history_written_before_partitions_is_kept_in_order_by_the_upgrade() {
    use sqlx::Connection;
    use toolgate::store::HistoryStore;
    let db = TestDb::create().await;
    PgStore::migrate_to(&db.url, 4).await.expect("schema 4");
    // Five records as schema 4 stored them: zstd JSON, the count beside them.
    let old: Vec<_> = (0..5).map(|i| call(&format!("old{i}"))).collect();
    let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for r in &old {
        insert_as_json(&mut c, r, None).await;
    }
    sqlx::query("UPDATE call_count SET n = 5")
        .execute(&mut c)
        .await
        .unwrap();
    let _ = c.close().await;
    let s = open(&db).await;
    let newest_first: Vec<String> = old.iter().rev().map(|r| r.id.to_string()).collect();
    assert_eq!(visible(&s).await, newest_first);
    assert_eq!(layout(&db).await, (1, 5, 5));
    // Retention goes on from the converted rows: a cap of 4 hides the two oldest.
    let new = vec![call("new")];
    s.insert_calls(&new, 4, 0).await.unwrap();
    let seen = visible(&s).await;
    assert_eq!(seen[0], new[0].id);
    assert_eq!(seen[1..], newest_first[..3]);
    assert_eq!(layout(&db).await.2, 4);
}

#[tokio::test]
async fn the_upgrade_to_chunks_keeps_the_visible_records_of_every_partition() {
    use sqlx::Connection;
    use toolgate::store::HistoryStore;
    let db = TestDb::create().await;
    PgStore::migrate_to(&db.url, 5).await.expect("schema 5");
    // Six records as schema 5 stored them, in two partitions; the oldest two past retention.
    let old: Vec<_> = (0..6).map(|i| call(&format!("old{i}"))).collect();
    let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for (lo, hi) in [(1, 4), (4, 7)] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE calls_p{lo} PARTITION OF calls FOR VALUES FROM ({lo}) TO ({hi})"
        )))
        .execute(&mut c)
        .await
        .unwrap();
        sqlx::query("INSERT INTO call_parts VALUES ($1, $2)")
            .bind(lo)
            .bind(hi)
            .execute(&mut c)
            .await
            .unwrap();
    }
    for (i, r) in old.iter().enumerate() {
        insert_as_json(&mut c, r, Some(i as i64 + 1)).await;
    }
    sqlx::query("UPDATE call_count SET n = 4, seq = 6, visible_from = 3")
        .execute(&mut c)
        .await
        .unwrap();
    let _ = c.close().await;
    let s = open(&db).await;
    let newest_first: Vec<String> = old[2..].iter().rev().map(|r| r.id.to_string()).collect();
    assert_eq!(visible(&s).await, newest_first);
    assert_eq!(
        layout(&db).await,
        (2, 4, 4),
        "the hidden rows were not copied"
    );
    let got = s.get_call(&old[3].id).await.unwrap();
    assert_eq!(
        serde_json::to_value(&got).unwrap(),
        serde_json::to_value(&old[3]).unwrap()
    );
    // New records go into chunks beside the old rows; a cap of 4 then hides the oldest.
    let new = vec![call("new"), call("new")];
    s.insert_calls(&new, 4, 0).await.unwrap();
    let seen = visible(&s).await;
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[2..], newest_first[..2]);
    assert!(s.get_call(&old[2].id).await.is_err());
}

#[tokio::test]
async fn the_age_limit_removes_hidden_records_too_and_counts_only_visible_ones() {
    use toolgate::store::HistoryStore;
    let db = TestDb::create().await;
    let s = open(&db).await;
    // Records two days old (the age limit reads the time in the UUIDv7 id).
    let two_days_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 2 * 86_400;
    let old = |i: u32| {
        let mut r = call("old");
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, two_days_ago, i);
        r.id = toolgate::model::CallId::from_bits(uuid::Uuid::new_v7(ts).as_u128());
        r
    };
    let cap = 3_000;
    for b in 0..4u32 {
        let batch: Vec<_> = (0..1_000).map(|i| old(b * 1_000 + i)).collect();
        s.insert_calls(&batch, cap, 0).await.unwrap();
    }
    let (_, rows, n) = layout(&db).await;
    assert_eq!(n, cap as i64);
    assert!(
        rows > n,
        "some records are hidden but still stored ({rows} rows)"
    );
    // A day's age limit: every old record goes, hidden or not; the count is what is left.
    let fresh: Vec<_> = (0..10).map(|_| call("fresh")).collect();
    s.insert_calls(&fresh, cap, 86_400).await.unwrap();
    let seen = visible(&s).await;
    let expect: Vec<String> = fresh.iter().rev().map(|r| r.id.to_string()).collect();
    assert_eq!(seen, expect);
    let (_, rows, n) = layout(&db).await;
    assert_eq!((rows, n), (10, 10));
    // The deleted records left a gap in the seq range: the cap now finds its cut by walking
    // the records, and still keeps exactly the newest.
    let more: Vec<_> = (0..cap).map(|_| call("more")).collect();
    s.insert_calls(&more, cap, 86_400).await.unwrap();
    let seen = visible(&s).await;
    let expect: Vec<String> = more.iter().rev().map(|r| r.id.to_string()).collect();
    assert_eq!(seen, expect);
    assert_eq!(layout(&db).await.2, cap as i64);
    // A node applies the age limit at most once a second (each check is planned over every
    // partition): old records written just after a check stay, counted, until the next one.
    // The steps above take about a second in a debug build: wait until a check is surely due,
    // so that the next batch runs one and the clock starts there.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let checked = std::time::Instant::now();
    s.insert_calls(&[call("due")], cap, 86_400).await.unwrap();
    let late: Vec<_> = (0..5).map(|i| old(10_000 + i)).collect();
    let late_ids: Vec<String> = late.iter().map(|r| r.id.to_string()).collect();
    s.insert_calls(&late, cap, 0).await.unwrap();
    s.insert_calls(&[call("soon")], cap, 86_400).await.unwrap();
    // Under a second since the check began (on a machine this slow, the check may be due).
    let quick = checked.elapsed() < Duration::from_millis(900);
    if quick {
        let seen = visible(&s).await;
        assert!(
            late_ids.iter().all(|id| seen.contains(id)),
            "checked again at once"
        );
        assert_eq!(layout(&db).await.2, cap as i64);
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    s.insert_calls(&[call("later")], cap, 86_400).await.unwrap();
    let seen = visible(&s).await;
    assert!(late_ids.iter().all(|id| !seen.contains(id)), "{seen:?}");
    assert_eq!(layout(&db).await.2, seen.len() as i64);
    if quick {
        // The cap hid one record for each of the three, then the check took the five.
        assert_eq!(seen.len(), cap - late.len());
    }
}
