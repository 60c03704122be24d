//! The delivery worker: moves outbox events into per-subscription deliveries, sends due deliveries
//! signed and authenticated, and reschedules failures on the retry schedule. Only this task sends,
//! and every result is stored (and flushed) before the next, so a 2xx is never followed by a resend.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::sign;
use crate::AppState;
use crate::call::render::PreparedRequest;
use crate::history::Redactor;
use crate::model::event::Attempt;
use crate::model::{
    Delivery, DeliveryStatus, Method, Outcome, SubscriptionAuth, now_ms, now_rfc3339,
};
use crate::store::StoreError;

/// Start the worker; `wake` makes it look at the outbox and due deliveries at once.
pub fn start(state: AppState, wake: Arc<Notify>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = tick(&state).await {
                tracing::error!(error = %e, "event delivery worker");
            }
            let idle = match state.store.next_due().await {
                Ok(Some(at)) => Duration::from_millis(at.saturating_sub(now_ms()).min(250)),
                _ => Duration::from_millis(250),
            };
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(idle) => {}
            }
        }
    })
}

async fn tick(state: &AppState) -> Result<(), StoreError> {
    state.store.dispatch_outbox(now_ms(), 256).await?;
    let due = state.store.due_deliveries(now_ms(), 32).await?;
    // Deliveries are sent concurrently, but each is saved before the worker looks again.
    let results = futures::future::join_all(due.into_iter().map(|d| deliver(state, d))).await;
    for r in results {
        r?;
    }
    Ok(())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

struct Outgoing {
    request: PreparedRequest,
    redactor: Redactor,
}

fn build(
    d: &Delivery,
    auth: &SubscriptionAuth,
    url: &str,
    signing: &str,
    opened: Option<Result<String, String>>,
) -> Result<Outgoing, String> {
    let mut payload = d.payload.clone();
    let mut used = Vec::new();
    let mut headers: Vec<(String, String)> = Vec::new();
    // The one secret a subscription's auth uses, opened by the caller.
    let secret = |name: &str| -> Result<String, String> {
        opened
            .clone()
            .unwrap_or_else(|| Err(format!("secret '{name}' is not set")))
    };
    match auth {
        SubscriptionAuth::None => {}
        SubscriptionAuth::ApiKey { header, secret: s } => {
            let v = secret(s)?;
            headers.push((header.clone(), v.clone()));
            used.push(v);
        }
        SubscriptionAuth::Basic {
            username,
            password_secret,
        } => {
            let p = secret(password_secret)?;
            let encoded = B64.encode(format!("{username}:{p}"));
            headers.push(("Authorization".into(), format!("Basic {encoded}")));
            used.push(p);
            used.push(encoded);
        }
        SubscriptionAuth::ClientSecret { secret: s, field } => {
            let v = secret(s)?;
            payload[field.as_str()] = Value::String(v.clone());
            used.push(v);
        }
    }
    let body = payload.to_string();
    let body_sensitive = matches!(auth, SubscriptionAuth::ClientSecret { .. });
    // Every header so far carries the subscription's credential; the signature headers do not.
    let auth_headers = headers.len();
    let ts = (now_ms() / 1000) as i64;
    headers.push(("webhook-id".into(), d.event_id.clone()));
    headers.push(("webhook-timestamp".into(), ts.to_string()));
    headers.push((
        "webhook-signature".into(),
        sign::sign(signing, &d.event_id, ts, &body)?,
    ));
    let url = reqwest::Url::parse(url).map_err(|e| format!("bad subscription URL: {e}"))?;
    Ok(Outgoing {
        request: PreparedRequest {
            method: Method::Post,
            url: url.into(),
            sensitive_headers: (0..headers.len()).map(|i| i < auth_headers).collect(),
            headers,
            body_sensitive,
            body: Some((body.into_bytes(), "application/json")),
            recorded_body: payload,
        },
        redactor: Redactor::new(&used),
    })
}

fn finish(d: &mut Delivery, status: DeliveryStatus) {
    d.status = status;
    d.next_attempt_at = None;
    d.updated_at = now_rfc3339();
}

async fn deliver(state: &AppState, mut d: Delivery) -> Result<(), StoreError> {
    let started_at = now_rfc3339();
    let attempt_no = d.attempts.len() as u32 + 1;
    let sub = match state.store.get_subscription(&d.subscription_id).await {
        Ok(s) => Some(s),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let Some(sub) = sub.filter(|s| s.spec.enabled) else {
        d.attempts.push(Attempt {
            attempt: attempt_no,
            started_at,
            duration_ms: 0,
            request: Value::Null,
            status: None,
            response_body: None,
            error: Some("the subscription is deleted or disabled".into()),
        });
        finish(&mut d, DeliveryStatus::Failed);
        return state.store.save_delivery(&d).await;
    };
    let start = std::time::Instant::now();
    let signing = state.store.signing_secret(&sub.id).await?;
    let opened = match sub.spec.auth.secret_name() {
        None => None,
        Some(n) => Some(match state.pipeline.secrets.get(n).await {
            Ok(Some(v)) => Ok(v.to_string()),
            Ok(None) => Err(format!("secret '{n}' is not set")),
            Err(e) => Err(e.to_string()),
        }),
    };
    let built = build(&d, &sub.spec.auth, &sub.spec.url, &signing, opened);
    let (sent, request, redactor) = match built {
        Ok(out) => {
            let sent = state
                .sender
                .send(&out.request, state.events.timeout, None)
                .await;
            let r = &out.redactor;
            let request = json!({"url": out.request.url.as_str(), "headers": r.headers(&out.request.headers),
                                 "body": r.kept_value(&out.request.recorded_body)});
            (Some(sent), request, out.redactor)
        }
        Err(e) => {
            d.attempts.push(Attempt {
                attempt: attempt_no,
                started_at: started_at.clone(),
                duration_ms: 0,
                request: Value::Null,
                status: None,
                response_body: None,
                error: Some(e),
            });
            (None, Value::Null, Redactor::default())
        }
    };
    let mut retry_after = None;
    let mut verdict = None;
    if let Some(sent) = sent {
        let body = String::from_utf8_lossy(&sent.body);
        d.attempts.push(Attempt {
            attempt: attempt_no,
            started_at,
            duration_ms: start.elapsed().as_millis() as u64,
            request,
            status: sent.status,
            response_body: sent
                .status
                .map(|_| redactor.cut(&body, 4096, sent.body_truncated).0),
            error: sent.error.as_deref().map(|e| redactor.text(e)),
        });
        if sent.outcome == Outcome::Success {
            verdict = Some(DeliveryStatus::Succeeded);
        } else if header(&sent.headers, "webhook-delivery")
            .is_some_and(|v| v.eq_ignore_ascii_case("abort-message"))
        {
            verdict = Some(DeliveryStatus::Failed);
        } else if sent.status == Some(410) {
            state
                .store
                .disable_subscription(&sub.id, "the receiver answered 410 Gone")
                .await?;
            state.catalog.notify_changed();
            verdict = Some(DeliveryStatus::Failed);
        } else if matches!(sent.status, Some(429 | 503)) {
            retry_after = header(&sent.headers, "retry-after")
                .and_then(|v| crate::retry::parse_retry_after(v, Duration::from_secs(86_400)));
        }
    }
    match verdict {
        Some(v) => finish(&mut d, v),
        None => {
            let used = d.attempts.len().saturating_sub(d.schedule_start as usize);
            match state.events.schedule.get(used) {
                Some(delay) => {
                    let delay = retry_after.unwrap_or_else(|| crate::retry::spread(*delay));
                    d.next_attempt_at = Some(now_ms() + delay.as_millis() as u64);
                    d.updated_at = now_rfc3339();
                }
                None => finish(&mut d, DeliveryStatus::Failed),
            }
        }
    }
    tracing::info!(delivery_id = %d.id, subscription_id = %d.subscription_id, event_type = %d.event_type,
        attempt = attempt_no, status = d.status.as_str(), "event delivery attempt");
    state.store.save_delivery(&d).await
}
