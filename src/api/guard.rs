//! Layers every route passes: the browser guard of the no-token mode (no cross-site request and
//! no DNS-rebound host may reach the API), and the error envelope for answers made outside the
//! handlers (extractor rejections, the router's own 404/405, MCP transport errors).

use std::net::IpAddr;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, is_json_content_type, without_quoted_values};

/// Host and port of a `Host` header or URL authority, the host as written (any case) and without
/// brackets. Borrowed: this runs on every request of the no-token mode, where a lower-cased copy
/// was most of its cost.
fn host_and_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    let authority = authority.trim();
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    (!host.is_empty()).then_some((host, port))
}

/// `localhost` (any case) or a loopback IP: names a DNS-rebinding page cannot make the browser
/// send.
fn is_loopback_name(host: &str) -> bool {
    // The two names nearly every local request uses, before the general parse.
    host == "127.0.0.1"
        || host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The `Sec-Fetch-Site` header's name, made once (`from_static` checks the name each time it
/// runs).
const SEC_FETCH_SITE: header::HeaderName = header::HeaderName::from_static("sec-fetch-site");

/// The fields the browser guard reads, each the first of its name, gathered in one pass over
/// a request's fields: a lookup by name hashes the name, and three of them (with the two the
/// tool-call route reads beside them) cost more than the rest of the guard.
#[derive(Default)]
pub struct BrowserFields<'a> {
    host: Option<&'a HeaderValue>,
    origin: Option<&'a HeaderValue>,
    fetch_site: Option<&'a HeaderValue>,
}

impl<'a> BrowserFields<'a> {
    /// The guard's fields of `headers`.
    pub fn of(headers: &'a HeaderMap) -> Self {
        let mut fields = BrowserFields::default();
        for (name, value) in headers {
            fields.take(name, value);
        }
        fields
    }

    /// Keep `value` if `name` is one of the guard's fields not seen yet (a map yields the
    /// values of one name in order, so the first kept is what a lookup would give). Whether it
    /// was one of them.
    pub fn take(&mut self, name: &HeaderName, value: &'a HeaderValue) -> bool {
        let slot = if name == header::HOST {
            &mut self.host
        } else if name == header::ORIGIN {
            &mut self.origin
        } else if name == SEC_FETCH_SITE {
            &mut self.fetch_site
        } else {
            return false;
        };
        slot.get_or_insert(value);
        true
    }

    /// Why the request must be refused in the no-token mode, if it must: a `Host` that is not
    /// a loopback name (DNS rebinding), an `Origin` other than the gateway's own, or a browser
    /// saying the request is cross-site.
    pub fn refusal(&self) -> Option<String> {
        fn text(v: Option<&HeaderValue>) -> Option<&str> {
            v.map(|v| v.to_str().unwrap_or("\u{0}"))
        }
        // Only a browser's request is in question, and every browser sends Host.
        let own = match text(self.host) {
            None => None,
            Some(h) => match host_and_port(h, 80) {
                Some(hp) if is_loopback_name(hp.0) => Some(hp),
                _ => {
                    return Some(
                        "the Host header is not a loopback address: without an admin token the API answers only requests addressed to localhost".into(),
                    );
                }
            },
        };
        if let Some(origin) = text(self.origin) {
            let same = url::Url::parse(origin).ok().and_then(|u| {
                let port = u.port_or_known_default()?;
                let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
                Some((host.to_string(), port))
            });
            let ok = match (&same, &own) {
                (Some(o), Some(h)) => o.0.eq_ignore_ascii_case(h.0) && o.1 == h.1,
                (Some(o), None) => is_loopback_name(&o.0),
                (None, _) => false,
            };
            if !ok {
                return Some(
                    "cross-origin requests are refused: without an admin token only pages served by this gateway may call its API".into(),
                );
            }
        }
        if text(self.fetch_site) == Some("cross-site") {
            return Some("cross-site requests are refused".into());
        }
        None
    }
}

/// Why a request must be refused in the no-token mode, if it must (`BrowserFields::refusal`).
pub fn cross_site_refusal(headers: &HeaderMap) -> Option<String> {
    BrowserFields::of(headers).refusal()
}

/// The layer every request passes: refuse cross-site and DNS-rebound browser requests when no
/// admin token is configured (with a token, a browser cannot attach it to a cross-site request
/// without a preflight we never allow), put errors made outside the handlers in the envelope,
/// and trace the request at DEBUG.
pub async fn edge(browser_guard: bool, req: Request, next: Next) -> Response {
    if browser_guard && let Some(why) = cross_site_refusal(req.headers()) {
        return ApiError::Forbidden(why).into_response();
    }
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return envelope(next.run(req).await).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let start = std::time::Instant::now();
    let resp = envelope(next.run(req).await).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), duration_ms = start.elapsed().as_millis() as u64, "request");
    resp
}

/// Put an error answer that is not already JSON into the `{"error":{…}}` envelope.
async fn envelope(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_content_type);
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let message = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_string(),
        t => without_quoted_values(t)
            .replace("  ", " ")
            .trim()
            .to_string(),
    };
    let mut out = ApiError::Http { status, message }.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn same_origin_and_loopback_pass() {
        for ok in [
            vec![("host", "127.0.0.1:8080")],
            vec![
                ("host", "localhost:8080"),
                ("origin", "http://localhost:8080"),
            ],
            vec![("host", "[::1]:8080"), ("origin", "http://[::1]:8080")],
            // Host names are case-blind: the browser lower-cases the Origin, not always the Host.
            vec![("host", "LocalHost"), ("origin", "http://localhost")],
            vec![
                ("host", "LOCALHOST:8080"),
                ("origin", "http://LOCALHOST:8080"),
            ],
            vec![("host", "[0:0:0:0:0:0:0:1]:8080")],
            vec![
                ("host", "127.0.0.1:8080"),
                ("sec-fetch-site", "same-origin"),
            ],
            vec![],
        ] {
            assert_eq!(cross_site_refusal(&headers(&ok)), None, "{ok:?}");
        }
    }

    #[test]
    fn foreign_hosts_and_origins_are_refused() {
        for bad in [
            vec![("host", "evil.example:8080")],
            vec![("host", "127.0.0.1.nip.io:8080")],
            vec![("host", "LOCALHOST.evil.example")],
            vec![
                ("host", "LocalHost:8080"),
                ("origin", "http://localhost:8081"),
            ],
            vec![("host", "127.0.0.1:http")],
            vec![
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example"),
            ],
            vec![("host", "127.0.0.1:8080"), ("origin", "null")],
            vec![
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:3000"),
            ],
            vec![
                ("host", "localhost:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ],
            vec![("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")],
        ] {
            assert!(cross_site_refusal(&headers(&bad)).is_some(), "{bad:?}");
        }
    }
}
