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
    ToolSpec {
        name: name.into(),
        description: None,
        webhook_id: Some(webhook_id.into()),
        managed_by: None,
        managed_file: None,
        authorized: Default::default(),
    }
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
    opened[0].create_secret("shared", "v").await.unwrap();
    for s in &opened {
        assert!(s.secret_exists("shared").await.unwrap());
    }
}

#[tokio::test]
async fn a_node_with_another_master_key_refuses_to_start() {
    let db = TestDb::create().await;
    let first = open(&db).await;
    first.create_secret("k", "value").await.unwrap();
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
        let s = a.create_secret(&format!("s{i}"), "v").await.unwrap();
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
