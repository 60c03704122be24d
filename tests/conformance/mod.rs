//! The store conformance suite: the semantics every `Store` backend must have, written once
//! against the trait. Each backend's test file opens a fresh store and runs `all`.
#![allow(dead_code)]

use std::sync::Arc;

use serde_json::{Value, json};
use toolgate::model::{
    AgentSpec, CallRecord, DeliveryStatus, Event, Outcome, OutcomeFilter, SecretName, Source,
    SubscriptionSpec, ToolName, ToolSpec, WebhookId, WebhookSpec,
};
use toolgate::store::{CallFilter, DeliveryFilter, Store, StoreError};

fn hook(name: &str, extra: Value) -> WebhookSpec {
    let mut v = json!({"name": name, "method": "GET", "url": "https://api.example/x"});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    serde_json::from_value(v).unwrap()
}

/// A tool spec named `name`, linked to `webhook_id` if given.
pub fn tool(name: &str, webhook_id: Option<&str>) -> ToolSpec {
    ToolSpec {
        name: ToolName::parse(name).expect("a valid tool name"),
        description: None,
        webhook_id: webhook_id.map(|id| WebhookId::parse(id).expect("a webhook id")),
        managed_by: None,
        managed_file: None,
        authorized: Default::default(),
    }
}

/// A secret name that must be valid.
pub fn secret(name: &str) -> SecretName {
    SecretName::parse(name).expect("a valid secret name")
}

/// A history record of a call of `tool`, with id `id`.
pub fn record(id: &str, tool: &str, outcome: Outcome, source: Source) -> CallRecord {
    serde_json::from_value(json!({
        "id": id, "tool": tool, "webhook_id": "wh_x", "source": source, "started_at": "2026-01-01T00:00:00Z",
        "duration_ms": 1, "outcome": outcome, "error": null, "arguments": {}, "request": null, "response": null
    }))
    .unwrap()
}

