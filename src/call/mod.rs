//! THE pipeline every tool call takes, shared by the HTTP invoke route, the agent loop and MCP:
//! args → resolve → render → send → result, then a redacted history record.

pub mod args;
pub mod compact_json;
pub mod context;
pub mod plain;
pub mod policy;
pub mod render;
pub mod resolve;
pub mod result;
pub mod send;
pub mod target;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::Instrument;

use crate::catalog::CompiledWebhook;
use crate::history::Recorder;
use crate::history::Redactor;
use crate::metrics::Metrics;
use crate::model::call::{RecordedRequest, RecordedResponse};
use crate::model::validate::FieldError;
use crate::model::{CallId, CallRecord, Outcome, Source, now_rfc3339};
use resolve::ResolveError;
pub use result::CallResult;

/// What a call needs from the gateway, and nothing more: the secret store, the sender, the
/// recorder, the counters and the size limits.
pub struct Pipeline {
    /// Where secret values are read, at the last moment (opened once, then kept until a
    /// secret write clears them).
    pub secrets: Arc<crate::store::secret_cache::SecretCache>,
    /// Outbound HTTP under the network policy.
    pub sender: Arc<send::Sender>,
    /// History writer; `None` records nothing (`--no-history`).
    pub recorder: Option<Arc<Recorder>>,
    /// Call counters and durations.
    pub metrics: Arc<Metrics>,
    /// Upstream response size kept in results and history.
    pub max_response_bytes: usize,
    /// Size of the text handed back to the model.
    pub max_content_bytes: usize,
    /// Redactors by the secret values they cover: building one (every encoding of every value,
    /// an Aho-Corasick automaton) costs more than the rest of a call, and the values a webhook
    /// uses rarely change.
    pub redactors: crate::redact::RedactorCache,
    /// Per-key rate limits, also taken by each tool call of a chat turn.
    pub limits: Arc<crate::access::limits::Limits>,
}

impl Pipeline {
    /// Drop every opened secret value and every redactor built from them (a secret was
    /// written or deleted, here or on another node).
    pub fn forget_secrets(&self) {
        self.secrets.clear();
        self.redactors.clear();
    }
}

/// One call to make.
pub struct CallRequest<'a> {
    /// Tool name, when called through a tool.
    pub tool: Option<&'a str>,
    /// The webhook to call.
    pub hook: Arc<CompiledWebhook>,
    /// Arguments: an object or a JSON string.
    pub arguments: &'a Value,
    /// Values from the calling application.
    pub context: &'a Value,
    /// Who is calling.
    pub source: Source,
    /// Agent whose conversation makes the call.
    pub agent: Option<&'a str>,
    /// Conversation the call belongs to.
    pub conversation_id: Option<&'a str>,
    /// Who asked for the call; `None` for calls toolgate makes itself.
    pub caller: Option<&'a crate::access::Caller>,
    /// Who may use the tool (`all` for test sends).
    pub authorized: &'a crate::access::Authorized,
}

struct Draft {
    outcome: Outcome,
    status: Option<u16>,
    error: Option<String>,
    arguments: Value,
    request: Option<RecordedRequest>,
    /// The upstream's headers (redacted when recorded); the response is recorded when `status`
    /// is set, with `response_value` as its body.
    response_headers: Vec<(String, String)>,
    /// The response as a tree; `None` when it is `content` (compact JSON text, no tree built:
    /// `result::verbatim_json`).
    response_value: Option<Value>,
    content: String,
    /// `content` is `response_value` as compact JSON (`CallResult::response_is_content`).
    content_is_response: bool,
    details: Vec<FieldError>,
    attempts: u32,
    redactor: Arc<Redactor>,
}

impl Draft {
    fn refused(
        outcome: Outcome,
        content: String,
        error: String,
        details: Vec<FieldError>,
        arguments: Value,
    ) -> Self {
        Draft {
            outcome,
            status: None,
            error: Some(error),
            arguments,
            request: None,
            response_headers: Vec::new(),
            response_value: Some(Value::Null),
            content,
            content_is_response: false,
            details,
            attempts: 0,
            redactor: Arc::default(),
        }
    }
}

