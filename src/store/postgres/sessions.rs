//! MCP sessions in the database: after a client's `initialize` on one node, any node can serve
//! the session's next request (rmcp replays the handshake from the stored parameters), so MCP
//! over HTTP works behind a round-robin load balancer without sticky sessions.

use rmcp::transport::streamable_http_server::session::{
    SessionState, SessionStore, SessionStoreError,
};
use sqlx::postgres::PgPool;

/// Sessions older than this are dropped when a new one is stored.
const SESSION_TTL_MS: i64 = 24 * 3600 * 1000;

/// [`SessionStore`] over the `mcp_sessions` table.
pub struct PgSessions {
    pool: PgPool,
}

impl PgSessions {
    /// Sessions kept in `pool`'s database.
    pub fn new(pool: PgPool) -> Self {
        PgSessions { pool }
    }
}

#[async_trait::async_trait]
impl SessionStore for PgSessions {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT state FROM mcp_sessions WHERE id = $1")
                .bind(session_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match text {
            Some(t) => Some(serde_json::from_str(&t)?),
            None => None,
        })
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let now = super::now_ms();
        sqlx::query(
            "INSERT INTO mcp_sessions (id, state, updated_ms) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET state = $2, updated_ms = $3",
        )
        .bind(session_id)
        .bind(serde_json::to_string(state)?)
        .bind(now)
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM mcp_sessions WHERE updated_ms < $1")
            .bind(now - SESSION_TTL_MS)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        sqlx::query("DELETE FROM mcp_sessions WHERE id = $1")
            .bind(session_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
