//! toolgate: an AI-agent tool-calling gateway. Register each HTTP API call once as a webhook,
//! link it to a tool, and let models call it safely through one validated, audited pipeline.
#![deny(missing_docs)]

pub mod access;
pub mod agent;
pub mod allocator;
pub mod api;
pub mod busy_poll;
pub mod call;
pub mod catalog;
pub mod chat_cli;
pub mod config;
pub mod console;
pub mod definitions;
pub mod demo_api;
pub mod error;
pub mod events;
pub mod files;
pub mod history;
pub mod listener;
pub mod mcp;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod redact;
pub mod retry;
pub mod schema;
pub mod search;
pub mod serving;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use axum::Router;

use crate::call::policy::NetworkPolicy;
use crate::call::send::Sender;
use crate::catalog::Catalog;
use crate::config::ServeConfig;
use crate::history::Recorder;
use crate::metrics::Metrics;
use crate::store::{SledStore, Store, StoreError};

/// Shared state of a running gateway: one `Arc`, so the clone every request's handler takes is
/// one reference count (cloning each part's own `Arc`, and the shutdown token's tree lock, cost
/// about 2 % of a tool call's CPU).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// What `AppState` shares.
pub struct AppParts {
    /// Settings.
    pub config: Arc<ServeConfig>,
    /// Persistence.
    pub store: Arc<dyn Store>,
    /// Compiled tools.
    pub catalog: Arc<Catalog>,
    /// Outbound HTTP.
    pub sender: Arc<Sender>,
    /// What tool calls run through (the same sender, recorder and counters, and the limits).
    pub pipeline: Arc<call::Pipeline>,
    /// History writer.
    pub recorder: Arc<Recorder>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The model endpoint.
    pub llm: Arc<agent::Llm>,
    /// Outbound event settings and the worker's wake-up.
    pub events: Arc<EventSettings>,
    /// Cancelled at shutdown, to end long-lived MCP streams.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Every API key (hashes), for authentication.
    pub keys: Arc<access::keys::Keys>,
    /// The cap on open client connections, and how many are open.
    pub admission: Arc<serving::Admission>,
}

impl AppParts {
    /// The definitions service over this gateway's store and catalog.
    pub fn definitions(&self) -> definitions::Definitions<'_> {
        definitions::Definitions {
            store: self.store.as_ref(),
            catalog: &self.catalog,
            prompts_dir: &self.config.prompts_dir,
        }
    }
}