/// Run one tool call end to end. Failures are results (`ok: false`), never errors.
pub async fn invoke(state: &Pipeline, req: CallRequest<'_>) -> CallResult {
    let webhook_id = req.hook.webhook.id.clone();
    // The span at DEBUG: at the default level a call writes no log line (its history record is
    // the call log), since formatting and writing one cost as much as the rest of the call's
    // own work. The call id is known once the record is queued (see `Recorder::record`).
    let span = tracing::debug_span!("tool_call", call_id = tracing::field::Empty,
        tool = req.tool.unwrap_or(""), webhook_id = %webhook_id, source = req.source.as_str());
    let started_at = now_rfc3339();
    let start = Instant::now();
    let draft = run(state, &req).instrument(span.clone()).await;
    let elapsed = start.elapsed();
    let duration_ms = elapsed.as_millis() as u64;
    state.metrics.observe(
        req.tool.unwrap_or(""),
        draft.outcome.as_str(),
        elapsed.as_secs_f64(),
    );

    let Draft {
        outcome,
        status,
        error,
        arguments,
        request,
        response_headers,
        response_value,
        content,
        content_is_response,
        details,
        attempts,
        redactor,
    } = draft;
    let r = &redactor;
    // Each part is redacted as it is moved into the record: copied only where a secret is.
    // Text that is the response as compact JSON was scanned whole and found clean when it was
    // made (`result::success_content`); any other text is scanned here.
    let content = if content_is_response {
        content
    } else {
        r.into_text(content)
    };
    // The response was redacted where it was read (before any cut); not walked again here.
    // With a status, the answer's response is the recorded body, moved back out once the record
    // is queued: recording it needs no copy of the tree. Without a tree, the record's body is
    // written from the text (`json_body`).
    let mut response_value = response_value;
    let json_body = match response_value {
        None => Some(content.as_str()),
        Some(_) => None,
    };
    let recorded_response = status.map(|status| RecordedResponse {
        status,
        headers: r.into_headers(response_headers),
        body: response_value.take().unwrap_or_default(),
    });
    let mut record = CallRecord {
        // The recorder gives the id when history is on.
        id: match state.recorder {
            Some(_) => CallId::unassigned(),
            None => CallId::new(),
        },
        tool: req.tool.map(str::to_string),
        webhook_id: webhook_id.into(),
        source: req.source,
        started_at,
        duration_ms,
        outcome,
        error: error.map(|e| r.into_text(e)),
        arguments: r.into_kept_value(arguments),
        request: request.map(|q| RecordedRequest {
            method: q.method,
            url: r.into_text(q.url),
            headers: r.into_headers(q.headers),
            body: r.into_kept_value(q.body),
        }),
        response: recorded_response,
        attempts,
        agent: req.agent.map(str::to_string),
        conversation_id: req.conversation_id.map(str::to_string),
        caller: req.caller.map(|c| c.actor.clone()),
        context: match req.context {
            Value::Object(m) if !m.is_empty() => Some(r.kept_value(req.context)),
            _ => None,
        },
    };
    let call_id = match &state.recorder {
        Some(recorder) => recorder.record(&record, json_body).await,
        None => record.id,
    };
    if let (Some(p), None) = (record.response.take(), json_body) {
        response_value = Some(p.body);
    }
    span.record("call_id", tracing::field::display(&call_id));
    span.in_scope(|| {
        tracing::debug!(
            outcome = outcome.as_str(),
            status,
            duration_ms,
            "tool call finished"
        );
    });
    CallResult {
        call_id: call_id.into(),
        ok: outcome == Outcome::Success,
        outcome,
        status,
        duration_ms,
        response: response_value,
        content,
        details,
        response_is_content: content_is_response,
    }
}

/// Whether the caller may make this call now: authorized for the tool, and (for the tool calls
/// of a chat turn, which the HTTP layer counted as one request) within its key's rate limit.
fn admitted(state: &Pipeline, req: &CallRequest<'_>) -> Result<(), Box<Draft>> {
    let (Some(caller), Some(tool)) = (req.caller, req.tool) else {
        return Ok(());
    };
    if !caller.may_use_authorized(req.authorized) {
        return Err(Box::new(Draft::refused(
            Outcome::Forbidden,
            format!(
                "You are not allowed to use the tool {tool}. Do not call it again; tell the user this action is not available to them."
            ),
            format!("'{}' is not authorized to use this tool", caller.actor),
            Vec::new(),
            req.arguments.clone(),
        )));
    }
    if req.source == Source::Chat
        && let Some(key) = &caller.key
        && let Some(per_minute) = key.key.rate_limit_per_minute
        && let Err(wait) = state.limits.check(&key.key.id, per_minute)
    {
        let secs = wait.as_secs().max(1);
        return Err(Box::new(Draft::refused(
            Outcome::Forbidden,
            format!(
                "The tool call was not made: the rate limit of this caller is reached. Wait {secs} seconds before calling a tool again, and tell the user there is a short delay."
            ),
            format!("rate limit reached; retry in {secs} s"),
            Vec::new(),
            req.arguments.clone(),
        )));
    }
    Ok(())
}

