//! The model client: async-openai pointed at any OpenAI-compatible base URL, with bounded,
//! jittered retries on 429, 5xx and connection errors.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use serde_json::Value;

/// Why the model could not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// Unreachable, overloaded or failing after every retry.
    #[error("the model endpoint is unavailable: {0}")]
    Unavailable(String),
    /// The endpoint refused the request (4xx other than 429).
    #[error("the model endpoint rejected the request: {0}")]
    Rejected(String),
    /// The answer was not a chat completion.
    #[error("the model endpoint returned an unexpected response: {0}")]
    BadResponse(String),
}

/// tower service that sends a request with bounded, jittered retries.
#[derive(Clone)]
struct JitteredRetry {
    http: reqwest::Client,
    max_retries: u32,
}

impl tower::Service<HttpRequestFactory> for JitteredRetry {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), OpenAIError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let mut attempt = 0;
            loop {
                let request = factory.build().await?;
                let result = this.http.execute(request).await;
                let (retryable, retry_after) = match &result {
                    Ok(r) => (
                        r.status().as_u16() == 429 || r.status().is_server_error(),
                        r.headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| {
                                crate::retry::parse_retry_after(v, Duration::from_secs(30))
                            }),
                    ),
                    Err(e) => (e.is_connect() || e.is_timeout(), None),
                };
                if !retryable || attempt >= this.max_retries {
                    return result.map_err(|e| OpenAIError::Reqwest(e.without_url()));
                }
                let delay = retry_after.unwrap_or_else(|| {
                    crate::retry::backoff(
                        attempt + 1,
                        Duration::from_millis(200),
                        Duration::from_secs(5),
                    )
                });
                tracing::warn!(
                    attempt = attempt + 1,
                    delay_ms = delay.as_millis() as u64,
                    "model request failed; retrying"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        })
    }
}

/// A client for one OpenAI-compatible endpoint.
pub struct Llm {
    client: Client<OpenAIConfig>,
    /// Model used when an agent names none.
    pub default_model: String,
}

impl Llm {
    /// Client for `base_url` (e.g. `https://api.openai.com/v1`, `http://localhost:11434/v1`).
    pub fn new(
        base_url: &str,
        api_key: Option<&str>,
        default_model: &str,
        timeout: Duration,
        max_retries: u32,
    ) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the model HTTP client: {e}"))?;
        let config = OpenAIConfig::new()
            .with_api_base(base_url.trim_end_matches('/'))
            .with_api_key(api_key.unwrap_or(""));
        let client =
            Client::with_config(config).with_http_service(JitteredRetry { http, max_retries });
        Ok(Llm {
            client,
            default_model: default_model.to_string(),
        })
    }

    /// One non-streaming chat completion; `request` is the OpenAI request body.
    pub async fn chat(&self, mut request: Value) -> Result<Value, LlmError> {
        request["stream"] = Value::Bool(false);
        let response: Value = self
            .client
            .chat()
            .create_byot(request)
            .await
            .map_err(map_error)?;
        if response["choices"]
            .get(0)
            .and_then(|c| c.get("message"))
            .is_none_or(|m| !m.is_object())
        {
            return Err(LlmError::BadResponse("no choices[0].message".into()));
        }
        Ok(response)
    }
}

fn map_error(e: OpenAIError) -> LlmError {
    match e {
        OpenAIError::ApiError(api) => {
            let status = api.status_code.as_u16();
            let message: String = api.api_error.message.chars().take(300).collect();
            if status == 429 || status >= 500 {
                LlmError::Unavailable(format!("HTTP {status}: {message}"))
            } else {
                LlmError::Rejected(format!("HTTP {status}: {message}"))
            }
        }
        OpenAIError::Reqwest(e) => {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            LlmError::Unavailable(kind.to_string())
        }
        OpenAIError::JSONDeserialize(e, _) => LlmError::BadResponse(e.to_string()),
        other => LlmError::BadResponse(other.to_string()),
    }
}
