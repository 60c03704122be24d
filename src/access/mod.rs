//! Access control: who is calling (an API key, the bootstrap admin token, or a local caller in
//! the no-token mode), what their role lets them do, and which tools they may use. The one place
//! a route's permission is decided is [`route_permission`]; the role × route matrix test walks
//! every route of the router against it.

pub mod keys;
pub mod limits;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::ToolSpec;

/// What a key may do, coarsely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, keys and the audit log included.
    Admin,
    /// Secrets (write-only), webhooks, tools, agents, subscriptions and test sends; history
    /// without request and response bodies; not keys.
    Editor,
    /// Invoke, chat, `/v1/chat/completions` and MCP, for the tools it is authorized for.
    Invoker,
    /// Read-only, history included.
    Viewer,
}

impl Role {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Invoker => "invoker",
            Role::Viewer => "viewer",
        }
    }

    /// Whether this role holds `p`.
    pub fn grants(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Editor => matches!(
                p,
                ReadDefinitions | WriteDefinitions | WriteSecrets | TestSend | ReadHistory
            ),
            Role::Invoker => matches!(p, Invoke),
            Role::Viewer => matches!(p, ReadDefinitions | ReadHistory | ReadHistoryBodies),
        }
    }
}

/// One thing a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Create, list, update and revoke API keys; read the audit log.
    ManageKeys,
    /// List and read webhooks, tools, agents, subscriptions, deliveries and secret metadata.
    ReadDefinitions,
    /// Create, change and delete webhooks, tools, agents and subscriptions; import OpenAPI.
    WriteDefinitions,
    /// Create, update and delete secrets (values stay write-only for everyone).
    WriteSecrets,
    /// Send test requests and test events, retry deliveries.
    TestSend,
    /// List call history.
    ReadHistory,
    /// See the arguments, requests and responses in call history.
    ReadHistoryBodies,
    /// Invoke tools, chat with agents, `/v1/chat/completions`, MCP, the OpenAI tool export.
    Invoke,
}

impl Permission {
    /// The name a refusal quotes.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ManageKeys => "keys:manage",
            Permission::ReadDefinitions => "definitions:read",
            Permission::WriteDefinitions => "definitions:write",
            Permission::WriteSecrets => "secrets:write",
            Permission::TestSend => "test:send",
            Permission::ReadHistory => "history:read",
            Permission::ReadHistoryBodies => "history:bodies",
            Permission::Invoke => "tools:invoke",
        }
    }
}

/// The permission a `/v1` route needs, by method and matched path (without `/v1`); `None` for a
/// route this table does not know, which is refused to everyone but admins.
pub fn route_permission(method: &str, path: &str) -> Option<Permission> {
    use Permission::*;
    let read = method == "GET";
    Some(match path {
        "/keys" | "/keys/{id}" | "/keys/{id}/explain" | "/audit" => ManageKeys,
        "/secrets" | "/secrets/{id}" | "/secrets/{id}/values" if read => ReadDefinitions,
        "/secrets" | "/secrets/{id}" | "/secrets/{id}/values/{subject}" => WriteSecrets,
        "/tools/openai" | "/tools/{id}/invoke" | "/agents/{id}/chat" | "/chat/completions" => {
            Invoke
        }
        "/webhooks/{id}/test" | "/subscriptions/{id}/test" | "/deliveries/{id}/retry" => TestSend,
        "/calls" | "/calls/{id}" => ReadHistory,
        "/webhooks"
        | "/webhooks/{id}"
        | "/tools"
        | "/tools/{id}"
        | "/tools/{id}/schema"
        | "/tools/{id}/unlink"
        | "/agents"
        | "/agents/{id}"
        | "/subscriptions"
        | "/subscriptions/{id}"
        | "/subscriptions/{id}/rotate-secret"
        | "/deliveries"
        | "/deliveries/{id}"
        | "/openapi/import" => {
            if read {
                ReadDefinitions
            } else {
                WriteDefinitions
            }
        }
        _ => return None,
    })
}

/// Who is making a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// For the audit log and history: a key's name, `admin-token`, or `local` (no-token mode).
    pub actor: String,
    /// What the caller may do.
    pub role: Role,
    /// The key, when one was used.
    pub key: Option<Arc<keys::KeyEntry>>,
}

impl Caller {
    /// The bootstrap admin token.
    pub fn admin_token() -> Caller {
        Caller {
            actor: "admin-token".into(),
            role: Role::Admin,
            key: None,
        }
    }

    /// A loopback caller of a gateway without an admin token.
    pub fn local() -> Caller {
        Caller {
            actor: "local".into(),
            role: Role::Admin,
            key: None,
        }
    }

    /// Whether this caller may use the tool: a tool authorized for "all" is open to every
    /// caller that may invoke; a tool with selected keys only to those keys (and to admins).
    pub fn may_use(&self, tool: &ToolSpec) -> bool {
        self.may_use_authorized(&tool.authorized)
    }