/// Every secret value the call may need: the shared values of the webhook's secrets, and each
/// per-subject value for the subject the context names (a missing one is left out: resolving
/// then fails the call, never falling back to someone else's value).
async fn open_secrets(
    state: &Pipeline,
    hook: &CompiledWebhook,
    context: &Value,
) -> Result<foldhash::HashMap<String, Arc<str>>, crate::store::StoreError> {
    let mut opened = state.secrets.get_all(&hook.secret_names).await?;
    let subject_fields = hook
        .headers
        .iter()
        .chain(&hook.query)
        .chain(&hook.path)
        .chain(&hook.body);
    for f in subject_fields {
        if let (crate::catalog::FieldSource::Secret(name), Some(path)) = (&f.source, &f.subject)
            && let Ok(subject) = resolve::subject_of(context, path)
            && let Some(v) = state.secrets.get_for(name, &subject).await?
        {
            opened.insert(crate::store::secret_cache::subject_key(name, &subject), v);
        }
    }
    Ok(opened)
}

/// Everything up to sending: admission, arguments, secrets, fields, rendering. A refusal is the
/// finished draft.
async fn prepare(state: &Pipeline, req: &CallRequest<'_>) -> Result<Ready, Box<Draft>> {
    admitted(state, req)?;
    let hook = &req.hook;
    let args = match args::parse_arguments(req.arguments)
        .map_err(|e| vec![e])
        .and_then(|a| args::check_arguments(hook, &a))
    {
        Ok(a) => a,
        Err(details) => {
            return Err(Box::new(Draft::refused(
                Outcome::InvalidArguments,
                result::refusal_content(&details),
                "invalid arguments".into(),
                details,
                req.arguments.clone(),
            )));
        }
    };
    let opened = match open_secrets(state, hook, req.context).await {
        Ok(o) => o,
        Err(e) => {
            let msg = e.to_string();
            return Err(Box::new(Draft::refused(
                Outcome::ConfigError,
                format!(
                    "The tool call was not made: its credentials could not be read ({msg}). Tell the user the action is unavailable right now."
                ),
                msg,
                Vec::new(),
                Value::Object(args),
            )));
        }
    };
    let resolved = resolve::resolve(hook, &args, req.context, &opened);
    // The checked arguments as recorded: `args` itself, no longer needed once resolved.
    let arguments = Value::Object(args);
    let resolved = match resolved {
        Ok(r) => r,
        Err(ResolveError::MissingContext(path)) => {
            let details = vec![FieldError::new(
                format!("context.{path}"),
                "missing context value supplied by the calling application",
            )];
            return Err(Box::new(Draft::refused(
                Outcome::InvalidArguments,
                format!(
                    "The tool call was not made: the application did not supply the context value '{path}'. This is not something the model can fix."
                ),
                format!("missing context value '{path}'"),
                details,
                arguments,
            )));
        }
        Err(ResolveError::BadValue { field, message }) => {
            let details = vec![FieldError::new(field.clone(), message.clone())];
            return Err(Box::new(Draft::refused(
                Outcome::InvalidArguments,
                result::refusal_content(&details),
                format!("{field}: {message}"),
                details,
                arguments,
            )));
        }
        Err(e) => {
            let msg = e.to_string();
            return Err(Box::new(Draft::refused(
                Outcome::ConfigError,
                format!(
                    "The tool call was not made: the tool is misconfigured ({msg}). Tell the user the action is unavailable right now."
                ),
                msg,
                Vec::new(),
                arguments,
            )));
        }
    };
    let redactor = state.redactors.get(&resolved.secrets);
    let prepared = match render::render(hook, &resolved) {
        Ok(p) => p,
        Err(e) => {
            let details = vec![FieldError::new(e.field.clone(), e.message.clone())];
            let mut d = Draft::refused(
                Outcome::InvalidArguments,
                result::refusal_content(&details),
                e.to_string(),
                details,
                arguments,
            );
            d.redactor = redactor;
            return Err(Box::new(d));
        }
    };
    Ok(Ready {
        prepared,
        redactor,
        arguments,
    })
}

