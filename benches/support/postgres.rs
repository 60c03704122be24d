//! The PostgreSQL store against the embedded one: invoke throughput and latency over the same
//! nginx upstream (history on), then `GET /v1/calls` pages with a million history rows.
//! `benches/run.sh postgres` (BENCH_DATABASE_URL, default the local server's `postgres`
//! database; BENCH_PG_CALLS, default 1,000,000). The database it creates is dropped at the end.

use super::*;
use sqlx::Connection;

/// Bytes on disk of the history with its indexes: the sum over its partitions.
const CALLS_BYTES: &str = "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint \
     FROM pg_inherits WHERE inhparent IN ('calls'::regclass, 'call_chunks'::regclass)";

/// A database created for one benchmark part and dropped after it.
pub struct Db {
    admin: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl Db {
    /// A fresh database on the benchmark's server.
    pub async fn create() -> Db {
        let admin = std::env::var("BENCH_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL does not answer at {admin}: {e}"));
        let name = format!("tg_bench_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => format!("{admin}/{name}"),
        };
        Db { admin, name, url }
    }

    /// Size of the history table with its indexes, in bytes.
    pub async fn calls_bytes(&self) -> u64 {
        let Ok(mut conn) = sqlx::PgConnection::connect(&self.url).await else {
            return 0;
        };
        let n: i64 = sqlx::query_scalar(CALLS_BYTES)
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0);
        let _ = conn.close().await;
        n as u64
    }

    /// Drop the database.
    pub async fn drop_it(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// Run both parts and return the report section.
pub async fn run(tmp: &Path, client: &reqwest::Client) -> String {
    let db = Db::create().await;
    let mut out = String::from("### PostgreSQL store vs sled\n\n");
    let (_upstream, up_port) = upstream(tmp, "pg-upstream");
    let script = invoke_script(tmp);
    out.push_str("| store | conns | req/s | p50 | p99 | errors |\n|---|---|---|---|---|---|\n");
    let direct = wrk(
        &format!("http://127.0.0.1:{up_port}/api/orders/A-1001?format=json"),
        1,
        None,
    );
    out.push_str(&format!(
        "| direct (nginx upstream) | 1 | {:.0} | {:.0} µs | {:.0} µs | {} |\n",
        direct.rps, direct.p50_us, direct.p99_us, direct.errors
    ));
    for (label, dir, extra) in [
        ("sled", "data-pg-sled", vec![]),
        (
            "postgres",
            "data-pg",
            vec!["--database-url".to_string(), db.url.clone()],
        ),
    ] {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let (gw, _) = start_toolgate(&tmp.join(dir), &extra);
        setup_tool(client, &gw.base, up_port).await;
        for conns in [1u32, 32] {
            let r = wrk(
                &format!("{}/v1/tools/bench_order/invoke", gw.base),
                conns,
                Some(&script),
            );
            out.push_str(&format!(
                "| toolgate invoke, {label}, history on | {conns} | {:.0} | {:.0} µs | {:.0} µs | {} |\n",
                r.rps, r.p50_us, r.p99_us, r.errors
            ));
        }
    }

    // The history part on a database of its own (the node above sealed its key check in the
    // first one).
    db.drop_it().await;
    let db = Db::create().await;
    let n: usize = env_or("BENCH_PG_CALLS", 1_000_000);
    let t = Instant::now();
    {
        let key = [3u8; 32];
        let store = toolgate::store::PgStore::connect(&db.url, &key, Duration::from_secs(10))
            .await
            .expect("store");
        let batch_of = |start: usize, len: usize| -> Vec<toolgate::model::CallRecord> {
            (start..start + len).map(history_record).collect()
        };
        use toolgate::store::HistoryStore;
        let mut i = 0;
        while i < n {
            let len = 1000.min(n - i);
            store
                .insert_calls(&batch_of(i, len), 0, 0)
                .await
                .expect("insert");
            i += len;
        }
    }
    let seed = t.elapsed();
    // A node on that database (its own master key: history holds no sealed values).
    let pg_data = tmp.join("data-pg-history");
    std::fs::create_dir_all(&pg_data).expect("dir");
    std::fs::write(
        pg_data.join("master.key"),
        "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=",
    )
    .expect("key");
    let (gw, took) = start_toolgate(&pg_data, &["--database-url", &db.url]);
    let page = |q: &str| format!("{}/v1/calls?{q}", gw.base);
    let (newest, _) = time_get(client, &page("limit=50"), 11).await;
    let (by_tool, _) = time_get(client, &page("tool=tool_7&limit=50"), 11).await;
    let (failed, _) = time_get(client, &page("outcome=failed&limit=50"), 11).await;
    let (deep, _) = time_get(client, &page("tool=tool_3&source=test&limit=50"), 11).await;
    drop(gw);
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let size: i64 = sqlx::query_scalar(CALLS_BYTES)
        .fetch_one(&mut conn)
        .await
        .expect("size");
    let _ = conn.close().await;
    out.push_str(&format!(
        "\nHistory in PostgreSQL with {n} rows (inserted in batches of 1,000 in {:.1} s, {:.0} rows/s):\n\n\
         | measure | result |\n|---|---|\n\
         | `GET /v1/calls?limit=50` (newest), median of 11 | {} |\n\
         | `GET /v1/calls?tool=tool_7&limit=50` (1 in 10 match) | {} |\n\
         | `GET /v1/calls?outcome=failed&limit=50` (1 in 20 match) | {} |\n\
         | `GET /v1/calls?tool=tool_3&source=test&limit=50` (no match) | {} |\n\
         | node start on this database | {} |\n\
         | `calls` table with indexes | {:.1} MB ({:.0} bytes per row) |\n\n",
        seed.as_secs_f64(),
        n as f64 / seed.as_secs_f64(),
        ms(newest),
        ms(by_tool),
        ms(failed),
        ms(deep),
        ms(took),
        size as f64 / 1e6,
        size as f64 / n as f64
    ));
    db.drop_it().await;
    out
}
