//! A throwaway PostgreSQL database per test, on the server `TOOLGATE_TEST_DATABASE_URL` names
//! (default `postgres://postgres@127.0.0.1:5432/postgres`). Created fresh, dropped (with its
//! connections) when the guard goes, so tests run in parallel and leave nothing behind. No
//! server is a failure with what to start, never a skip.

use sqlx::Connection;

/// The server tests use, as an admin URL.
pub fn admin_url() -> String {
    std::env::var("TOOLGATE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that exists for one test.
pub struct TestDb {
    /// Its URL.
    pub url: String,
    name: String,
}

fn with_database(admin: &str, name: &str) -> String {
    match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => format!("{admin}/{name}"),
    }
}

impl TestDb {
    /// Create a fresh, empty database.
    pub async fn create() -> TestDb {
        let admin = admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is needed for this test and does not answer at {admin} ({e}). Start it \
                 (`pg_ctlcluster 15 main start`) or point TOOLGATE_TEST_DATABASE_URL at one."
            )
        });
        let name = format!("tg_test_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let _ = conn.close().await;
        TestDb {
            url: with_database(&admin, &name),
            name,
        }
    }

    /// The URL with another host and port (through a proxy, say).
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        let admin = admin_url();
        let user = admin
            .strip_prefix("postgres://")
            .and_then(|r| r.split_once('@'))
            .map(|(u, _)| u.to_string())
            .unwrap_or_else(|| "postgres".into());
        format!("postgres://{user}@{addr}/{}", self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime; a thread of its own can block on a new one.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}
