//! The OpenAPI document of toolgate's own API: served, complete against the router, and its
//! schemas the ones the config files are checked with.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::Server;
use serde_json::Value;

/// Every `(method, path)` the router serves, read from the route declarations in `src/api/`
/// (routes of every module but `system.rs` and the MCP services live under `/v1`).
fn routes_in_source() -> BTreeSet<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "rs") {
            continue; // routes are declared in the resource files, not in sub-folders
        }
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices(".route(\"") {
            let rest = &text[i + 8..];
            let route = &rest[..rest.find('"').unwrap()];
            let call = &rest[..rest.find(")\n").unwrap_or(rest.len())];
            let prefix = if file == "system.rs" { "" } else { "/v1" };
            for m in ["get", "post", "put", "delete", "patch"] {
                if call.contains(&format!("{m}(")) {
                    out.insert((m.to_string(), format!("{prefix}{route}")));
                }
            }
        }
        for (i, _) in text.match_indices(".route_service(\"") {
            let rest = &text[i + 16..];
            let route = &rest[..rest.find('"').unwrap()];
            // The streamable HTTP transport answers GET (stream), POST (messages), DELETE (end).
            for m in ["get", "post", "delete"] {
                out.insert((m.to_string(), route.to_string()));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_document_describes_every_route() {
    let s = Server::start().await;
    let (st, doc) = s.get("/openapi.json").await;
    assert_eq!(st, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let routes = routes_in_source();
    assert!(
        routes.len() > 30,
        "the route scan found too little: {routes:?}"
    );
    let missing: Vec<_> = routes.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes the document does not describe: {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&routes).collect();
    assert!(
        stale.is_empty(),
        "documented routes that do not exist: {stale:?}"
    );
    // Every operation has a summary, a response and the error envelope.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(op["summary"].is_string(), "{method} {path}");
            assert!(op["responses"]["default"].is_object(), "{method} {path}");
        }
    }
    let envelope = &doc["components"]["schemas"]["ErrorEnvelope"];
    assert_eq!(envelope["required"], serde_json::json!(["error"]));
    // Descriptions come from the doc comments of the types.
    let field = &doc["components"]["schemas"]["Field"]["properties"]["argument"];
    assert!(
        field["description"]
            .as_str()
            .unwrap_or("")
            .contains("argument name"),
        "{field}"
    );
}

fn file_schema(kind: &str) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(["schema", kind])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn toml_as_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    serde_json::to_value(v).unwrap()
}

#[test]
fn shipped_files_validate_against_the_file_schemas() {
    let tool = jsonschema::validator_for(&file_schema("tool-file")).unwrap();
    let agent = jsonschema::validator_for(&file_schema("agent-file")).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for dir in ["tools", "prompts"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let v = toml_as_json(&p);
            let validator = if v.get("agent").is_some() {
                &agent
            } else {
                &tool
            };
            let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", p.display());
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} files checked");
    // A broken file does not validate.
    let broken = serde_json::json!({"tool": {"name": "x", "surprise": 1},
        "webhook": {"name": "X", "method": "FETCH", "url": "https://a.example"}});
    assert!(!tool.is_valid(&broken));
    let broken_agent = serde_json::json!({"agent": {"name": "a", "max_steps": "many"}});
    assert!(!agent.is_valid(&broken_agent));
}

#[test]
fn the_committed_file_schemas_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for kind in ["tool-file", "agent-file"] {
        let committed: Value = serde_json::from_str(
            &std::fs::read_to_string(root.join(format!("{kind}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            committed,
            file_schema(kind),
            "schemas/{kind}.json is stale: toolgate schema {kind} > schemas/{kind}.json"
        );
    }
}
