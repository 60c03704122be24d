//! `GET /openapi.json`: the OpenAPI 3.1 description of toolgate's own API. Request, response
//! and query schemas come from the same Rust types the handlers use (schemars, with their doc
//! comments as descriptions), so the document cannot drift from the code; a test compares its
//! paths with the router's.

mod builder;
mod definitions;
mod runtime;

use serde_json::{Value, json};

use builder::Doc;

/// The whole document.
pub fn document() -> Value {
    let mut d = Doc::new();
    definitions::system(&mut d);
    definitions::secrets(&mut d);
    definitions::webhooks(&mut d);
    definitions::tools(&mut d);
    runtime::history(&mut d);
    runtime::agents(&mut d);
    runtime::subscriptions(&mut d);
    runtime::openapi_import(&mut d);
    runtime::mcp(&mut d);
    runtime::keys(&mut d);
    let schemas = d.generator.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {"title": "toolgate", "version": env!("CARGO_PKG_VERSION"),
            "description": "AI-agent tool-calling gateway: register HTTP APIs once as webhooks, link them to tools, and let models call them through one validated, audited pipeline. Without an admin token the API answers loopback requests only; with one, send it as a bearer token."},
        "security": [{"bearer": []}, {}],
        "paths": d.paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "The admin token (--admin-token / TOOLGATE_ADMIN_TOKEN) or an API key (tg_…)"}},
            "schemas": schemas,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_31_with_valid_schemas() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        assert!(schemas.contains_key("WebhookSpec"), "{:?}", schemas.keys());
        for (name, s) in schemas {
            assert!(jsonschema::meta::is_valid(s), "{name}: {s}");
        }
        // Every $ref resolves inside the document.
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"").skip(1) {
            let r = &part[..part.find('"').unwrap()];
            assert!(doc.pointer(r.trim_start_matches('#')).is_some(), "{r}");
        }
    }
}
