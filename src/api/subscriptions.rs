//! `/v1/subscriptions` and `/v1/deliveries`: outbound event webhooks and their delivery log.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router, response::IntoResponse};
use serde_json::json;

use super::types::{DeliveryQuery, Items, Page, PingSent, RotatedSecret, SubscriptionCreated};
use super::{Matcher, Search};
use crate::AppState;
use crate::error::{ApiError, ApiJson};
use crate::events::sign::new_secret;
use crate::model::now_ms;
use crate::model::validate::validate_subscription;
use crate::model::{DeliveryStatus, Event, SubscriptionSpec, now_rfc3339};
use crate::store::DeliveryFilter;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/subscriptions", get(list).post(create))
        .route("/subscriptions/{id}", get(read).put(update).delete(remove))
        .route("/subscriptions/{id}/rotate-secret", post(rotate))
        .route("/subscriptions/{id}/test", post(test))
        .route("/deliveries", get(deliveries))
        .route("/deliveries/{id}", get(delivery))
        .route("/deliveries/{id}/retry", post(retry))
}

async fn check(s: &AppState, spec: &SubscriptionSpec) -> Result<(), ApiError> {
    let stored = s
        .definitions()
        .existing_secrets(spec.auth.secret_name())
        .await?;
    let errs = validate_subscription(spec, &|n| stored.contains(n));
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::InvalidDefinition(errs))
    }
}

async fn create(
    State(s): State<AppState>,
    ApiJson(spec): ApiJson<SubscriptionSpec>,
) -> Result<impl IntoResponse, ApiError> {
    check(&s, &spec).await?;
    let secret = new_secret();
    let sub = s.store.create_subscription(spec, &secret).await?;
    Ok((
        StatusCode::CREATED,
        Json(SubscriptionCreated {
            subscription: sub,
            signing_secret: secret,
        }),
    ))
}

async fn list(
    State(s): State<AppState>,
    Query(q): Query<Search>,
) -> Result<impl IntoResponse, ApiError> {
    let m = Matcher::new(&q.q);
    let items: Vec<_> = s
        .store
        .list_subscriptions()
        .await?
        .into_iter()
        .filter(|x| m.matches(&[&x.spec.name, &x.spec.url]))
        .collect();
    Ok(Json(Items { items }))
}

async fn read(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.store.get_subscription(&id).await?))
}

async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<SubscriptionSpec>,
) -> Result<impl IntoResponse, ApiError> {
    s.store.get_subscription(&id).await?;
    check(&s, &spec).await?;
    Ok(Json(s.store.update_subscription(&id, spec).await?))
}

async fn remove(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    s.store.delete_subscription(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let secret = new_secret();
    s.store.set_signing_secret(&id, &secret).await?;
    Ok(Json(RotatedSecret {
        id,
        signing_secret: secret,
    }))
}

async fn test(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let event = Event::new(
        "ping",
        json!({}),
        json!({"message": "ping from toolgate", "sent_at": now_rfc3339()}),
    );
    let d = s.store.enqueue_delivery(&id, &event, now_ms()).await?;
    s.events.wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(PingSent {
            delivery_id: d.id,
            event_id: event.event_id,
        }),
    ))
}

async fn deliveries(
    State(s): State<AppState>,
    Query(q): Query<DeliveryQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let filter = DeliveryFilter {
        subscription_id: q.subscription_id,
        status: q.status.map(|st| st.as_str().to_string()),
        limit: q.limit.unwrap_or(50).clamp(1, 500),
        before: q.before,
    };
    let items = s.store.list_deliveries(&filter).await?;
    let next = if items.len() == filter.limit {
        items.last().map(|d| d.id.clone())
    } else {
        None
    };
    Ok(Json(Page {
        items,
        next_before: next,
    }))
}

async fn delivery(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.store.get_delivery(&id).await?))
}

async fn retry(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let mut d = s.store.get_delivery(&id).await?;
    if d.status != DeliveryStatus::Failed {
        return Err(ApiError::Conflict {
            code: "not_failed",
            message: "only a failed delivery can be retried".into(),
        });
    }
    d.status = DeliveryStatus::Pending;
    d.next_attempt_at = Some(now_ms());
    d.schedule_start = d.attempts.len() as u32;
    d.updated_at = now_rfc3339();
    s.store.save_delivery(&d).await?;
    s.events.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(d)))
}
