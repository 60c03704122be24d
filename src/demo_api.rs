//! `toolgate demo-api`: a small loopback API (orders, tickets, messages, SMS) that the shipped
//! `tools/` examples call, so the quickstart works without internet.

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct OrderQuery {
    include: Option<String>,
}

async fn order(
    Path(number): Path<String>,
    Query(q): Query<OrderQuery>,
) -> (StatusCode, Json<Value>) {
    let (status, eta) = match number.as_str() {
        "A-1001" => ("shipped", "2026-11-24"),
        "A-1002" => ("processing", "2026-11-28"),
        "A-1003" => ("delivered", "2026-11-18"),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"error": format!("order {number} not found")})),
            );
        }
    };
    let mut body =
        json!({"order": {"number": number, "status": status, "estimated_delivery": eta}});
    if q.include.as_deref() == Some("items") {
        body["items"] = json!([{"name": "Espresso beans 1kg", "quantity": 2}, {"name": "Milk frother", "quantity": 1}]);
    }
    (StatusCode::OK, Json(body))
}

fn has_header(h: &HeaderMap, name: &str, prefix: &str) -> bool {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(prefix) && v.len() > prefix.len())
}

async fn ticket(headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    if !has_header(&headers, "authorization", "Bearer ") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "missing bearer token"})),
        );
    }
    let id = format!(
        "T-{}",
        1000 + (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 9000)
            .unwrap_or(0))
    );
    (
        StatusCode::CREATED,
        Json(json!({"ticket_id": id, "status": "open", "received": body})),
    )
}

async fn message(headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    if !has_header(&headers, "accesskey", "") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "missing AccessKey header"})),
        );
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "queued", "received": body})),
    )
}

async fn sms(headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    if !has_header(&headers, "x-secret-key", "") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "missing X-Secret-Key header"})),
        );
    }
    let recipients = body["recipientList"].as_array().map(Vec::len).unwrap_or(0);
    if body["body"].as_str().is_none_or(str::is_empty) || recipients == 0 {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "body and recipientList are required"})),
        );
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "accepted", "recipients": recipients})),
    )
}

/// The demo API router.
pub fn router() -> Router {
    Router::new()
        .route("/api/orders/{number}", get(order))
        .route("/api/tickets", post(ticket))
        .route("/api/messages", post(message))
        .route("/api/sms", post(sms))
}

/// Serve the demo API on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router()).await
}
