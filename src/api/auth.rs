//! Who is calling and whether they may: every `/v1` request and every MCP request is
//! authenticated here (the bootstrap admin token, an API key, or a local caller when no admin
//! token is configured), then checked against the route's permission, and every write is
//! appended to the audit log with its result.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::access::keys::{Keys, Refusal};
use crate::access::limits::Limits;
use crate::access::{Caller, Permission, Role, route_permission};
use crate::error::ApiError;
use crate::model::AuditEntry;
use crate::store::Store;

/// What authentication needs, and nothing more (cloning `AppState` per request costs more).
#[derive(Clone)]
pub struct Gate {
    /// The bootstrap admin token.
    pub admin_token: Option<Arc<str>>,
    /// The MCP token, valid on `/mcp` only.
    pub mcp_token: Option<Arc<str>>,
    /// Every API key.
    pub keys: Arc<Keys>,
    /// Per-key rate limits.
    pub limits: Arc<Limits>,
    /// Where last use and the audit log go.
    pub store: Arc<dyn Store>,
}

fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Gate {
    /// The caller of a request with these `headers`, or why it is refused. `extra` is a token
    /// also accepted (the MCP token on `/mcp`), as a caller of its own.
    pub(super) fn caller(
        &self,
        headers: &axum::http::HeaderMap,
        extra: Option<&str>,
    ) -> Result<Caller, ApiError> {
        let token = bearer(headers);
        if let (Some(t), Some(admin)) = (token, &self.admin_token)
            && same(t, admin)
        {
            return Ok(Caller::admin_token());
        }
        if let (Some(t), Some(x)) = (token, extra)
            && same(t, x)
        {
            return Ok(Caller {
                actor: "mcp-token".into(),
                role: Role::Admin,
                key: None,
            });
        }
        if let Some(t) = token.filter(|t| t.starts_with("tg_")) {
            return match self.keys.verify(t) {
                Ok(entry) => {
                    if let Some(per_minute) = entry.key.rate_limit_per_minute
                        && let Err(wait) = self.limits.check(&entry.key.id, per_minute)
                    {
                        return Err(ApiError::RateLimited(wait.as_secs().max(1)));
                    }
                    if let Some(at) = self.keys.touch(&entry) {
                        let (store, id) = (self.store.clone(), entry.key.id.clone());
                        tokio::spawn(async move {
                            if let Err(e) = store.touch_key(&id, &at).await {
                                tracing::debug!(error = %e, "last use of a key not recorded");
                            }
                        });
                    }
                    Ok(Caller {
                        actor: entry.key.name.clone(),
                        role: entry.key.role,
                        key: Some(entry),
                    })
                }
                Err(Refusal::Expired) => Err(ApiError::BadKey("this API key has expired".into())),
                Err(Refusal::Unknown) => Err(ApiError::BadKey(
                    "this API key is not valid (revoked or never issued)".into(),
                )),
            };
        }
        // Without an admin token the gateway trusts its loopback callers (the browser guard
        // keeps web pages out); with one, every request must authenticate.
        if self.admin_token.is_none() && extra.is_none() {
            return Ok(Caller::local());
        }
        Err(ApiError::Unauthorized)
    }
}

/// Authenticate a `/v1` request (a layer: unknown routes answer 401 before 404). A request the
/// front (`api::front`) authenticated already carries its caller (extensions are set by server
/// code only): it is not authenticated, nor counted against its key's rate limit, again.
pub async fn authenticate(gate: Gate, mut req: Request, next: Next) -> Result<Response, ApiError> {
    if req.extensions().get::<Caller>().is_none() {
        let caller = gate.caller(req.headers(), None)?;
        req.extensions_mut().insert(caller);
    }
    Ok(next.run(req).await)
}

/// Authenticate an MCP request: the MCP token, the admin token, or a key that may invoke.
pub async fn authenticate_mcp(
    gate: Gate,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let extra = gate.mcp_token.clone();
    let caller = gate.caller(req.headers(), extra.as_deref())?;
    if !caller.role.grants(Permission::Invoke) {
        return Err(refusal(&caller, Permission::Invoke));
    }
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

fn refusal(caller: &Caller, p: Permission) -> ApiError {
    ApiError::Forbidden(format!(
        "the role '{}' of '{}' does not include the permission {}",
        caller.role.as_str(),
        caller.actor,
        p.as_str()
    ))
}

/// Check the matched route's permission, then append every write to the audit log (refused
/// ones too): who, which route and resource, when, and the status. One route layer for both, as
/// each layer costs a boxed future on every request.
pub async fn authorize_and_audit(store: Arc<dyn Store>, req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let full = matched.as_ref().map_or("", MatchedPath::as_str);
    let route = full.strip_prefix("/v1").unwrap_or(full);
    let method = req.method().clone();
    let permission = route_permission(method.as_str(), route);
    let refused = match req.extensions().get::<Caller>() {
        None => Some(ApiError::Unauthorized),
        Some(caller) => match permission {
            Some(p) if caller.role.grants(p) => None,
            Some(p) => Some(refusal(caller, p)),
            // A route the table does not know is an admin's only.
            None if caller.role == Role::Admin => None,
            None => Some(refusal(caller, Permission::ManageKeys)),
        },
    };
    // Reads change nothing; calls (invoke, chat, MCP) are in the call history with their caller.
    if method == axum::http::Method::GET
        || method == axum::http::Method::HEAD
        || permission == Some(Permission::Invoke)
    {
        return match refused {
            Some(e) => e.into_response(),
            None => next.run(req).await,
        };
    }
    let actor = req
        .extensions()
        .get::<Caller>()
        .map(|c| c.actor.clone())
        .unwrap_or_else(|| "anonymous".into());
    let from_path = resource_in_path(route, req.uri().path());
    let route = route.to_string();
    let resp = match refused {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    };
    let status = resp.status().as_u16();
    let (resp, resource) = match from_path {
        Some(r) => (resp, Some(r)),
        // Only a creation names its resource in the answer (a small JSON record); other
        // answers are passed through untouched.
        None if resp.status() == axum::http::StatusCode::CREATED => id_in_body(resp).await,
        None => (resp, None),
    };
    let entry = AuditEntry {
        id: crate::model::ids::new_id("aud"),
        at: crate::model::now_rfc3339(),
        actor,
        method: method.as_str().to_string(),
        route: format!("/v1{route}"),
        resource,
        status,
    };
    if let Err(e) = store.append_audit(&entry).await {
        tracing::error!(error = %e, route = %entry.route, "audit entry not written");
    }
    resp
}

/// The value of the route's `{id}` segment in the actual path.
fn resource_in_path(route: &str, path: &str) -> Option<String> {
    let path = path.strip_prefix("/v1").unwrap_or(path);
    route
        .split('/')
        .zip(path.split('/'))
        .find(|(r, _)| *r == "{id}")
        .map(|(_, p)| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        })
}

/// The `id` of a created resource, read from the (small, JSON) answer and put back.
async fn id_in_body(resp: Response) -> (Response, Option<String>) {
    let (parts, body) = resp.into_parts();
    // Our own answers are in memory already; the limit only bounds the copy.
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return (Response::from_parts(parts, Body::empty()), None);
    };
    let id = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string));
    (Response::from_parts(parts, Body::from(bytes)), id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_is_the_id_segment() {
        assert_eq!(
            resource_in_path("/webhooks/{id}/test", "/v1/webhooks/wh_1/test").as_deref(),
            Some("wh_1")
        );
        assert_eq!(resource_in_path("/webhooks", "/v1/webhooks"), None);
    }
}
