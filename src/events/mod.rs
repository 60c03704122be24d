//! Outbound event webhooks: Standard Webhooks signing, the retry schedule, and the worker that
//! turns the durable outbox into deliveries and sends them.

pub mod payload;
pub mod sign;
pub mod worker;

use std::time::Duration;

use crate::model::ids::new_id;
use crate::model::{Delivery, DeliveryStatus, Event, Subscription, SubscriptionId, now_rfc3339};

/// Parse a retry schedule such as `0s,5s,5m,30m,2h,5h,10h` (units ms, s, m, h; bare numbers are seconds).
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (num, unit) = match part.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => part.split_at(i),
            None => (part, "s"),
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("retry schedule: '{part}' is not a duration like 5s or 30m"))?;
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => {
                return Err(format!(
                    "retry schedule: unknown unit in '{part}' (use ms, s, m or h)"
                ));
            }
        };
        out.push(d);
    }
    if out.is_empty() {
        return Err("retry schedule must list at least one delay".into());
    }
    Ok(out)
}

/// One pending delivery of `event` (already serialised as `payload`) to a subscription, due at
/// `now_ms`.
fn pending(
    event: &Event,
    payload: &serde_json::Value,
    subscription_id: &SubscriptionId,
    now_ms: u64,
) -> Delivery {
    let now = now_rfc3339();
    Delivery {
        id: new_id("dlv"),
        event_id: event.event_id.clone(),
        event_type: event.event_type.clone(),
        subscription_id: subscription_id.clone(),
        status: DeliveryStatus::Pending,
        payload: payload.clone(),
        attempts: Vec::new(),
        next_attempt_at: Some(now_ms),
        schedule_start: 0,
        created_at: now.clone(),
        updated_at: now,
    }
}

/// A pending delivery of `event` to one subscription, due at `now_ms` (test pings).
pub fn delivery_to(
    event: &Event,
    subscription_id: &SubscriptionId,
    now_ms: u64,
) -> Result<Delivery, serde_json::Error> {
    Ok(pending(
        event,
        &serde_json::to_value(event)?,
        subscription_id,
        now_ms,
    ))
}

/// The deliveries `event` makes: one pending delivery, due at `now_ms`, per subscription that
/// wants its type. Fails only if the event cannot be serialised (then nothing is delivered and
/// the outbox keeps it, rather than sending `null`).
pub fn fan_out(
    event: &Event,
    subscriptions: &[Subscription],
    now_ms: u64,
) -> Result<Vec<Delivery>, serde_json::Error> {
    let payload = serde_json::to_value(event)?;
    Ok(subscriptions
        .iter()
        .filter(|s| s.spec.wants(&event.event_type))
        .map(|s| pending(event, &payload, &s.id, now_ms))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(
            parse_schedule("0s,5s,5m,30m,2h").unwrap(),
            vec![
                Duration::ZERO,
                Duration::from_secs(5),
                Duration::from_secs(300),
                Duration::from_secs(1800),
                Duration::from_secs(7200)
            ]
        );
        assert_eq!(
            parse_schedule("0, 200ms").unwrap(),
            vec![Duration::ZERO, Duration::from_millis(200)]
        );
        assert!(parse_schedule("5x").is_err());
        assert!(parse_schedule("").is_err());
    }
}
