//! Import of an OpenAPI document with a few hundred operations: wall time and memory of
//! planning, of the first import into a real store, and of a re-import that changes nothing.
//! `cargo bench --bench openapi_import` (BENCH_OPS sets the operation count, default 300).

use std::time::Instant;

use serde_json::{Value, json};
use toolgate::config::ServeConfig;
use toolgate::openapi::{self, ImportOptions};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `VmRSS` and `VmHWM` of this process, in MB.
fn memory_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A document with `n` operations over shared component schemas: path, query (array, enum,
/// default) and header parameters, and JSON bodies with nested objects, arrays and `$ref`s.
fn document(n: usize) -> String {
    let mut paths = serde_json::Map::new();
    for i in 0..n / 2 {
        paths.insert(
            format!("/resources{i}/{{id}}"),
            json!({
                "parameters": [{"name": "X-Request-Id", "in": "header", "schema": {"type": "string"}}],
                "get": {"operationId": format!("getResource{i}"), "summary": format!("Read resource {i}"),
                    "parameters": [
                        {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                        {"name": "expand", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
                        {"name": "view", "in": "query", "schema": {"type": "string", "enum": ["full", "short"], "default": "short"}}]},
                "put": {"operationId": format!("putResource{i}"), "summary": format!("Replace resource {i}"),
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "requestBody": {"required": true, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Resource"}}}}}
            }),
        );
    }
    json!({"openapi": "3.0.3", "info": {"title": "Bench API", "version": "1"},
        "servers": [{"url": "https://api.example.com"}],
        "components": {"schemas": {
            "Resource": {"allOf": [{"$ref": "#/components/schemas/Base"},
                {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                    "owner": {"$ref": "#/components/schemas/Owner"}}}]},
            "Base": {"type": "object", "properties": {"name": {"type": "string"}, "state": {"type": "string", "enum": ["a", "b"]}}, "required": ["name"]},
            "Item": {"type": "object", "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}, "required": ["sku"]},
            "Owner": {"type": "object", "properties": {"email": {"type": "string", "format": "email"},
                "address": {"type": "object", "properties": {"city": {"type": "string"}}}}}}},
        "paths": paths})
    .to_string()
}

#[tokio::main]
async fn main() {
    let n: usize = env_or("BENCH_OPS", 300);
    let spec = Value::String(document(n));
    let (rss0, _) = memory_mb();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServeConfig::with_data_dir(dir.path().join("data"));
    config.tools_dir = dir.path().join("none");
    config.prompts_dir = dir.path().join("none");
    let state = toolgate::build_state(config).await.expect("state");
    let (rss_started, _) = memory_mb();

    let t = Instant::now();
    let plan = openapi::plan(&spec, &ImportOptions::default()).expect("plan");
    let plan_ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(plan.tools.len(), n / 2 * 2, "every operation imports");

    let t = Instant::now();
    let report = openapi::apply::apply(&state.definitions(), plan, false, false)
        .await
        .expect("import");
    let import_ms = t.elapsed().as_secs_f64() * 1000.0;
    let (rss_imported, hwm) = memory_mb();

    let t = Instant::now();
    let plan = openapi::plan(&spec, &ImportOptions::default()).expect("plan");
    let again = openapi::apply::apply(&state.definitions(), plan, false, false)
        .await
        .expect("re-import");
    let reimport_ms = t.elapsed().as_secs_f64() * 1000.0;
    let unchanged = serde_json::to_value(&again).expect("report")["tools"]
        .as_array()
        .map(|t| t.iter().filter(|x| x["status"] == "unchanged").count())
        .unwrap_or(0);

    println!(
        "## OpenAPI import, {n} operations ({} bytes of JSON)",
        spec.as_str().map_or(0, str::len)
    );
    println!();
    println!("| measure | result |");
    println!("|---|---|");
    println!("| plan (parse, resolve refs, convert, validate) | {plan_ms:.1} ms |");
    println!(
        "| first import (plan + {} webhooks and tools written, each fsynced) | {:.1} ms ({:.2} ms per operation) |",
        report.tools.len(),
        plan_ms + import_ms,
        (plan_ms + import_ms) / n as f64
    );
    println!("| re-import, nothing changed ({unchanged} unchanged) | {reimport_ms:.1} ms |");
    println!(
        "| RSS: empty gateway → after import | {:.1} MB → {:.1} MB (process start {rss0:.1} MB) |",
        rss_started, rss_imported
    );
    println!("| peak RSS (VmHWM) | {hwm:.1} MB |");
}
