//! The HTTP surface: one file per resource, merged here under admin auth and the body limit.

mod agents;
pub mod auth;
mod calls;
pub mod doc;
pub mod front;
pub mod guard;
mod keys;
mod openai;
mod openapi_import;
mod secrets;
mod subscriptions;
mod system;
mod tools;
pub mod types;
mod webhooks;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};

use crate::AppState;
use crate::error::ApiError;

pub(crate) use types::Search;

pub(crate) use crate::search::Matcher;

/// Refuse a `context` that is neither absent nor a JSON object (it is looked up by dotted paths).
pub(crate) fn check_context(context: &serde_json::Value) -> Result<(), ApiError> {
    if context.is_null() || context.is_object() {
        Ok(())
    } else {
        Err(ApiError::InvalidDefinition(vec![
            crate::model::validate::FieldError::new("context", "context must be a JSON object"),
        ]))
    }
}

/// Every route, with auth on `/v1/*`, the body limit and enveloped 404/405 answers.
pub fn router(state: AppState) -> Router {
    let gate = gate(&state);
    let audit_store = state.store.clone();
    // Without a token the browser guard applies.
    let browser_guard = state.config.admin_token.is_none();
    let v1 = Router::new()
        .merge(secrets::routes())
        .merge(webhooks::routes())
        .merge(tools::routes())
        .merge(calls::routes())
        .merge(agents::routes())
        .merge(openai::routes())
        .merge(subscriptions::routes())
        .merge(openapi_import::routes())
        .merge(keys::routes())
        // A route layer runs once the route is known: its permission, and the audit entry of
        // a write (refused ones too).
        .route_layer(middleware::from_fn(move |req: Request, next: Next| {
            auth::authorize_and_audit(audit_store.clone(), req, next)
        }))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // A layer, not a route layer: unknown /v1 routes answer 401 before 404, so an anonymous
        // caller learns nothing about which routes exist.
        .layer({
            let gate = gate.clone();
            middleware::from_fn(move |req: Request, next: Next| {
                auth::authenticate(gate.clone(), req, next)
            })
        });
    Router::new()
        .merge(system::routes())
        .merge(crate::console::routes())
        .merge(mcp_routes(&state, gate))
        .nest("/v1", v1)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.max_body_bytes,
        ))
        // One layer for what every request passes (a layer per concern cost a boxed future
        // each on the hot path): the browser guard, the error envelope, the debug trace.
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            guard::edge(browser_guard, req, next)
        }))
        .with_state(state)
}

/// What authentication needs of `state`.
fn gate(state: &AppState) -> auth::Gate {
    auth::Gate {
        admin_token: state.config.admin_token.as_deref().map(Into::into),
        mcp_token: state.config.mcp_token.as_deref().map(Into::into),
        keys: state.keys.clone(),
        limits: state.pipeline.limits.clone(),
        store: state.store.clone(),
    }
}

/// MCP over streamable HTTP: `/mcp` (every linked tool) and `/mcp/agents/{name}` (that agent's).
fn mcp_routes(state: &AppState, gate: auth::Gate) -> Router<AppState> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(state.shutdown.child_token())
        .with_max_request_body_bytes(state.config.max_body_bytes);
    // With a shared store, a session started on one node is resumed by whichever node gets its
    // next request: no sticky sessions needed behind a load balancer.
    config.session_store = state.store.mcp_sessions();
    if state.config.mcp_token.is_some() || state.config.admin_token.is_some() {
        // A bearer token guards the endpoint, so the loopback-only Host check (a DNS-rebinding
        // defence for unauthenticated local servers) would only block legitimate remote clients.
        config = config.disable_allowed_hosts();
    }
    let st = state.clone();
    let service: StreamableHttpService<crate::mcp::McpServer, LocalSessionManager> =
        StreamableHttpService::new(
            move || {
                Ok(crate::mcp::McpServer::new(
                    st.clone(),
                    None,
                    serde_json::json!({}),
                ))
            },
            Default::default(),
            config,
        );
    Router::new()
        .route_service("/mcp", service.clone())
        .route_service("/mcp/agents/{name}", service)
        .route_layer(middleware::from_fn(move |req: Request, next: Next| {
            auth::authenticate_mcp(gate.clone(), req, next)
        }))
}