/// What a dry run answers: the request exactly as it would be sent (secrets and sensitive
/// context values redacted), or why it would not be sent. Nothing is sent or recorded.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct DryRun {
    /// Always true: nothing was sent.
    pub dry_run: bool,
    /// Whether the request would be sent.
    pub ok: bool,
    /// Why not, when it would not (`invalid_arguments`, `config_error`, `forbidden`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The refusal, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Field problems, when refused for its arguments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
    /// The request that would be sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RecordedRequest>,
    /// The same request as a curl command line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curl: Option<String>,
}

/// Prepare a call as `invoke` would, and show it instead of sending it.
pub async fn dry_run(state: &Pipeline, req: CallRequest<'_>) -> DryRun {
    match prepare(state, &req).await {
        Err(refused) => {
            let r = &refused.redactor;
            DryRun {
                dry_run: true,
                ok: false,
                outcome: Some(refused.outcome),
                content: Some(r.text(&refused.content)),
                details: refused.details.clone(),
                request: None,
                curl: None,
            }
        }
        Ok(ready) => {
            let r = &ready.redactor;
            let p = &ready.prepared;
            let request = RecordedRequest {
                method: p.method.as_str().to_string(),
                url: r.text(p.url.as_str()),
                headers: r.headers(&p.headers),
                body: r.kept_value(&p.recorded_body),
            };
            let body = ready
                .prepared
                .body
                .as_ref()
                .map(|(b, kind)| (r.text(&String::from_utf8_lossy(b)), *kind));
            DryRun {
                dry_run: true,
                ok: true,
                outcome: None,
                content: None,
                details: Vec::new(),
                curl: Some(curl(&request, body.as_ref())),
                request: Some(request),
            }
        }
    }
}

/// A shell-safe curl command line of a (redacted) request.
fn curl(req: &RecordedRequest, body: Option<&(String, &str)>) -> String {
    let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut out = format!("curl -X {} {}", req.method, q(&req.url));
    for (k, v) in &req.headers {
        out.push_str(&format!(" \\\n  -H {}", q(&format!("{k}: {v}"))));
    }
    if let Some((text, kind)) = body {
        if !req
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            out.push_str(&format!(
                " \\\n  -H {}",
                q(&format!("Content-Type: {kind}"))
            ));
        }
        out.push_str(&format!(" \\\n  --data-binary {}", q(text)));
    }
    out
}

/// A call ready to be sent.
struct Ready {
    prepared: render::PreparedRequest,
    redactor: Arc<Redactor>,
    arguments: Value,
}

async fn run(state: &Pipeline, req: &CallRequest<'_>) -> Draft {
    let Ready {
        prepared,
        redactor,
        arguments,
    } = match prepare(state, req).await {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    let spec = &req.hook.webhook.spec;
    let sent = state
        .sender
        .send(
            &prepared,
            Duration::from_millis(spec.timeout_ms),
            spec.retry,
        )
        .await;
    let limit = state.max_response_bytes;
    let (response_value, content, content_is_response) = match result::verbatim_json(
        &sent,
        &spec.response_fields,
        limit,
        state.max_content_bytes,
        &redactor,
    ) {
        Some(text) => (None, text, true),
        None => {
            let body = result::body_value(&sent.body, sent.body_truncated, limit, &redactor);
            let (content, content_is_response) = if sent.outcome == Outcome::Success {
                let (content, whole) = result::success_content(
                    body.whole(),
                    &sent,
                    &spec.response_fields,
                    state.max_content_bytes,
                    &redactor,
                );
                (content, whole && body.whole_is_shown())
            } else {
                (
                    result::failure_content(&sent, spec.timeout_ms, &redactor),
                    false,
                )
            };
            (Some(body.shown), content, content_is_response)
        }
    };
    let error = match sent.outcome {
        Outcome::Success => None,
        Outcome::HttpError => Some(format!(
            "upstream answered HTTP {}",
            sent.status.unwrap_or(0)
        )),
        _ => sent.error.clone(),
    };
    // What was sent, as recorded: moved out of the request, which is no longer needed.
    let request = RecordedRequest {
        method: prepared.method.as_str().to_string(),
        url: prepared.url.into(),
        headers: prepared.headers,
        body: prepared.recorded_body,
    };
    Draft {
        outcome: sent.outcome,
        status: sent.status,
        error,
        arguments,
        request: Some(request),
        response_headers: sent.headers,
        response_value,
        content,
        content_is_response,
        details: Vec::new(),
        attempts: sent.attempts,
        redactor,
    }
}