/// The newest `limit` call ids the store lists, newest first.
pub async fn newest_ids(s: &dyn Store, limit: usize) -> Vec<String> {
    s.list_calls(&CallFilter {
        limit,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_iter()
    .map(|r| r.id.into())
    .collect()
}

/// Every check, in order, on one fresh store.
pub async fn all(store: Arc<dyn Store>) {
    secrets(store.as_ref()).await;
    definitions(store.as_ref()).await;
    agents(store.as_ref()).await;
    events(store.as_ref()).await;
    history(store.as_ref()).await;
    access(store.as_ref()).await;
    store.flush().await.expect("flush");
}

async fn secrets(s: &dyn Store) {
    subject_values(s).await;
    let m = s
        .create_secret(&secret("api_key"), "v1")
        .await
        .expect("create");
    assert!(matches!(
        s.create_secret(&secret("api_key"), "v2").await,
        Err(StoreError::NameTaken(_))
    ));
    assert_eq!(
        s.secret_value("api_key").await.unwrap().as_deref(),
        Some("v1")
    );
    assert!(s.secret_exists("api_key").await.unwrap());
    assert!(!s.secret_exists("nope").await.unwrap());
    assert_eq!(s.secret_value("nope").await.unwrap(), None);
    s.update_secret(&m.id, "v2").await.expect("update");
    assert_eq!(
        s.secret_value("api_key").await.unwrap().as_deref(),
        Some("v2")
    );
    s.upsert_secret(&secret("api_key"), "v3")
        .await
        .expect("upsert");
    assert_eq!(
        s.secret_value("api_key").await.unwrap().as_deref(),
        Some("v3")
    );
    assert_eq!(s.list_secrets().await.unwrap().len(), 1);
    assert_eq!(s.get_secret(&m.id).await.unwrap().name, "api_key");
    // The delete guard: a webhook references it.
    let w = s
        .create_webhook(
            hook("Uses key", json!({"headers": [{"name": "X-Key", "value_type": "secret", "secret": "api_key"}]})),
            true,
        )
        .await
        .expect("webhook");
    match s.delete_secret(&m.id).await {
        Err(StoreError::InUse { details, .. }) => {
            assert_eq!(details[0]["webhook_id"], json!(w.id))
        }
        other => panic!("expected in_use, got {other:?}"),
    }
    // A webhook that needs a missing secret is refused when secrets are required.
    assert!(matches!(
        s.create_webhook(
            hook(
                "Missing",
                json!({"headers": [{"name": "X-K", "value_type": "secret", "secret": "absent"}]})
            ),
            true
        )
        .await,
        Err(StoreError::Invalid(_))
    ));
    s.delete_webhook(&w.id).await.expect("delete webhook");
    s.delete_secret(&m.id).await.expect("delete secret");
    assert!(matches!(
        s.get_secret(&m.id).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn definitions(s: &dyn Store) {
    let w = s
        .create_webhook(hook("Orders", json!({})), true)
        .await
        .unwrap();
    assert_eq!(s.get_webhook(&w.id).await.unwrap().spec.name, "Orders");
    let w2 = s
        .update_webhook(&w.id, hook("Orders v2", json!({})), true)
        .await
        .unwrap();
    assert_eq!(w2.id, w.id);
    assert_eq!(w2.created_at, w.created_at);
    assert_eq!(s.list_webhooks().await.unwrap().len(), 1);
    let t = s.create_tool(tool("lookup", Some(&w.id))).await.unwrap();
    assert!(matches!(
        s.create_tool(tool("lookup", Some(&w.id))).await,
        Err(StoreError::NameTaken(_))
    ));
    assert!(matches!(
        s.create_tool(tool("dangling", Some(&WebhookId::new())))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(s.get_tool_by_name("lookup").await.unwrap().id, t.id);
    // The delete guard lists the linked tools.
    match s.delete_webhook(&w.id).await {
        Err(StoreError::InUse { details, .. }) => {
            assert_eq!(
                details,
                vec![json!({"tool_id": t.id, "tool_name": "lookup"})]
            )
        }
        other => panic!("expected in_use, got {other:?}"),
    }
    // Rename frees the old name; unlink lifts the guard.
    s.update_tool(&t.id, tool("lookup2", None)).await.unwrap();
    assert!(matches!(
        s.get_tool_by_name("lookup").await,
        Err(StoreError::NotFound(_))
    ));
    s.create_tool(tool("lookup", None)).await.unwrap();
    s.delete_webhook(&w.id)
        .await
        .expect("unlinked webhook deletes");
    assert!(matches!(
        s.get_webhook(&w.id).await,
        Err(StoreError::NotFound(_))
    ));
    for t in s.list_tools().await.unwrap() {
        s.delete_tool(&t.id).await.unwrap();
    }
    assert!(s.list_tools().await.unwrap().is_empty());
    assert!(matches!(
        s.delete_tool("tl_missing").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn agents(s: &dyn Store) {
    let spec: AgentSpec =
        serde_json::from_value(json!({"name": "support", "system_prompt": "Be kind."})).unwrap();
    let a = s.create_agent(spec.clone()).await.unwrap();
    assert!(matches!(
        s.create_agent(spec.clone()).await,
        Err(StoreError::NameTaken(_))
    ));
    assert_eq!(s.get_agent_by_name("support").await.unwrap().id, a.id);
    let mut changed = spec.clone();
    changed.max_steps = 3;
    assert_eq!(
        s.update_agent(&a.id, changed).await.unwrap().spec.max_steps,
        3
    );
    s.delete_agent(&a.id).await.unwrap();
    assert!(s.list_agents().await.unwrap().is_empty());
}

async fn events(s: &dyn Store) {
    let spec: SubscriptionSpec = serde_json::from_value(
        json!({"name": "crm", "url": "https://crm.example/hook", "event_types": ["webhook.created"]}),
    )
    .unwrap();
    let sub = s.create_subscription(spec, "whsec_test").await.unwrap();
    assert_eq!(s.signing_secret(&sub.id).await.unwrap(), "whsec_test");
    s.set_signing_secret(&sub.id, "whsec_new").await.unwrap();
    assert_eq!(s.signing_secret(&sub.id).await.unwrap(), "whsec_new");
    // A change writes its event with it; dispatch fans it out to the subscription that wants it.
    s.create_webhook(hook("Evented", json!({})), true)
        .await
        .unwrap();
    s.append_event(&Event::new("call.failed", json!({}), json!({})))
        .await
        .unwrap();
    let made = s.dispatch_outbox(1_000, 100).await.unwrap();
    assert_eq!(made, 1, "only webhook.created is wanted");
    assert_eq!(
        s.dispatch_outbox(1_000, 100).await.unwrap(),
        0,
        "outbox drained"
    );
    let due = s.due_deliveries(1_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].event_type, "webhook.created");
    assert!(
        s.due_deliveries(999, 10).await.unwrap().is_empty(),
        "not due yet"
    );
    let mut d = due[0].clone();
    d.status = DeliveryStatus::Succeeded;
    d.next_attempt_at = None;
    s.save_delivery(&d).await.unwrap();
    assert!(s.due_deliveries(u64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(
        s.get_delivery(&d.id).await.unwrap().status,
        DeliveryStatus::Succeeded
    );
    let listed = s
        .list_deliveries(&DeliveryFilter {
            subscription_id: Some(sub.id.to_string()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let ping = s
        .enqueue_delivery(&sub.id, &Event::new("ping", json!({}), json!({})), 5)
        .await
        .unwrap();
    assert_eq!(s.next_due().await.unwrap(), Some(5));
    assert_eq!(s.due_deliveries(5, 10).await.unwrap()[0].id, ping.id);
    s.disable_subscription(&sub.id, "gone").await.unwrap();
    assert!(!s.get_subscription(&sub.id).await.unwrap().spec.enabled);
    s.delete_subscription(&sub.id).await.unwrap();
    assert!(s.list_subscriptions().await.unwrap().is_empty());
}

async fn history(s: &dyn Store) {
    let ids: Vec<String> = (0..5)
        .map(|_| toolgate::model::ids::new_id("call"))
        .collect();
    let records = vec![
        record(&ids[0], "a", Outcome::Success, Source::Invoke),
        record(&ids[1], "a", Outcome::HttpError, Source::Test),
        record(&ids[2], "b", Outcome::Success, Source::Mcp),
        record(&ids[3], "b", Outcome::Timeout, Source::Chat),
        record(&ids[4], "a", Outcome::Success, Source::Invoke),
    ];
    s.insert_calls(&records, 0, 0).await.unwrap();
    let page = async |f: CallFilter| {
        s.list_calls(&CallFilter { limit: 50, ..f })
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        page(CallFilter::default()).await,
        ids.iter().rev().cloned().collect::<Vec<_>>(),
        "newest first"
    );
    assert_eq!(
        page(CallFilter {
            tool: Some("a".into()),
            ..Default::default()
        })
        .await
        .len(),
        3
    );
    assert_eq!(
        page(CallFilter {
            outcome: Some(OutcomeFilter::Failed),
            ..Default::default()
        })
        .await,
        vec![ids[3].clone(), ids[1].clone()]
    );
    assert_eq!(
        page(CallFilter {
            source: Some(Source::Mcp),
            ..Default::default()
        })
        .await,
        vec![ids[2].clone()]
    );
    assert_eq!(
        page(CallFilter {
            before: Some(ids[2].clone()),
            ..Default::default()
        })
        .await,
        vec![ids[1].clone(), ids[0].clone()]
    );
    assert_eq!(s.get_call(&ids[3]).await.unwrap().outcome, Outcome::Timeout);
    // Retention keeps the newest records exactly.
    let more: Vec<CallRecord> = (0..3)
        .map(|_| {
            record(
                &toolgate::model::ids::new_id("call"),
                "c",
                Outcome::Success,
                Source::Invoke,
            )
        })
        .collect();
    s.insert_calls(&more, 4, 30 * 86_400).await.unwrap();
    let kept = page(CallFilter::default()).await;
    assert_eq!(kept.len(), 4, "{kept:?}");
    assert_eq!(kept[0], more[2].id);
    assert_eq!(kept[3], ids[4]);
    assert!(matches!(
        s.get_call(&ids[0]).await,
        Err(StoreError::NotFound(_))
    ));
    // One batch larger than the cap keeps its own newest records.
    let burst: Vec<CallRecord> = (0..10)
        .map(|_| {
            record(
                &toolgate::model::ids::new_id("call"),
                "d",
                Outcome::Success,
                Source::Invoke,
            )
        })
        .collect();
    s.insert_calls(&burst, 2, 0).await.unwrap();
    assert_eq!(
        page(CallFilter::default()).await,
        vec![burst[9].id.clone(), burst[8].id.clone()]
    );
}

async fn access(s: &dyn Store) {
    use toolgate::access::Role;
    use toolgate::access::keys::{ApiKey, StoredKey};
    use toolgate::store::AuditFilter;
    let record = |id: &str, name: &str| ApiKey {
        id: id.into(),
        name: name.into(),
        role: Role::Invoker,
        prefix: "tg_abcdefg".into(),
        context: None,
        rate_limit_per_minute: Some(5),
        expires_at: None,
        created_at: "2026-01-01T00:00:00Z".into(),
        updated_at: "2026-01-01T00:00:00Z".into(),
        last_used_at: None,
    };
    let k1 = StoredKey {
        key: record("key_1", "bot"),
        hash: "h1".into(),
    };
    s.create_key(&k1).await.unwrap();
    assert!(matches!(
        s.create_key(&StoredKey {
            key: record("key_2", "bot"),
            hash: "h2".into()
        })
        .await,
        Err(StoreError::NameTaken(_))
    ));
    s.create_key(&StoredKey {
        key: record("key_2", "other"),
        hash: "h2".into(),
    })
    .await
    .unwrap();
    let mut renamed = record("key_1", "other");
    assert!(matches!(
        s.update_key(&renamed).await,
        Err(StoreError::NameTaken(_))
    ));
    renamed.name = "bot-renamed".into();
    s.update_key(&renamed).await.unwrap();
    s.touch_key("key_1", "2026-02-02T00:00:00Z").await.unwrap();
    let keys = s.list_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].key.name, "bot-renamed");
    assert_eq!(keys[0].hash, "h1", "an update keeps the hash");
    assert_eq!(
        keys[0].key.last_used_at.as_deref(),
        Some("2026-02-02T00:00:00Z")
    );
    // The old name is free again.
    s.create_key(&StoredKey {
        key: record("key_3", "bot"),
        hash: "h3".into(),
    })
    .await
    .unwrap();
    s.delete_key("key_2").await.unwrap();
    assert!(matches!(
        s.delete_key("key_2").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.list_keys().await.unwrap().len(), 2);

    for (i, actor) in ["a", "b", "a"].iter().enumerate() {
        s.append_audit(&toolgate::model::AuditEntry {
            id: toolgate::model::ids::new_id("aud"),
            at: "2026-01-01T00:00:00Z".into(),
            actor: actor.to_string(),
            method: "POST".into(),
            route: "/v1/webhooks".into(),
            resource: Some(format!("wh_{i}")),
            status: 201,
        })
        .await
        .unwrap();
    }
    let all = s
        .list_audit(&AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].resource.as_deref(), Some("wh_2"), "newest first");
    let by_a = s
        .list_audit(&AuditFilter {
            actor: Some("a".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_a.len(), 2);
    let older = s
        .list_audit(&AuditFilter {
            before: Some(all[0].id.clone()),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(older[0].id, all[1].id);
    let by_res = s
        .list_audit(&AuditFilter {
            resource: Some("wh_1".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_res.len(), 1);
}

async fn subject_values(s: &dyn Store) {
    let m = s
        .create_secret(&secret("per_user"), "shared")
        .await
        .unwrap();
    s.set_subject_value(&m.id, "u1", "one").await.unwrap();
    s.set_subject_value(&m.id, "u2", "two").await.unwrap();
    s.set_subject_value(&m.id, "u1", "one-again").await.unwrap();
    assert_eq!(
        s.subject_value("per_user", "u1").await.unwrap().as_deref(),
        Some("one-again")
    );
    assert_eq!(s.subject_value("per_user", "u3").await.unwrap(), None);
    assert_eq!(s.subject_value("nope", "u1").await.unwrap(), None);
    let listed: Vec<String> = s
        .list_subject_values(&m.id)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.subject)
        .collect();
    assert_eq!(listed, vec!["u1", "u2"]);
    s.delete_subject_value(&m.id, "u2").await.unwrap();
    assert!(matches!(
        s.delete_subject_value(&m.id, "u2").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.set_subject_value("sec_missing", "u1", "x").await,
        Err(StoreError::NotFound(_))
    ));
    // Deleting the secret takes its subjects' values with it.
    s.delete_secret(&m.id).await.unwrap();
    let again = s
        .create_secret(&secret("per_user"), "shared")
        .await
        .unwrap();
    assert_eq!(s.subject_value("per_user", "u1").await.unwrap(), None);
    s.delete_secret(&again.id).await.unwrap();
}