    /// [`Caller::may_use`] for a tool's `authorized` setting.
    pub fn may_use_authorized(&self, authorized: &Authorized) -> bool {
        if self.role == Role::Admin {
            return true;
        }
        match authorized {
            Authorized::All => true,
            Authorized::Selected(names) => self
                .key
                .as_ref()
                .is_some_and(|k| names.iter().any(|n| *n == k.key.name)),
        }
    }

    /// Why this caller may or may not use the tool, in a sentence.
    pub fn explain(&self, tool: &ToolSpec) -> (bool, String) {
        if !self.role.grants(Permission::Invoke) {
            return (
                false,
                format!(
                    "the role '{}' does not include tools:invoke",
                    self.role.as_str()
                ),
            );
        }
        if self.role == Role::Admin {
            return (true, "admin keys may use every tool".into());
        }
        match &tool.authorized {
            Authorized::All => (true, "the tool is authorized for all keys".into()),
            Authorized::Selected(names) if self.may_use(tool) => (
                true,
                format!(
                    "the tool is authorized for selected keys, this key among them ({})",
                    names.join(", ")
                ),
            ),
            Authorized::Selected(_) => (
                false,
                "the tool is authorized for selected keys, and this key is not one of them".into(),
            ),
        }
    }

    /// The context of a call: the request's, with the key's bound context merged over it, so a
    /// key issued to one tenant always speaks for that tenant.
    pub fn bind_context(&self, requested: &Value) -> Value {
        let Some(bound) = self.key.as_ref().and_then(|k| k.key.context.as_ref()) else {
            return requested.clone();
        };
        let mut out = match requested {
            Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        merge(&mut out, bound);
        Value::Object(out)
    }
}

/// Deep-merge `over` into `base`: objects merge key by key, anything else replaces.
fn merge(base: &mut serde_json::Map<String, Value>, over: &serde_json::Map<String, Value>) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Object(b)), Value::Object(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Who may use a tool: `"all"` (the default), or the names of the keys that may.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Authorized {
    /// Every caller that may invoke.
    #[default]
    All,
    /// Only these keys (by name), and admins.
    Selected(Vec<String>),
}

impl Authorized {
    /// Whether this is the default.
    pub fn is_all(&self) -> bool {
        *self == Authorized::All
    }
}

impl Serialize for Authorized {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Authorized::All => s.serialize_str("all"),
            Authorized::Selected(names) => names.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Authorized {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Word(String),
            Names(Vec<String>),
        }
        match Wire::deserialize(d)? {
            Wire::Word(w) if w == "all" => Ok(Authorized::All),
            Wire::Word(w) => Err(serde::de::Error::custom(format!(
                "expected \"all\" or a list of key names, got \"{w}\""
            ))),
            Wire::Names(n) => Ok(Authorized::Selected(n)),
        }
    }
}

impl schemars::JsonSchema for Authorized {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Authorized".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Who may use the tool: \"all\" (default) or the names of the API keys that may (\"Selected users\"); admins always may",
            "oneOf": [
                {"type": "string", "enum": ["all"]},
                {"type": "array", "items": {"type": "string"}}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_grant_what_the_matrix_says() {
        use Permission::*;
        let all = [
            ManageKeys,
            ReadDefinitions,
            WriteDefinitions,
            WriteSecrets,
            TestSend,
            ReadHistory,
            ReadHistoryBodies,
            Invoke,
        ];
        assert!(all.iter().all(|p| Role::Admin.grants(*p)));
        assert!(!Role::Editor.grants(ManageKeys));
        assert!(!Role::Editor.grants(ReadHistoryBodies));
        assert!(!Role::Editor.grants(Invoke));
        assert_eq!(all.iter().filter(|p| Role::Invoker.grants(**p)).count(), 1);
        assert!(!Role::Viewer.grants(WriteDefinitions));
        assert!(Role::Viewer.grants(ReadHistoryBodies));
    }

    #[test]
    fn bound_context_wins_over_the_request() {
        let key = keys::KeyEntry::for_test(
            "bot-a",
            Role::Invoker,
            Some(json!({"tenant": "A", "deep": {"x": 1}})),
        );
        let c = Caller {
            actor: "bot-a".into(),
            role: Role::Invoker,
            key: Some(Arc::new(key)),
        };
        let v = c.bind_context(&json!({"tenant": "B", "deep": {"x": 2, "y": 3}, "user": "u"}));
        assert_eq!(
            v,
            json!({"tenant": "A", "deep": {"x": 1, "y": 3}, "user": "u"})
        );
        assert_eq!(c.bind_context(&Value::Null)["tenant"], "A");
    }

    #[test]
    fn authorized_reads_all_or_names() {
        let a: Authorized = serde_json::from_value(json!("all")).unwrap();
        assert!(a.is_all());
        let s: Authorized = serde_json::from_value(json!(["bot"])).unwrap();
        assert_eq!(s, Authorized::Selected(vec!["bot".into()]));
        assert!(serde_json::from_value::<Authorized>(json!("some")).is_err());
        assert_eq!(serde_json::to_value(&s).unwrap(), json!(["bot"]));
    }
}