/// Outbound event delivery settings.
pub struct EventSettings {
    /// Delay before each attempt (the first is usually zero).
    pub schedule: Vec<std::time::Duration>,
    /// Timeout of one delivery attempt.
    pub timeout: std::time::Duration,
    /// Wakes the delivery worker.
    pub wake: Arc<tokio::sync::Notify>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad settings.
    #[error("{0}")]
    Config(String),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `tools/` or `prompts/` has broken files; one `file: field: message` line each.
    #[error("config files have errors:\n{}", .0.join("\n"))]
    Files(Vec<String>),
    /// Socket or file error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Prefix of environment variables that provide secret values at start.
pub const SECRET_ENV_PREFIX: &str = "TOOLGATE_SECRET_";

async fn apply_env_secrets(store: &dyn Store) -> Result<(), StartError> {
    let vars: Vec<(String, String)> = std::env::vars().collect();
    for (k, v) in vars {
        let Some(rest) = k.strip_prefix(SECRET_ENV_PREFIX) else {
            continue;
        };
        let name = match crate::model::SecretName::parse(rest.to_ascii_lowercase()) {
            Ok(name) if !v.is_empty() => name,
            _ => {
                return Err(StartError::Config(format!(
                    "{k}: not a valid secret name or empty value"
                )));
            }
        };
        store.upsert_secret(&name, &v).await?;
        tracing::info!(secret = %name, "secret set from environment");
    }
    Ok(())
}

/// Open the store, apply env secrets and `tools/`, compile the catalog, start the history writer.
pub async fn build_state(config: ServeConfig) -> Result<AppState, StartError> {
    let policy = NetworkPolicy::parse(&config.allow_hosts)
        .map_err(StartError::Config)?
        .only_allowed(config.egress_only_allowed);
    let key_env = std::env::var(store::seal::MASTER_KEY_ENV).ok();
    let key =
        store::seal::load_or_create_key(&config.data_dir, key_env.as_deref()).or_else(|e| {
            if matches!(e, StoreError::Io(_)) {
                std::fs::create_dir_all(&config.data_dir)?;
                store::seal::load_or_create_key(&config.data_dir, key_env.as_deref())
            } else {
                Err(e)
            }
        })?;
    let store: Arc<dyn Store> = match &config.database_url {
        Some(url) => Arc::new(
            store::PgStore::connect(
                url,
                &key,
                std::time::Duration::from_millis(config.event_timeout_ms.max(1)),
            )
            .await?,
        ),
        None => Arc::new(SledStore::open(&config.data_dir, &key)?),
    };
    apply_env_secrets(store.as_ref()).await?;
    let catalog = Arc::new(Catalog::default());
    catalog.load_all(store.as_ref()).await?;
    let defs = definitions::Definitions {
        store: store.as_ref(),
        catalog: &catalog,
        prompts_dir: &config.prompts_dir,
    };
    let synced = files::sync::sync(
        &defs,
        &[config.tools_dir.as_path(), config.prompts_dir.as_path()],
    )
    .await;
    if !synced.errors.is_empty() {
        return Err(StartError::Files(synced.errors));
    }
    let read_cap = config.max_response_bytes.max(4 * 1024 * 1024);
    let sender = Arc::new(Sender::new(policy, read_cap).map_err(StartError::Config)?);
    let max_age = config.history_max_age_days.saturating_mul(86_400);
    let recorder = Arc::new(Recorder::start(
        store.clone(),
        config.history_queue_records,
        config.history_max_records,
        max_age,
        std::time::Duration::from_millis(config.history_linger_ms),
        !config.history_writer_normal_priority,
    )?);
    let events_settings = EventSettings {
        schedule: events::parse_schedule(&config.event_retry_schedule)
            .map_err(StartError::Config)?,
        timeout: std::time::Duration::from_millis(config.event_timeout_ms.max(1)),
        wake: Arc::new(tokio::sync::Notify::new()),
    };
    let llm = agent::Llm::new(
        &config.llm_base_url,
        config.llm_api_key.as_deref(),
        &config.llm_model,
        std::time::Duration::from_secs(config.llm_timeout_secs.max(1)),
        config.llm_max_retries,
    )
    .map_err(StartError::Config)?;
    let metrics = Arc::new(Metrics::default());
    let pipeline = Arc::new(call::Pipeline {
        secrets: Arc::new(store::secret_cache::SecretCache::new(store.clone())),
        sender: sender.clone(),
        recorder: (!config.no_history).then(|| recorder.clone()),
        metrics: metrics.clone(),
        max_response_bytes: config.max_response_bytes,
        max_content_bytes: config.max_content_bytes,
        redactors: Default::default(),
        limits: Default::default(),
    });
    let keys = Arc::new(access::keys::Keys::default());
    keys.reload(store.as_ref()).await?;
    let admission = serving::Admission::new(config.max_client_connections);
    let state = AppState(Arc::new(AppParts {
        config: Arc::new(config),
        store,
        catalog,
        sender,
        pipeline,
        recorder,
        metrics,
        llm: Arc::new(llm),
        shutdown: tokio_util::sync::CancellationToken::new(),
        events: Arc::new(events_settings),
        keys,
        admission,
    }));
    follow_store_changes(&state);
    Ok(state)
}

/// Apply what other nodes change through a shared store: rebuild the catalog (which tells MCP
/// sessions the tool list changed) or forget opened secrets. Nothing to do for sled.
fn follow_store_changes(state: &AppState) {
    let Some(mut changes) = state.store.changes() else {
        return;
    };
    let state = state.clone();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let change = tokio::select! {
                _ = state.shutdown.cancelled() => return,
                c = changes.recv() => c,
            };
            let reload_all = match change {
                Ok(store::StoreChange::Secrets) => {
                    state.pipeline.forget_secrets();
                    continue;
                }
                Ok(store::StoreChange::Definitions) => {
                    // Keys are announced as definitions: a key revoked on another node is
                    // refused here on its next request.
                    if let Err(e) = state.keys.reload(state.store.as_ref()).await {
                        tracing::warn!(error = %e, "key reload after another node's change failed");
                    }
                    false
                }
                // Missed some: do everything.
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            };
            if reload_all {
                state.pipeline.forget_secrets();
                let _ = state.keys.reload(state.store.as_ref()).await;
            }
            // A store that is away now is retried until it answers: the change is not
            // announced again.
            while let Err(e) = state.catalog.load_all(state.store.as_ref()).await {
                tracing::warn!(error = %e, "catalog reload after another node's change failed; retrying");
                tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
            tracing::debug!("catalog reloaded after another node's change");
        }
    });
}

/// The HTTP application.
pub fn app(state: AppState) -> Router {
    api::router(state)
}

/// Serve on `listener` until `shutdown` resolves, then drain history and flush the store.
/// When it returns, the serving threads and history threads have ended and let go of the store
/// (another process, or `run` again, can open the same data dir at once).
pub async fn run(
    config: ServeConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let mut checked = config.clone();
    checked.listen = listener.local_addr()?;
    checked.check().map_err(StartError::Config)?;
    let state = build_state(config).await?;
    tracing::info!(listen = %checked.listen, tools = state.catalog.snapshot().tools.len(), "toolgate listening");
    let worker = events::worker::start(state.clone(), state.events.wake.clone());
    let watcher = files::watch::start(state.clone());
    let front = api::front::Front::new(state.clone(), app(state.clone()));
    let cancel = state.shutdown.clone();
    // Cancelling ends MCP streams and the delivery worker, so shutdown does not wait on them.
    tokio::spawn(async move {
        shutdown.await;
        cancel.cancel();
    });
    let settings = serving::Settings {
        threads: serving::thread_count(state.config.http_threads),
        busy_poll: std::time::Duration::from_micros(state.config.busy_poll_us),
        header_timeout: std::time::Duration::from_secs(state.config.client_timeout_secs),
        admission: state.admission.clone(),
    };
    let served = serving::serve(listener, front, settings, state.shutdown.clone()).await;
    state.shutdown.cancel();
    let _ = worker.await;
    if let Some(w) = watcher {
        let _ = w.await;
    }
    served?;
    state.recorder.close().await;
    state.store.flush().await?;
    Ok(())
}
