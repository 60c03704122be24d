//! The shared store: PostgreSQL, so several toolgate nodes behind one load balancer share one
//! truth. Same semantics as the embedded store, by the same conformance suite; what only a shared
//! store needs lives here too: a change feed (LISTEN/NOTIFY plus a version check, for the nodes
//! that missed a notification), leased delivery claims, an advisory lock around config files and
//! MCP sessions any node can resume. One file per concern.

mod access;
mod definitions;
mod events;
mod history;
mod secrets;
mod sessions;
mod text_types;
mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use tokio::sync::broadcast;

use super::seal::Sealer;
use super::{ConfigLock, Store, StoreChange, StoreError, StoreFuture};
use crate::model::Event;

/// The channel every node listens on.
const CHANNEL: &str = "toolgate_changes";

/// The shortest time a claimed delivery stays with the node that claimed it: long enough for
/// one attempt, short enough that a dead node's deliveries continue within a minute.
pub const MIN_DELIVERY_LEASE: Duration = Duration::from_secs(5);

/// Key of the advisory lock held while config files are applied.
const CONFIG_LOCK_KEY: i64 = 0x746f_6f6c_6761_7465; // "toolgate"

/// The embedded migrations, applied at start under sqlx's advisory lock so nodes starting
/// together neither fail nor race.
fn migrator() -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let m = |version: i64, name: &'static str, sql: &'static str| {
        Migration::new(
            version,
            name.into(),
            MigrationType::Simple,
            sqlx::AssertSqlSafe(sql).into_sql_str(),
            false,
        )
    };
    Migrator::with_migrations(vec![
        m(1, "init", include_str!("migrations/0001_init.sql")),
        m(2, "access", include_str!("migrations/0002_access.sql")),
        m(
            3,
            "secret_values",
            include_str!("migrations/0003_secret_values.sql"),
        ),
        m(
            4,
            "history_upkeep",
            include_str!("migrations/0004_history_upkeep.sql"),
        ),
        m(
            5,
            "history_partitions",
            include_str!("migrations/0005_history_partitions.sql"),
        ),
        m(
            6,
            "history_chunks",
            include_str!("migrations/0006_history_chunks.sql"),
        ),
    ])
}

use sqlx::SqlSafeStr;

/// PostgreSQL-backed [`Store`].
pub struct PgStore {
    pool: PgPool,
    sealer: Sealer,
    /// This process's id in change notifications, so a node ignores its own.
    node: String,
    changes: broadcast::Sender<StoreChange>,
    /// The newest catalog version this node has seen or written.
    version: Arc<AtomicI64>,
    /// How long a claimed delivery is this node's alone.
    lease: Duration,
    stop: tokio_util::sync::CancellationToken,
    /// When this node last applied the history's age limit (ms since the epoch).
    age_checked_ms: AtomicI64,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A sqlx error as a store error: a lost or unreachable database is `Unavailable`, so the API
/// answers 503 and the caller may retry.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => {
            StoreError::Unavailable(format!("the database cannot be reached ({e})"))
        }
        sqlx::Error::Database(d) if d.code().as_deref().is_some_and(|c| c.starts_with("57P")) => {
            // admin_shutdown, crash_shutdown, cannot_connect_now
            StoreError::Unavailable(format!("the database is shutting down ({d})"))
        }
        other => StoreError::Database(other.to_string()),
    }
}

/// Whether `e` is a unique-constraint violation.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

fn decode<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

type Tx = Transaction<'static, Postgres>;

/// End a list query the way every page is read: older than `before`, newest first, at most
/// `limit` (ids are time-ordered).
fn newest_first(q: &mut sqlx::QueryBuilder<Postgres>, before: Option<&str>, limit: usize) {
    if let Some(b) = before {
        q.push(" AND id < ").push_bind(b.to_string());
    }
    q.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
}

