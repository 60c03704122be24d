//! Deserialising a submitted definition (an API body, a config file) so that every bad name or
//! id in it is reported at once, not only the first. Names and ids are newtypes that refuse bad
//! values while deserialising, and serde stops at the first error; a person fixing a file wants
//! the whole list, as validation gives it for every other field.

use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

use super::validate::FieldError;
use super::{
    AgentId, AgentName, SecretId, SecretName, SubscriptionId, ToolId, ToolName, WebhookId,
};

/// Each newtype's error message and a valid value to put in the bad one's place, so the rest of
/// the definition can still be read and checked.
fn stand_in(message: &str) -> Option<String> {
    let name = || "x".to_string();
    [
        (ToolName::RULE, name as fn() -> String),
        (AgentName::RULE, name),
        (SecretName::RULE, name),
        (WebhookId::RULE, || WebhookId::new().into()),
        (ToolId::RULE, || ToolId::new().into()),
        (AgentId::RULE, || AgentId::new().into()),
        (SecretId::RULE, || SecretId::new().into()),
        (SubscriptionId::RULE, || SubscriptionId::new().into()),
    ]
    .iter()
    .find(|(rule, _)| *rule == message)
    .map(|(_, make)| make())
}

/// Most bad names one definition reports; past it, the first further error ends the list.
const MAX_REPORTED: usize = 64;

/// `value` as a `T`, or every problem found on the way. Each name or id that breaks its rule is
/// reported at its path and replaced by a stand-in so reading goes on; any other error (a wrong
/// type, an unknown field) ends the list, since nothing sensible can stand in for it.
/// `scrub` shapes serde's message (the API drops quoted input values from it).
pub fn deserialize_reporting_all<T: DeserializeOwned>(
    value: Value,
    scrub: &dyn Fn(&str) -> String,
) -> Result<T, Vec<FieldError>> {
    match read_with_stand_ins(value, scrub) {
        (Some(t), errs) if errs.is_empty() => Ok(t),
        (_, errs) => Err(errs),
    }
}

/// Like [`deserialize_reporting_all`], but also hands back the definition read with stand-ins
/// when only names and ids were bad, so its other fields can be validated too (then merge with
/// [`without_follow_ons`]).
pub fn read_with_stand_ins<T: DeserializeOwned>(
    mut value: Value,
    scrub: &dyn Fn(&str) -> String,
) -> (Option<T>, Vec<FieldError>) {
    let mut errs = Vec::new();
    loop {
        let err = match serde_path_to_error::deserialize(&value) {
            Ok(t) => return (Some(t), errs),
            Err(e) => e,
        };
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = err.inner().to_string();
        let replacement = stand_in(&message).filter(|_| errs.len() < MAX_REPORTED);
        let slot = replacement
            .as_ref()
            .and_then(|_| value_at(&mut value, err.path().iter()));
        errs.push(FieldError::new(path, scrub(&message)));
        match (slot, replacement) {
            // Only a string can have broken a name rule; anything else would loop.
            (Some(slot @ Value::String(_)), Some(r)) => *slot = Value::String(r),
            _ => return (None, errs),
        }
    }
}

/// The value at a serde path, if the path leads through objects and arrays only.
fn value_at<'v, 'p>(
    mut v: &'v mut Value,
    path: impl Iterator<Item = &'p Segment>,
) -> Option<&'v mut Value> {
    for seg in path {
        v = match seg {
            Segment::Map { key } => v.get_mut(key.as_str())?,
            Segment::Seq { index } => v.get_mut(*index)?,
            Segment::Enum { .. } | Segment::Unknown => return None,
        };
    }
    Some(v)
}

/// Drop the problems a stand-in caused: a later check that finds fault with the stand-in put
/// at a path already reported (an unknown tool `x`, a webhook id that does not exist).
pub fn without_follow_ons(first: Vec<FieldError>, later: Vec<FieldError>) -> Vec<FieldError> {
    let mut all = first;
    for e in later {
        if !all.iter().any(|f| f.field == e.field) {
            all.push(e);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AgentSpec, ToolSpec};
    use serde_json::json;

    fn keep(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn every_bad_name_is_reported_with_its_path() {
        let errs = deserialize_reporting_all::<AgentSpec>(
            json!({"name": "bad name", "tools": ["ok", "no way", "fine", "nope!"]}),
            &keep,
        )
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "tools[1]", "tools[3]"]);
        assert_eq!(errs[0].message, AgentName::RULE);
        assert_eq!(errs[1].message, ToolName::RULE);
    }

    #[test]
    fn a_bad_id_is_reported_and_a_structural_error_ends_the_list() {
        let errs = deserialize_reporting_all::<ToolSpec>(
            // serde_json sorts keys, so the unknown one comes last.
            json!({"name": "t t", "webhook_id": "wh_1", "zz_surprise": 1}),
            &keep,
        )
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "webhook_id", "zz_surprise"]);
        assert_eq!(errs[1].message, WebhookId::RULE);
        // A number where a name goes is a type error: reported, no stand-in, no loop.
        let errs = deserialize_reporting_all::<ToolSpec>(json!({"name": 5}), &keep).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "name");
    }

    #[test]
    fn a_good_definition_reads_and_follow_ons_are_dropped() {
        let t: ToolSpec =
            deserialize_reporting_all(json!({"name": "lookup-order_2"}), &keep).unwrap();
        assert_eq!(t.name, "lookup-order_2");
        let merged = without_follow_ons(
            vec![FieldError::new("tools[1]", ToolName::RULE)],
            vec![
                FieldError::new("tools[1]", "unknown tool 'x'"),
                FieldError::new("max_steps", "too many"),
            ],
        );
        let fields: Vec<&str> = merged.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["tools[1]", "max_steps"]);
    }
}
