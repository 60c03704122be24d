//! Settings for `serve`: flags, then `TOOLGATE_*` environment variables, then defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// Every default, in one place: the CLI's and `ServeConfig::with_data_dir`'s.
pub mod defaults {
    /// Default of `--listen`.
    pub const LISTEN: &str = "127.0.0.1:8080";
    /// Default of `--data-dir`.
    pub const DATA_DIR: &str = "./data";
    /// Default of `--tools-dir`.
    pub const TOOLS_DIR: &str = "./tools";
    /// Default of `--prompts-dir`.
    pub const PROMPTS_DIR: &str = "./prompts";
    /// Default of `--max-body-bytes`.
    pub const MAX_BODY_BYTES: usize = 1024 * 1024;
    /// Default of `--max-response-bytes`.
    pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
    /// Default of `--max-content-bytes`.
    pub const MAX_CONTENT_BYTES: usize = 16 * 1024;
    /// Default of `--history-max-records`.
    pub const HISTORY_MAX_RECORDS: usize = 1_000_000;
    /// Default of `--history-max-age-days`.
    pub const HISTORY_MAX_AGE_DAYS: u64 = 30;
    /// Default of `--history-linger-ms`: the longest linger (`history::LINGER`).
    pub const HISTORY_LINGER_MS: u64 = 50;
    /// Default of `--history-queue-records`.
    pub const HISTORY_QUEUE_RECORDS: usize = 4096;
    /// Bounds of `--history-queue-records`.
    pub const HISTORY_QUEUE_RECORDS_RANGE: std::ops::RangeInclusive<usize> = 64..=1_048_576;
    /// Default of `--llm-base-url`.
    pub const LLM_BASE_URL: &str = "https://api.openai.com/v1";
    /// Default of `--llm-model`.
    pub const LLM_MODEL: &str = "gpt-4o-mini";
    /// Default of `--llm-timeout-secs`.
    pub const LLM_TIMEOUT_SECS: u64 = 120;
    /// Default of `--llm-max-retries`.
    pub const LLM_MAX_RETRIES: u32 = 3;
    /// Default of `--event-retry-schedule`.
    pub const EVENT_RETRY_SCHEDULE: &str = "0s,5s,5m,30m,2h,5h,10h";
    /// Default of `--event-timeout-ms`.
    pub const EVENT_TIMEOUT_MS: u64 = 10_000;
    /// Default of `--tool-concurrency`.
    pub const TOOL_CONCURRENCY: usize = 4;
    /// Default of `--http-threads` (0: one per core).
    pub const HTTP_THREADS: usize = 0;
    /// Default of `--busy-poll-us`.
    pub const BUSY_POLL_US: u64 = 100;
    /// Default of `--client-timeout-secs`.
    pub const CLIENT_TIMEOUT_SECS: u64 = 30;
    /// Longest `--client-timeout-secs`.
    pub const CLIENT_TIMEOUT_MAX_SECS: u64 = 3600;
    /// Default of `--max-client-connections` (0: derived from the open-file limit).
    pub const MAX_CLIENT_CONNECTIONS: usize = 0;
}

