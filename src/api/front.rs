//! What the serving threads call for every request: the tool-call route
//! (`POST /v1/tools/{name}/invoke`) answered directly, everything else through the router.
//!
//! A tool call is the request an agent makes on every turn, and in the router it passed the
//! edge layer, the authentication layer, the route layer, the path and body extractors and a
//! clone of the handler's state, each a boxed future moved from layer to layer: about a tenth of
//! the call's CPU. Here the same checks run in one function, in the same order, with the same
//! code (`guard::BrowserFields`, `auth::Gate::caller`, the route's permission, the body
//! limit, `CallBody`, `check_context`, `call::invoke`, `tools::call_response`).
//!
//! Only the common case is answered here. Whatever would be refused or needs more than the
//! catalog's snapshot (a cross-site request, a failed authentication, a missing permission, a
//! body of unknown or too large a size, a non-JSON or malformed body, a bad context, a tool id
//! instead of a name, a percent-encoded name, request tracing at DEBUG) is handed to the router
//! as it came, the body already read put back, so every refusal is the router's own answer.
//! A caller authenticated here travels with the request: the router's authentication takes it
//! instead of counting the request against the key's rate limit a second time.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::body::Incoming;
use tower::Service;

use super::auth::Gate;
use super::guard::BrowserFields;
use super::webhooks::CallBody;
use crate::AppState;
use crate::access::Permission;
use crate::error::{ApiError, is_json_content_type};
use crate::serving::body_deadline::{DeadlineBody, Failed, poll_in_time};

/// The service every serving thread runs: cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Front(Arc<Parts>);

struct Parts {
    router: Router,
    state: AppState,
    gate: Gate,
    browser_guard: bool,
    /// How long a request's body may take to arrive (`--client-timeout-secs`).
    body_deadline: std::time::Duration,
}

impl Front {
    /// The front of `router`, which `api::router` built over `state`.
    pub fn new(state: AppState, router: Router) -> Self {
        Front(Arc::new(Parts {
            gate: super::gate(&state),
            browser_guard: state.config.admin_token.is_none(),
            body_deadline: std::time::Duration::from_secs(state.config.client_timeout_secs),
            router,
            state,
        }))
    }
}

/// The tool name of a `POST /v1/tools/{name}/invoke`, when it needs no decoding.
fn invoke_target<B>(req: &http::Request<B>) -> Option<&str> {
    if req.method() != Method::POST {
        return None;
    }
    tool_name_in(req.uri().path())
}

/// The `{name}` of a path `/v1/tools/{name}/invoke`: one plain segment, nothing to decode.
fn tool_name_in(path: &str) -> Option<&str> {
    let name = path.strip_prefix("/v1/tools/")?.strip_suffix("/invoke")?;
    (!name.is_empty() && !name.contains(['/', '%'])).then_some(name)
}

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, req: hyper::Request<Incoming>) -> Answer {
        // In flight until the answer is made or the caller goes away (`busy_poll`).
        let flight = crate::busy_poll::begin();
        if invoke_target(&req).is_some() && !tracing::enabled!(tracing::Level::DEBUG) {
            let parts = self.0.clone();
            return Box::pin(async move {
                let answer = parts.invoke(req).await;
                drop(flight);
                Ok(answer)
            });
        }
        let parts = self.0.clone();
        Box::pin(async move {
            let answer = parts.route(req).await;
            drop(flight);
            Ok(answer)
        })
    }
}

