//! Real-world parameter types: enums, defaults, bounds, arrays and objects, as the model sees
//! them (OpenAI, strict and Gemini variants) and as the upstream receives them.

mod common;

use common::{Server, Upstream};
use serde_json::{Value, json};

fn order_hook(base: &str) -> Value {
    json!({"name": "Create order", "method": "POST", "url": format!("{base}/orders"),
        "query_params": [
            {"name": "tags", "data_type": "array", "value_type": "dynamic", "required": false,
             "schema": {"type": "array", "items": {"type": "string", "enum": ["gift", "rush"]}}},
            {"name": "fields", "data_type": "array", "value_type": "dynamic", "required": false,
             "style": "comma", "schema": {"type": "array", "items": {"type": "string"}}},
            {"name": "filter[status]", "argument": "status", "value_type": "dynamic", "required": false,
             "enum": ["open", "closed"], "default": "open"}],
        "headers": [
            {"name": "X-Request-Id", "argument": "request_id", "value_type": "dynamic", "required": false,
             "format": "uuid"}],
        "body": [
            {"name": "customer", "data_type": "object", "value_type": "dynamic", "description": "Who orders",
             "schema": {"type": "object", "$defs": {"Address": {"type": "object",
                 "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                 "required": ["city"]}},
               "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/Address"}},
               "required": ["name"]}},
            {"name": "items", "data_type": "array", "value_type": "dynamic",
             "schema": {"type": "array", "items": {"type": "object",
                 "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
                 "required": ["sku", "quantity"]}}},
            {"name": "priority", "data_type": "integer", "value_type": "dynamic", "required": false,
             "minimum": 1, "maximum": 5, "default": 3},
            {"name": "note", "value_type": "dynamic", "required": false, "max_length": 10}]})
}