/// Everything `toolgate serve` can be told.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on. Without an admin token only loopback addresses are accepted.
    #[arg(long, env = "TOOLGATE_LISTEN", default_value = defaults::LISTEN)]
    pub listen: SocketAddr,
    /// Directory of the embedded store and master key.
    #[arg(long, env = "TOOLGATE_DATA_DIR", default_value = defaults::DATA_DIR)]
    pub data_dir: PathBuf,
    /// PostgreSQL URL (`postgres://user@host:5432/db`): use the shared store instead of the
    /// embedded one, so several nodes serve one set of definitions. Every node must share
    /// TOOLGATE_MASTER_KEY.
    #[arg(long, env = "TOOLGATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Config-as-code tool definitions (*.toml), loaded at start.
    #[arg(long, env = "TOOLGATE_TOOLS_DIR", default_value = defaults::TOOLS_DIR)]
    pub tools_dir: PathBuf,
    /// Prompt files for agents.
    #[arg(long, env = "TOOLGATE_PROMPTS_DIR", default_value = defaults::PROMPTS_DIR)]
    pub prompts_dir: PathBuf,
    /// Bearer token required on every /v1 route.
    #[arg(long, env = "TOOLGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Bearer token required by MCP over HTTP (`/mcp`); the admin token when unset.
    #[arg(long, env = "TOOLGATE_MCP_TOKEN", hide_env_values = true)]
    pub mcp_token: Option<String>,
    /// Destinations exempt from the network policy: host names, IPs or CIDRs, comma-separated.
    #[arg(long, env = "TOOLGATE_ALLOW_HOSTS", value_delimiter = ',')]
    pub allow_hosts: Vec<String>,
    /// Reach only the --allow-hosts destinations: public ones are blocked too (sandboxes,
    /// locked-down deployments, fuzzing).
    #[arg(long, env = "TOOLGATE_EGRESS_ONLY_ALLOWED")]
    pub egress_only_allowed: bool,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "TOOLGATE_MAX_BODY_BYTES", default_value_t = defaults::MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Upstream response size kept in call results and history.
    #[arg(long, env = "TOOLGATE_MAX_RESPONSE_BYTES", default_value_t = defaults::MAX_RESPONSE_BYTES)]
    pub max_response_bytes: usize,
    /// Size of the text handed back to the model (`content`).
    #[arg(long, env = "TOOLGATE_MAX_CONTENT_BYTES", default_value_t = defaults::MAX_CONTENT_BYTES)]
    pub max_content_bytes: usize,
    /// Do not record calls in the history (benchmarks; events about calls need history).
    #[arg(long, env = "TOOLGATE_NO_HISTORY")]
    pub no_history: bool,
    /// History retention: most records kept (0 = unlimited).
    #[arg(
        long,
        env = "TOOLGATE_HISTORY_MAX_RECORDS",
        default_value_t = defaults::HISTORY_MAX_RECORDS
    )]
    pub history_max_records: usize,
    /// History retention: oldest record kept, in days (0 = unlimited).
    #[arg(long, env = "TOOLGATE_HISTORY_MAX_AGE_DAYS", default_value_t = defaults::HISTORY_MAX_AGE_DAYS)]
    pub history_max_age_days: u64,
    /// How long a lightly loaded gateway gathers call records before it writes them, in
    /// milliseconds (1 to 50). Under load a batch is written when it holds 1,024 records, at most
    /// 50 ms after its first, whatever this says; lower values write smaller batches more often.
    #[arg(long, env = "TOOLGATE_HISTORY_LINGER_MS", default_value_t = defaults::HISTORY_LINGER_MS)]
    pub history_linger_ms: u64,
    /// Call records queued for the history writer before calls wait for room (64 to 1048576).
    /// The queue covers the store's stalls: at 40,000 calls a second the default holds about
    /// 100 ms of calls; a disk whose syncs stall longer makes calls wait (counted in
    /// `toolgate_history_room_waits_total`). A larger queue holds more memory while it is full
    /// (a record keeps up to --max-response-bytes of the response), and a `kill -9` loses what
    /// it holds.
    #[arg(
        long,
        env = "TOOLGATE_HISTORY_QUEUE_RECORDS",
        default_value_t = defaults::HISTORY_QUEUE_RECORDS
    )]
    pub history_queue_records: usize,
    /// Run the history writer at the serving threads' priority instead of Linux's idle class.
    /// The idle class keeps its batches from delaying calls; on a host whose CPUs other work
    /// keeps busy, a guard thread writes in its place, with an occasional stall of tens of
    /// milliseconds as it steps in. Setting this avoids that stall, and lets the writer's
    /// batches delay calls at low load again.
    #[arg(long, env = "TOOLGATE_HISTORY_WRITER_NORMAL_PRIORITY")]
    pub history_writer_normal_priority: bool,
    /// Base URL of the OpenAI-compatible model endpoint (OpenAI, vLLM, Ollama, llama.cpp…).
    #[arg(
        long,
        env = "TOOLGATE_LLM_BASE_URL",
        default_value = defaults::LLM_BASE_URL
    )]
    pub llm_base_url: String,
    /// API key for the model endpoint.
    #[arg(long, env = "TOOLGATE_LLM_API_KEY", hide_env_values = true)]
    pub llm_api_key: Option<String>,
    /// Model used by agents that name none.
    #[arg(long, env = "TOOLGATE_LLM_MODEL", default_value = defaults::LLM_MODEL)]
    pub llm_model: String,
    /// Timeout of one model request, in seconds.
    #[arg(long, env = "TOOLGATE_LLM_TIMEOUT_SECS", default_value_t = defaults::LLM_TIMEOUT_SECS)]
    pub llm_timeout_secs: u64,
    /// Retries of a model request on 429, 5xx or connection errors (jittered backoff).
    #[arg(long, env = "TOOLGATE_LLM_MAX_RETRIES", default_value_t = defaults::LLM_MAX_RETRIES)]
    pub llm_max_retries: u32,
    /// Delays before each event delivery attempt (ms, s, m, h), comma-separated.
    #[arg(
        long,
        env = "TOOLGATE_EVENT_RETRY_SCHEDULE",
        default_value = defaults::EVENT_RETRY_SCHEDULE
    )]
    pub event_retry_schedule: String,
    /// Timeout of one event delivery attempt, in milliseconds.
    #[arg(long, env = "TOOLGATE_EVENT_TIMEOUT_MS", default_value_t = defaults::EVENT_TIMEOUT_MS)]
    pub event_timeout_ms: u64,
    /// Tool calls of one model turn run at most this many at a time.
    #[arg(long, env = "TOOLGATE_TOOL_CONCURRENCY", default_value_t = defaults::TOOL_CONCURRENCY)]
    pub tool_concurrency: usize,
    /// Threads serving HTTP, each running its own connections start to finish (0: one per
    /// core). A request never hops between threads on its way through.
    #[arg(long, env = "TOOLGATE_HTTP_THREADS", default_value_t = defaults::HTTP_THREADS)]
    pub http_threads: usize,
    /// After each request a serving thread keeps polling its sockets for this many
    /// microseconds before it sleeps, so the upstream's answer and the caller's next request
    /// find it awake (0: sleep at once). Only while it has at most one call in flight and its
    /// requests begin and end on average less than twice this apart: sparse calls and slow
    /// upstreams are not polled for.
    #[arg(long, env = "TOOLGATE_BUSY_POLL_US", default_value_t = defaults::BUSY_POLL_US)]
    pub busy_poll_us: u64,
    /// Seconds a client has to send a request (1 to 3600): its head, counted from when the
    /// gateway starts waiting for it (on a kept-alive connection from the previous answer, so
    /// this is also how long an idle connection stays open), then its body, counted from when
    /// the gateway first waits for it. A head too slow: disconnected; a body: answered 408.
    #[arg(
        long,
        env = "TOOLGATE_CLIENT_TIMEOUT_SECS",
        default_value_t = defaults::CLIENT_TIMEOUT_SECS
    )]
    pub client_timeout_secs: u64,
    /// Most client connections open at once; while that many are, new ones wait in the listen
    /// backlog (0: half of what the process's open-file limit, raised to its hard limit, leaves
    /// after 256, since a call in flight holds an upstream connection too).
    #[arg(
        long,
        env = "TOOLGATE_MAX_CLIENT_CONNECTIONS",
        default_value_t = defaults::MAX_CLIENT_CONNECTIONS
    )]
    pub max_client_connections: usize,
}