/// The body of a request that said it is `length` bytes long (at most the body limit, checked
/// before): hyper holds it to that length, so the first frame is usually all of it and is taken
/// as it is. What `axum::body::to_bytes` did through a boxed body, a length limit and a list of
/// buffers, at about 1,000 instructions a call. Refused: the rest did not arrive within
/// `deadline` of the first read that found it missing (408), the connection broke or more came
/// than was said (400).
async fn read_body(
    mut body: Incoming,
    length: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let broken = || ApiError::BadRequest("could not read the request body".into());
    let mut whole: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let mut timer = None;
    while let Some(frame) =
        std::future::poll_fn(|cx| poll_in_time(&mut body, &mut timer, deadline, cx)).await
    {
        let frame = frame.map_err(|e| match e {
            Failed::TooSlow => ApiError::body_too_slow(),
            Failed::Body(_) => broken(),
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: none on a body with a length
        };
        let had = whole.as_ref().map_or(joined.len(), Bytes::len);
        if had + data.len() > length {
            return Err(broken());
        }
        match whole.take() {
            None if joined.is_empty() => whole = Some(data),
            None => joined.extend_from_slice(&data),
            Some(first) => {
                joined.reserve_exact(length);
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&data);
            }
        }
    }
    let bytes = whole.unwrap_or_else(|| Bytes::from(joined));
    if bytes.len() == length {
        Ok(bytes)
    } else {
        Err(broken())
    }
}

impl Parts {
    /// Hand `req` to the router, as it came (its body under the client timeout).
    async fn route<B>(&self, req: http::Request<B>) -> Response
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let deadline = self.body_deadline;
        let req = req.map(|b| Body::new(DeadlineBody::new(b, deadline)));
        match self.router.clone().call(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }

    /// Answer a tool call, or hand it to the router when anything about it is not plain.
    async fn invoke(&self, mut req: hyper::Request<Incoming>) -> Response {
        // The fields read here, in one pass (each the first of its name, as a lookup gives).
        let mut browser = BrowserFields::default();
        let (mut content_type, mut content_length) = (None, None);
        for (name, value) in req.headers() {
            if browser.take(name, value) {
                continue;
            }
            if name == header::CONTENT_TYPE {
                content_type.get_or_insert(value);
            } else if name == header::CONTENT_LENGTH {
                content_length.get_or_insert(value);
            }
        }
        if self.browser_guard && browser.refusal().is_some() {
            return self.route(req).await;
        }
        let json_type = content_type
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_content_type);
        let max = self.state.config.max_body_bytes;
        let length = content_length
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0 && n <= max);
        let (true, Some(length)) = (json_type, length) else {
            return self.route(req).await;
        };
        let caller = match self.gate.caller(req.headers(), None) {
            Ok(c) => c,
            Err(_) => return self.route(req).await,
        };
        if !caller.role.grants(Permission::Invoke) {
            req.extensions_mut().insert(caller);
            return self.route(req).await;
        }
        let (mut head, body) = req.into_parts();
        let bytes = match read_body(body, length, self.body_deadline).await {
            Ok(b) => b,
            Err(e) => return e.into_response(),
        };
        let parsed = serde_json::from_slice::<CallBody>(&bytes)
            .ok()
            .filter(|b| super::check_context(&b.context).is_ok());
        let snap = self.state.catalog.snapshot();
        let compiled = tool_name_in(head.uri.path()).and_then(|name| snap.tools.get(name));
        let (Some(body), Some(compiled)) = (parsed, compiled) else {
            head.extensions.insert(caller);
            return self
                .route(Request::from_parts(head, Body::from(bytes)))
                .await;
        };
        let compiled = compiled.clone();
        drop(snap);
        super::tools::call_tool(&self.state, &caller, &compiled, &body)
            .await
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(path: &str) -> Request {
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .body(Body::empty())
            .expect("request")
    }

    #[test]
    fn only_plain_tool_names_are_taken() {
        assert_eq!(
            invoke_target(&post("/v1/tools/get_order/invoke")),
            Some("get_order")
        );
        for routed in [
            "/v1/tools//invoke",
            "/v1/tools/a/b/invoke",
            "/v1/tools/get%5Forder/invoke",
            "/v1/tools/get_order/invoke/",
            "/v1/tools/get_order",
            "/tools/get_order/invoke",
        ] {
            assert_eq!(invoke_target(&post(routed)), None, "{routed}");
        }
        let mut get = post("/v1/tools/get_order/invoke");
        *get.method_mut() = Method::GET;
        assert_eq!(invoke_target(&get), None);
        assert_eq!(
            tool_name_in("/v1/tools/get_order/invoke"),
            Some("get_order")
        );
    }
}
