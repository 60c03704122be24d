//! Event subscription definitions.

use super::{FieldError, check_display_name, is_identifier, url_credentials_error};
use crate::model::event::{EVENT_TYPES, SubscriptionAuth, SubscriptionSpec};

/// Every problem with a subscription. `secret_exists` answers for the secret its auth names.
pub fn validate_subscription(
    spec: &SubscriptionSpec,
    secret_exists: &dyn Fn(&str) -> bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    errs.extend(check_display_name("name", &spec.name));
    match reqwest::Url::parse(&spec.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            if let Some(m) = url_credentials_error(&u) {
                errs.push(FieldError::new("url", m));
            }
        }
        _ => errs.push(FieldError::new(
            "url",
            "url must be an absolute http:// or https:// URL",
        )),
    }
    if spec.event_types.is_empty() {
        errs.push(FieldError::new(
            "event_types",
            "list at least one event type, or \"*\" for all",
        ));
    }
    for (i, t) in spec.event_types.iter().enumerate() {
        if t != "*" && !EVENT_TYPES.contains(&t.as_str()) {
            errs.push(FieldError::new(
                format!("event_types[{i}]"),
                format!("unknown event type; one of: *, {}", EVENT_TYPES.join(", ")),
            ));
        }
    }
    match &spec.auth {
        SubscriptionAuth::ApiKey { header, .. }
            if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() =>
        {
            errs.push(FieldError::new(
                "auth.header",
                "not a valid HTTP header name",
            ))
        }
        SubscriptionAuth::Basic { username, .. }
            if username.is_empty() || username.contains(':') =>
        {
            errs.push(FieldError::new(
                "auth.username",
                "username must be non-empty and contain no ':'",
            ))
        }
        SubscriptionAuth::ClientSecret { field, .. } if !is_identifier(field) => {
            errs.push(FieldError::new(
                "auth.field",
                "field must match ^[A-Za-z_][A-Za-z0-9_]{0,63}$",
            ))
        }
        _ => {}
    }
    if let Some(n) = spec.auth.secret_name()
        && !secret_exists(n)
    {
        let field = if matches!(spec.auth, SubscriptionAuth::Basic { .. }) {
            "auth.password_secret"
        } else {
            "auth.secret"
        };
        errs.push(FieldError::new(field, format!("unknown secret '{n}'")));
    }
    errs
}