impl ServeConfig {
    /// Defaults for a data dir, as the CLI would produce with no flags (tests and embedding).
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            database_url: None,
            tools_dir: PathBuf::from(defaults::TOOLS_DIR),
            prompts_dir: PathBuf::from(defaults::PROMPTS_DIR),
            admin_token: None,
            mcp_token: None,
            allow_hosts: Vec::new(),
            egress_only_allowed: false,
            max_body_bytes: defaults::MAX_BODY_BYTES,
            max_response_bytes: defaults::MAX_RESPONSE_BYTES,
            max_content_bytes: defaults::MAX_CONTENT_BYTES,
            no_history: false,
            history_max_records: defaults::HISTORY_MAX_RECORDS,
            history_max_age_days: defaults::HISTORY_MAX_AGE_DAYS,
            history_linger_ms: defaults::HISTORY_LINGER_MS,
            history_queue_records: defaults::HISTORY_QUEUE_RECORDS,
            history_writer_normal_priority: false,
            llm_base_url: defaults::LLM_BASE_URL.into(),
            llm_api_key: None,
            llm_model: defaults::LLM_MODEL.into(),
            llm_timeout_secs: defaults::LLM_TIMEOUT_SECS,
            llm_max_retries: defaults::LLM_MAX_RETRIES,
            tool_concurrency: defaults::TOOL_CONCURRENCY,
            http_threads: defaults::HTTP_THREADS,
            busy_poll_us: defaults::BUSY_POLL_US,
            client_timeout_secs: defaults::CLIENT_TIMEOUT_SECS,
            max_client_connections: defaults::MAX_CLIENT_CONNECTIONS,
            event_retry_schedule: defaults::EVENT_RETRY_SCHEDULE.into(),
            event_timeout_ms: defaults::EVENT_TIMEOUT_MS,
        }
    }

    /// Refuse settings that would be unsafe: an unauthenticated admin API off loopback.
    pub fn check(&self) -> Result<(), String> {
        if self.admin_token.as_deref().is_some_and(str::is_empty) {
            return Err("--admin-token must not be empty".into());
        }
        if self.admin_token.is_none() && !self.listen.ip().is_loopback() {
            return Err(format!(
                "refusing to listen on {} without an admin token: set --admin-token / TOOLGATE_ADMIN_TOKEN, or listen on loopback",
                self.listen
            ));
        }
        let longest = crate::history::LINGER.as_millis();
        if self.history_linger_ms == 0 || u128::from(self.history_linger_ms) > longest {
            return Err(format!(
                "--history-linger-ms {} is outside 1 to {longest}: a batch is written at most {longest} ms after its first record",
                self.history_linger_ms
            ));
        }
        if self.busy_poll_us > crate::busy_poll::MAX_BUDGET_US {
            return Err(format!(
                "--busy-poll-us {} is above the {} µs a poll can usefully last: past that a sleep is cheaper",
                self.busy_poll_us,
                crate::busy_poll::MAX_BUDGET_US
            ));
        }
        if !defaults::HISTORY_QUEUE_RECORDS_RANGE.contains(&self.history_queue_records) {
            return Err(format!(
                "--history-queue-records {} is outside {} to {}",
                self.history_queue_records,
                defaults::HISTORY_QUEUE_RECORDS_RANGE.start(),
                defaults::HISTORY_QUEUE_RECORDS_RANGE.end()
            ));
        }
        let most = defaults::CLIENT_TIMEOUT_MAX_SECS;
        if self.client_timeout_secs == 0 || self.client_timeout_secs > most {
            return Err(format!(
                "--client-timeout-secs {} is outside 1 to {most}: without it a client could hold a connection open forever",
                self.client_timeout_secs
            ));
        }
        Ok(())
    }
}