impl PgStore {
    /// Bring the database at `url` to schema `version` and no further: how the upgrade from an
    /// older schema, with its data, is tested.
    pub async fn migrate_to(url: &str, version: i64) -> Result<(), StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .map_err(db)?;
        let done = migrator()
            .run_to(version, &pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()));
        pool.close().await;
        done
    }

    /// Connect, apply the migrations, check that `key` opens the stored secrets, and start the
    /// change feed. A claimed delivery is held for three times `attempt_timeout` (30 s by
    /// default), and at least
    /// [`MIN_DELIVERY_LEASE`].
    pub async fn connect(
        url: &str,
        key: &[u8; 32],
        attempt_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("bad database URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // A write while the database is away fails in seconds with a clear 503, not after
            // sqlx's default of 30 s.
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await
            .map_err(db)?;
        migrator()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        let sealer = Sealer::new(key);
        let store = PgStore {
            pool,
            sealer,
            node: crate::model::ids::new_id("node"),
            changes: broadcast::channel(64).0,
            version: Arc::new(AtomicI64::new(0)),
            lease: (attempt_timeout * 3).max(MIN_DELIVERY_LEASE),
            stop: tokio_util::sync::CancellationToken::new(),
            age_checked_ms: AtomicI64::new(i64::MIN),
        };
        store.check_key().await?;
        let version: i64 = sqlx::query_scalar("SELECT version FROM catalog_version")
            .fetch_one(&store.pool)
            .await
            .map_err(db)?;
        store.version.store(version, Ordering::Release);
        watch::start(
            store.pool.clone(),
            store.node.clone(),
            store.changes.clone(),
            store.version.clone(),
            store.stop.clone(),
        );
        Ok(store)
    }

    /// The first node seals a known text with its key; every later node must open it.
    async fn check_key(&self) -> Result<(), StoreError> {
        let probe = self.sealer.seal("toolgate", "key_check")?;
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('key_check', $1) ON CONFLICT DO NOTHING",
        )
        .bind(&probe)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        let stored: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'key_check'")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        self.sealer.open(&stored, "key_check").map(|_| ())
    }

    async fn begin(&self) -> Result<Tx, StoreError> {
        self.pool.begin().await.map_err(db)
    }

    /// Tell the other nodes, when `tx` commits, that `what` changed; and move the catalog
    /// version on, so a node that misses the notification sees it on its next check.
    async fn announce(&self, tx: &mut Tx, what: StoreChange) -> Result<(), StoreError> {
        let version: i64 = sqlx::query_scalar(
            "UPDATE catalog_version SET version = version + 1 RETURNING version",
        )
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
        let kind = match what {
            StoreChange::Definitions => "definitions",
            StoreChange::Secrets => "secrets",
        };
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("{}:{kind}", self.node))
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        // Our own change needs no reload here; a version we skipped over (another node's)
        // still shows as a gap and is picked up by the version check.
        let _ = self.version.compare_exchange(
            version - 1,
            version,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        Ok(())
    }

    /// Put an event in the outbox inside `tx`, only when someone subscribes.
    async fn emit(&self, tx: &mut Tx, event: &Event) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO outbox (doc) SELECT $1 WHERE EXISTS (SELECT 1 FROM subscriptions)",
        )
        .bind(encode(event)?)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn commit(tx: Tx) -> Result<(), StoreError> {
        tx.commit().await.map_err(db)
    }
}

/// Holds the config-files advisory lock: a transaction-level lock, released when the
/// transaction ends (rolled back on drop).
struct ConfigLockGuard(#[allow(dead_code)] Tx);

impl Store for PgStore {
    fn flush(&self) -> StoreFuture<'_, ()> {
        // Every acknowledged write is a committed transaction.
        Box::pin(async { Ok(()) })
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn check(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    fn changes(&self) -> Option<broadcast::Receiver<StoreChange>> {
        Some(self.changes.subscribe())
    }

    fn config_lock(&self) -> StoreFuture<'_, Option<ConfigLock>> {
        Box::pin(async move {
            let mut tx = self.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(CONFIG_LOCK_KEY)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            Ok(Some(Box::new(ConfigLockGuard(tx)) as ConfigLock))
        })
    }

    fn mcp_sessions(
        &self,
    ) -> Option<Arc<dyn rmcp::transport::streamable_http_server::session::SessionStore>> {
        Some(Arc::new(sessions::PgSessions::new(self.pool.clone())))
    }
}

/// Now, in Unix milliseconds, as PostgreSQL's `bigint` columns hold it.
fn now_ms() -> i64 {
    i64::try_from(crate::model::now_ms()).unwrap_or(i64::MAX)
}
