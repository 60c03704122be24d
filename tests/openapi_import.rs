//! OpenAPI import: fixtures written for these tests, imported through the route and the CLI,
//! the compiled schemas checked against golden files, and the imported tools invoked against a
//! real upstream to check the exact requests sent.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Server, Upstream};
use serde_json::{Value, json};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).expect("fixture")
}

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openapi")
        .join(name)
}

fn by_status<'a>(report: &'a Value, status: &str) -> Vec<&'a str> {
    let mut v: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == status)
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    v.sort();
    v
}

async fn petstore(s: &Server, up: &Upstream, extra: Value) -> (u16, Value) {
    let mut body = json!({"spec": fixture("petstore.yaml"), "base_url": up.base, "tool_prefix": "ps_",
        "auth": {"bearerAuth": {"secret": "bearer_tok"}, "apiKey": {"secret": "pet_key"}}});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    s.post("/v1/openapi/import", body).await
}

const IMPORTED: [&str; 7] = [
    "ps_create_category",
    "ps_create_pet",
    "ps_delete_pets_pet_id",
    "ps_get_pet_by_id",
    "ps_list_pets",
    "ps_login",
    "ps_place_order",
];

#[tokio::test]
async fn petstore_imports_and_calls_exactly() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    s.secret("bearer_tok", "tok-123").await;
    s.secret("pet_key", "key-456").await;

    // A dry run says what would happen and writes nothing.
    let (st, dry) = petstore(&s, &up, json!({"dry_run": true})).await;
    assert_eq!(st, 200, "{dry}");
    assert_eq!(by_status(&dry, "created"), IMPORTED);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(s.get("/v1/tools").await.1["items"], json!([]));

    let (st, r) = petstore(&s, &up, json!({})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(by_status(&r, "created"), IMPORTED);
    let skipped: Vec<(&str, &str)> = r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["operation_id"].as_str().unwrap(),
                x["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped
            .iter()
            .any(|(id, why)| *id == "uploadPhoto" && why.contains("multipart"))
    );
    assert!(
        skipped
            .iter()
            .any(|(id, why)| *id == "getSession" && why.contains("cookie"))
    );
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("placeOrder") && warnings.contains("oauth"),
        "{warnings}"
    );

    // The compiled schemas, as every model sees them.
    let (_, exported) = s.get("/v1/tools/openai").await;
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/openapi_petstore.json");
    let text = serde_json::to_string_pretty(&exported).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &text).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&golden).expect("golden file (UPDATE_GOLDEN=1 writes it)"),
        text,
        "imported schemas changed; rerun with UPDATE_GOLDEN=1 if intended"
    );
    let tools = exported["tools"].as_array().unwrap();
    let params = |name: &str| {
        tools
            .iter()
            .find(|t| t["function"]["name"] == name)
            .map(|t| t["function"]["parameters"].clone())
            .unwrap()
    };
    let cat = params("ps_create_category").to_string();
    assert!(
        cat.contains("recursive"),
        "the recursive schema is cut: {cat}"
    );
    let pet = params("ps_create_pet");
    assert_eq!(
        pet["properties"]["owner"]["properties"]["email"]["format"],
        "email"
    );
    assert!(pet["properties"].get("id").is_none(), "readOnly left out");
    assert_eq!(pet["required"], json!(["name"]));
    let (_, gem) = s.get("/v1/tools/openai?dialect=gemini").await;
    assert!(!gem.to_string().contains("additionalProperties"));

    // Each imported tool sends exactly what the document describes.
    let (_, c) = s
        .invoke(
            "ps_list_pets",
            json!({"tags": ["a", "b"], "fields": ["id", "name"],
                   "x_request_id": "6f1c3b5e-8a2d-4c1e-9f00-0123456789ab"}),
            json!({}),
        )
        .await;
    assert_eq!(c["outcome"], "success", "{c}");
    let got = up.last();
    assert_eq!(got.method, "GET");
    assert_eq!(
        got.uri,
        "/pets?status=available&tags=a&tags=b&fields=id%2Cname&limit=20"
    );
    assert_eq!(got.header("authorization"), Some("Bearer tok-123"));
    assert_eq!(
        got.header("x-request-id"),
        Some("6f1c3b5e-8a2d-4c1e-9f00-0123456789ab")
    );

    let (_, c) = s
        .invoke(
            "ps_create_pet",
            json!({"name": "Rex", "tags": ["dog"],
                   "owner": {"email": "ann@example.com", "address": {"city": "Bonn"}}}),
            json!({}),
        )
        .await;
    assert_eq!(c["outcome"], "success", "{c}");
    let got = up.last();
    assert_eq!((got.method.as_str(), got.uri.as_str()), ("POST", "/pets"));
    assert_eq!(got.header("x-api-key"), Some("key-456"));
    assert_eq!(
        got.header("authorization"),
        None,
        "the operation's own security"
    );
    assert_eq!(
        got.json(),
        json!({"name": "Rex", "status": "available", "tags": ["dog"],
               "owner": {"email": "ann@example.com", "address": {"city": "Bonn"}}})
    );

    s.invoke("ps_get_pet_by_id", json!({"petId": "7"}), json!({}))
        .await;
    assert_eq!(up.last().uri, "/pets/7");
    s.invoke("ps_delete_pets_pet_id", json!({"petId": 8}), json!({}))
        .await;
    assert_eq!(
        (up.last().method.as_str(), up.last().uri.as_str()),
        ("DELETE", "/pets/8")
    );

    let (_, c) = s
        .invoke("ps_login", json!({"username": "ann"}), json!({}))
        .await;
    assert_eq!(c["outcome"], "success", "{c}");
    let got = up.last();
    assert_eq!(
        got.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(got.text(), "remember=false&username=ann");
    assert_eq!(got.header("authorization"), None, "security: [] means none");

    let (_, c) = s
        .invoke(
            "ps_place_order",
            json!({"items": "[{\"sku\": \"a-1\", \"quantity\": \"2\"}]"}),
            json!({}),
        )
        .await;
    assert_eq!(c["outcome"], "success", "{c}");
    assert_eq!(
        up.last().json(),
        json!({"items": [{"sku": "a-1", "quantity": 2}]})
    );
    let (st, v) = s
        .invoke(
            "ps_place_order",
            json!({"items": [{"sku": "a-1", "quantity": 1}, {"sku": "B!", "quantity": 0}]}),
            json!({}),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    let fields = v["error"]["details"].to_string();
    assert!(
        fields.contains("items[1].quantity") && fields.contains("items[1].sku"),
        "{fields}"
    );
}

#[tokio::test]
async fn reimport_updates_in_place_and_prunes_on_request() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    s.secret("bearer_tok", "t").await;
    s.secret("pet_key", "k").await;
    let (_, first) = petstore(&s, &up, json!({})).await;
    let ids: Vec<String> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["webhook_id"].as_str().unwrap().to_string())
        .collect();
    let (_, again) = petstore(&s, &up, json!({})).await;
    assert_eq!(by_status(&again, "unchanged"), IMPORTED);

    // The document changes: a summary edited, an operation gone.
    let changed = fixture("petstore.yaml")
        .replace("summary: List pets", "summary: List all pets")
        .replace(
            "      operationId: getPetById\n",
            "      operationId: getPetByIdGone\n",
        );
    let mut body = json!({"spec": changed, "base_url": up.base, "tool_prefix": "ps_",
        "auth": {"bearerAuth": {"secret": "bearer_tok"}, "apiKey": {"secret": "pet_key"}}, "dry_run": true});
    let (_, dry) = s.post("/v1/openapi/import", body.clone()).await;
    assert_eq!(by_status(&dry, "updated"), ["ps_list_pets"]);
    assert_eq!(by_status(&dry, "removed"), ["ps_get_pet_by_id"]);
    assert_eq!(by_status(&dry, "created"), ["ps_get_pet_by_id_gone"]);
    body["dry_run"] = json!(false);
    let (_, applied) = s.post("/v1/openapi/import", body.clone()).await;
    assert_eq!(by_status(&applied, "updated"), ["ps_list_pets"]);
    // Updated in place: the same webhook id, no duplicate.
    let list = applied["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ps_list_pets")
        .unwrap();
    assert!(ids.contains(&list["webhook_id"].as_str().unwrap().to_string()));
    let (_, hook) = s
        .get(&format!(
            "/v1/webhooks/{}",
            list["webhook_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(hook["name"], "List all pets");
    // Removed is only reported until prune is asked for.
    let names = |v: Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(names(s.get("/v1/tools").await.1).contains(&"ps_get_pet_by_id".to_string()));
    body["prune"] = json!(true);
    let (_, pruned) = s.post("/v1/openapi/import", body).await;
    assert_eq!(by_status(&pruned, "removed"), ["ps_get_pet_by_id"]);
    let left = names(s.get("/v1/tools").await.1);
    assert!(!left.contains(&"ps_get_pet_by_id".to_string()), "{left:?}");
    assert_eq!(left.len(), IMPORTED.len());
}

#[tokio::test]
async fn swagger2_and_openapi31_import() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    s.secret("legacy_key", "LK").await;
    let (st, r) = s
        .post(
            "/v1/openapi/import",
            json!({"spec": fixture("swagger2.json"), "base_url": format!("{}/api", up.base),
                   "auth": {"key": {"secret": "legacy_key"}}}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        by_status(&r, "created"),
        ["find_users", "get_user", "update_user"]
    );
    assert_eq!(r["skipped"][0]["operation_id"], "uploadAvatar");
    s.invoke(
        "find_users",
        json!({"ids": [1, 2], "sort": "age"}),
        json!({}),
    )
    .await;
    assert_eq!(up.last().uri, "/api/users?ids=1&ids=2&sort=age&api_key=LK");
    let (_, c) = s
        .invoke(
            "update_user",
            json!({"id": "u1", "name": "Ann", "age": null}),
            json!({}),
        )
        .await;
    assert_eq!(c["outcome"], "success", "{c}");
    assert_eq!(up.last().json(), json!({"name": "Ann"}));
    assert_eq!(up.last().method, "PUT");

    let doc31 = json!({"openapi": "3.1.0", "info": {"title": "Three one", "version": "1"},
        "servers": [{"url": up.base}],
        "paths": {"/notes": {"post": {"operationId": "addNote", "requestBody": {"content": {"application/json": {
            "schema": {"type": "object", "properties": {"text": {"type": "string"},
                       "pinned": {"type": ["boolean", "null"]}}, "required": ["text"]}}}}}}}});
    let (st, r) = s.post("/v1/openapi/import", json!({"spec": doc31})).await;
    assert_eq!(st, 200, "{r}");
    let (_, c) = s
        .invoke(
            "add_note",
            json!({"text": "hi", "pinned": "true"}),
            json!({}),
        )
        .await;
    assert_eq!(c["outcome"], "success", "{c}");
    assert_eq!(up.last().json(), json!({"text": "hi", "pinned": true}));
}

#[tokio::test]
async fn broken_documents_are_refused_with_where() {
    let s = Server::start().await;
    let cases = [
        (
            json!({"spec": "openapi: 3.0.0\npaths:\n  /a: [\n"}),
            "spec",
            "line",
        ),
        (
            json!({"spec": {"openapi": "4.0.0", "paths": {}}}),
            "openapi",
            "not supported",
        ),
        (
            json!({"spec": {"info": {}, "paths": {}}}),
            "openapi",
            "version",
        ),
        (
            json!({"spec": {"openapi": "3.0.0", "info": {"title": "R"}, "servers": [{"url": "/v1"}],
                "paths": {"/x": {"get": {"operationId": "x"}}}}}),
            "base_url",
            "base_url",
        ),
        (json!({"spec": 5}), "spec", "document"),
    ];
    for (body, field, text) in cases {
        let (st, v) = s.post("/v1/openapi/import", body).await;
        assert_eq!(st, 422, "{v}");
        assert_eq!(v["error"]["code"], "invalid_spec", "{v}");
        assert_eq!(v["error"]["details"][0]["field"], field, "{v}");
        assert!(v.to_string().contains(text), "{text} not in {v}");
    }
    let (st, v) = s
        .post(
            "/v1/openapi/import",
            json!({"spec": fixture("petstore.yaml"), "auth": {"bearerAuth": {"secret": "nope"}}}),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["details"][0]["field"], "auth.bearerAuth.secret");
}

#[tokio::test]
async fn the_cli_writes_tool_files_that_validate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tools");
    let bin = env!("CARGO_BIN_EXE_toolgate");
    let run = Command::new(bin)
        .arg("import-openapi")
        .arg(fixture_path("petstore.yaml"))
        .arg("--out")
        .arg(&out)
        .args([
            "--base-url",
            "https://petstore.example.com/v1",
            "--tool-prefix",
            "ps_",
        ])
        .args([
            "--auth",
            "bearerAuth=bearer_tok",
            "--auth",
            "apiKey=pet_key",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("skipped uploadPhoto"), "{stderr}");
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    files.sort();
    let want: Vec<String> = IMPORTED.iter().map(|n| format!("{n}.toml")).collect();
    assert_eq!(files, want);
    let text = std::fs::read_to_string(out.join("ps_create_pet.toml")).unwrap();
    assert!(text.contains("operation createPet"), "{text}");
    let check = Command::new(bin)
        .arg("validate")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("7 tool file(s)"));
}