#[tokio::test]
async fn rich_fields_reach_the_model_and_the_upstream() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    let wid = s.webhook(order_hook(&up.base)).await;
    let tid = s.tool("create_order", &wid).await;

    // What the model sees: refs resolved, rules carried, wire names hidden behind arguments.
    let (_, schema) = s.get(&format!("/v1/tools/{tid}/schema")).await;
    let p = &schema["function"]["parameters"];
    assert_eq!(
        p["properties"]["customer"]["properties"]["address"]["properties"]["zip"]["pattern"],
        "^[0-9]{5}$"
    );
    assert_eq!(p["properties"]["customer"]["description"], "Who orders");
    assert_eq!(p["properties"]["status"]["enum"], json!(["open", "closed"]));
    assert_eq!(p["properties"]["priority"]["default"], 3);
    assert_eq!(p["properties"]["request_id"]["format"], "uuid");
    assert!(p["properties"].get("filter[status]").is_none());
    assert_eq!(p["required"], json!(["customer", "items"]));
    assert!(jsonschema::meta::is_valid(p));

    // The strict variant closes every object and drops what strict mode rejects.
    let (_, strict) = s.get(&format!("/v1/tools/{tid}/schema?strict=true")).await;
    let sp = &strict["function"]["parameters"];
    let addr = &sp["properties"]["customer"]["properties"]["address"];
    assert_eq!(addr["additionalProperties"], false);
    assert_eq!(addr["required"], json!(["city", "zip"]));
    assert_eq!(addr["properties"]["zip"]["type"], json!(["string", "null"]));
    assert!(addr["properties"]["zip"].get("pattern").is_none());
    assert_eq!(
        sp["properties"]["items"]["items"]["additionalProperties"],
        false
    );
    assert!(sp["properties"]["priority"].get("default").is_none());

    // Gemini: no additionalProperties anywhere, nullable instead of type unions.
    let (_, gem) = s.get("/v1/tools/openai?dialect=gemini").await;
    let text = gem.to_string();
    assert!(!text.contains("additionalProperties"), "{text}");
    assert!(!text.contains("$defs"), "{text}");
    let (st, _) = s.get("/v1/tools/openai?dialect=klingon").await;
    assert_eq!(st, 400);

    // A call with arrays, an object sent as a JSON string, defaults filled in.
    let (st, r) = s
        .invoke(
            "create_order",
            json!({"tags": ["gift", "rush"], "fields": ["id", "total"],
                   "customer": "{\"name\": \"Ann\", \"address\": {\"city\": \"Köln\", \"zip\": \"50667\"}}",
                   "items": [{"sku": "A-1", "quantity": "2"}],
                   "request_id": "6f1c3b5e-8a2d-4c1e-9f00-0123456789ab"}),
            json!({}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["outcome"], "success", "{r}");
    let got = up.last();
    assert_eq!(
        got.uri,
        "/orders?tags=gift&tags=rush&fields=id%2Ctotal&filter%5Bstatus%5D=open"
    );
    assert_eq!(
        got.header("x-request-id"),
        Some("6f1c3b5e-8a2d-4c1e-9f00-0123456789ab")
    );
    assert_eq!(
        got.json(),
        json!({"customer": {"name": "Ann", "address": {"city": "Köln", "zip": "50667"}},
               "items": [{"sku": "A-1", "quantity": 2}], "priority": 3})
    );

    // Errors name the full path, and nothing is sent.
    let before = up.count();
    let (st, v) = s
        .invoke(
            "create_order",
            json!({"customer": {"name": "B"}, "status": "lost", "priority": 9, "note": "far too long note",
                   "request_id": "not-a-uuid",
                   "items": [{"sku": "a", "quantity": 1}, {"sku": "b", "quantity": 1}, {"sku": "c", "quantity": 0}]}),
            json!({}),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    let fields = common::error_fields(&v);
    for want in [
        "items[2].quantity",
        "status",
        "priority",
        "note",
        "request_id",
    ] {
        assert!(fields.contains(&want), "{want} missing from {fields:?}");
    }
    assert_eq!(up.count(), before);
}

#[tokio::test]
async fn misplaced_and_malformed_rules_are_definition_errors() {
    let s = Server::start().await;
    let cases = [
        (
            json!({"headers": [{"name": "X-A", "data_type": "object", "value_type": "dynamic",
            "schema": {"type": "object", "properties": {}}}]}),
            "headers[0].data_type",
        ),
        (
            json!({"path_params": [{"name": "id", "data_type": "array", "value_type": "dynamic",
            "schema": {"type": "array", "items": {"type": "string"}}}]}),
            "path_params[0].data_type",
        ),
        (
            json!({"query_params": [{"name": "q", "data_type": "array", "value_type": "dynamic",
            "schema": {"type": "array"}}]}),
            "query_params[0].schema",
        ),
        (
            json!({"query_params": [{"name": "q", "data_type": "array", "value_type": "dynamic"}]}),
            "query_params[0].schema",
        ),
        (
            json!({"query_params": [{"name": "q", "value_type": "dynamic", "enum": [1, 2]}]}),
            "query_params[0].enum[0]",
        ),
        (
            json!({"query_params": [{"name": "q", "value_type": "dynamic", "default": "x"}]}),
            "query_params[0].default",
        ),
        (
            json!({"query_params": [{"name": "q", "value_type": "dynamic", "pattern": "("}]}),
            "query_params[0].pattern",
        ),
        (
            json!({"query_params": [{"name": "q", "data_type": "boolean", "value_type": "dynamic",
            "minimum": 1}]}),
            "query_params[0].minimum",
        ),
        (
            json!({"query_params": [{"name": "q-x", "value_type": "dynamic"}]}),
            "query_params[0].name",
        ),
        (
            json!({"query_params": [{"name": "q", "argument": "1bad", "value_type": "dynamic"}]}),
            "query_params[0].argument",
        ),
        (
            json!({"query_params": [{"name": "q", "value_type": "dynamic", "style": "comma"}]}),
            "query_params[0].style",
        ),
        (
            json!({"query_params": [{"name": "q", "data_type": "object", "value_type": "dynamic",
            "schema": {"$ref": "#/$defs/Missing"}}]}),
            "query_params[0].schema",
        ),
    ];
    for (fields, field) in cases {
        let mut def = json!({"name": "Bad", "method": "GET", "url": "https://api.example/x"});
        def.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        let (st, v) = s.post("/v1/webhooks", def).await;
        assert_eq!(st, 422, "{field}: {v}");
        let named = common::error_fields(&v);
        assert!(named.contains(&field), "{field} not in {v}");
    }
}
