//! Step 1 of a call: parse the model's arguments, coerce unambiguous scalars, validate.
//! A refusal here means nothing is sent.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

use crate::catalog::CompiledWebhook;
use crate::model::DataType;
use crate::model::validate::FieldError;

/// Arguments as an object: models send either an object or a JSON string holding one. An object
/// is borrowed: `check_arguments` copies only the values it keeps.
pub fn parse_arguments(raw: &Value) -> Result<Cow<'_, Map<String, Value>>, FieldError> {
    match raw {
        Value::Null => Ok(Cow::Owned(Map::new())),
        Value::Object(m) => Ok(Cow::Borrowed(m)),
        Value::String(s) if s.trim().is_empty() => Ok(Cow::Owned(Map::new())),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Ok(Cow::Owned(m)),
            Ok(_) => Err(FieldError::new(
                "arguments",
                "arguments must be a JSON object of named values",
            )),
            Err(e) => Err(FieldError::new(
                "arguments",
                format!(
                    "arguments are not valid JSON ({e}); send a JSON object such as {{\"name\": \"value\"}}"
                ),
            )),
        },
        _ => Err(FieldError::new(
            "arguments",
            "arguments must be a JSON object of named values",
        )),
    }
}

/// Coerce a value to `dt` when that is unambiguous (`"42"`→42, `"true"`→true, 1001→`"1001"`).
pub fn coerce(dt: DataType, v: &Value) -> Result<Value, String> {
    if already_typed(dt, v) {
        return Ok(v.clone());
    }
    match (dt, v) {
        (DataType::String, Value::Number(n)) => Ok(Value::String(n.to_string())),
        (DataType::String, Value::Bool(b)) => Ok(Value::String(b.to_string())),
        // Not an `i64` or `u64` (those are `already_typed`): a float with nothing after the point.
        (DataType::Integer, Value::Number(n)) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                Ok(Value::Number(Number::from(f as i64)))
            }
            _ => Err("expected an integer".into()),
        },
        (DataType::Integer, Value::String(s)) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i64>() {
                Ok(Value::Number(i.into()))
            } else if let Ok(u) = t.parse::<u64>() {
                Ok(Value::Number(u.into()))
            } else {
                Err("expected an integer".into())
            }
        }
        (DataType::Number, Value::String(s)) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i64>() {
                return Ok(Value::Number(i.into()));
            }
            match t
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(Number::from_f64)
            {
                Some(n) => Ok(Value::Number(n)),
                None => Err("expected a number".into()),
            }
        }
        (DataType::Array | DataType::Object, Value::String(s)) => {
            match serde_json::from_str::<Value>(s.trim()) {
                Ok(parsed) if coerce(dt, &parsed).is_ok() && !parsed.is_string() => Ok(parsed),
                _ => Err(format!("expected {} {}", article(dt), dt.schema_type())),
            }
        }
        (DataType::Boolean, Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err("expected a boolean (true or false)".into()),
        },
        (dt, _) => Err(format!("expected {} {}", article(dt), dt.schema_type())),
    }
}

/// `coerce` of a value no longer needed as it was: one that already has the type is moved, not
/// copied (a secret's or a context's value on every call).
pub fn coerce_owned(dt: DataType, v: Value) -> Result<Value, String> {
    if already_typed(dt, &v) {
        Ok(v)
    } else {
        coerce(dt, &v)
    }
}

/// Whether `v` already is a `dt`, which coercing leaves as it is.
fn already_typed(dt: DataType, v: &Value) -> bool {
    match (dt, v) {
        (DataType::String, Value::String(_))
        | (DataType::Number, Value::Number(_))
        | (DataType::Boolean, Value::Bool(_))
        | (DataType::Array, Value::Array(_))
        | (DataType::Object, Value::Object(_)) => true,
        (DataType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

fn article(dt: DataType) -> &'static str {
    if matches!(dt, DataType::Integer | DataType::Array | DataType::Object) {
        "an"
    } else {
        "a"
    }
}

/// Check and coerce arguments against a webhook's dynamic fields; every problem is reported.
pub fn check_arguments(
    hook: &CompiledWebhook,
    args: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<FieldError>> {
    let mut errs = Vec::new();
    let mut out = Map::new();
    for f in &hook.dynamic {
        match args.get(&f.name) {
            None | Some(Value::Null) => {
                if let Some(d) = &f.default {
                    out.insert(f.name.clone(), d.clone());
                } else if f.required {
                    errs.push(FieldError::new(f.name.clone(), "missing required value"));
                }
            }
            // Arrays and objects are coerced along their schema; the validator then names
            // whatever is still wrong, with its full path.
            Some(v) if !f.data_type.is_scalar() => {
                let schema = &hook.parameters()["properties"][&f.name];
                out.insert(f.name.clone(), crate::schema::coerce(schema, v));
            }
            Some(v) => match coerce(f.data_type, v) {
                Ok(c) => {
                    out.insert(f.name.clone(), c);
                }
                Err(m) => errs.push(FieldError::new(f.name.clone(), m)),
            },
        }
    }
    // A map's keys come sorted.
    let unknown = args
        .keys()
        .filter(|k| !hook.dynamic.iter().any(|f| &f.name == *k));
    for k in unknown {
        let expected: Vec<&str> = hook.dynamic.iter().map(|f| f.name.as_str()).collect();
        errs.push(FieldError::new(
            k,
            format!("unknown argument; expected one of: {}", expected.join(", ")),
        ));
    }
    if errs.is_empty() {
        let instance = Value::Object(out);
        match hook.validator() {
            Ok(validator) => {
                for e in validator.iter_errors(&instance) {
                    let pointer = e.instance_path().to_string();
                    errs.push(FieldError::new(
                        field_path(&instance, &pointer),
                        e.to_string(),
                    ));
                }
            }
            Err(msg) => errs.push(FieldError::new(
                "arguments",
                format!("argument schema: {msg}"),
            )),
        }
        if errs.is_empty()
            && let Value::Object(m) = instance
        {
            return Ok(m);
        }
    }
    Err(errs)
}

/// A JSON pointer into the arguments as a field path people read: `items[2].quantity`.
pub fn field_path(instance: &Value, pointer: &str) -> String {
    let mut out = String::new();
    let mut cur = Some(instance);
    for raw in pointer.split('/').skip(1) {
        let seg = raw.replace("~1", "/").replace("~0", "~");
        match cur {
            Some(Value::Array(a)) => {
                out.push_str(&format!("[{seg}]"));
                cur = seg.parse::<usize>().ok().and_then(|i| a.get(i));
            }
            other => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&seg);
                cur = other.and_then(|v| v.get(&seg));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn coercing_an_owned_value_gives_what_coercing_a_borrowed_one_gives() {
        let values = [
            json!("42"),
            json!(" 7 "),
            json!("x"),
            json!("true"),
            json!("[1]"),
            json!("{}"),
            json!(42),
            json!(-3),
            json!(1.5),
            json!(2.0),
            json!(u64::MAX),
            json!(true),
            json!([1, "a"]),
            json!({"a": 1}),
            json!(null),
        ];
        for dt in [
            DataType::String,
            DataType::Integer,
            DataType::Number,
            DataType::Boolean,
            DataType::Array,
            DataType::Object,
        ] {
            for v in &values {
                assert_eq!(coerce_owned(dt, v.clone()), coerce(dt, v), "{dt:?} {v}");
            }
        }
    }

    #[test]
    fn coercion_table() {
        use DataType::*;
        let ok = [
            (String, json!("x"), json!("x")),
            (String, json!(1001), json!("1001")),
            (String, json!(true), json!("true")),
            (Integer, json!(42), json!(42)),
            (Integer, json!("42"), json!(42)),
            (Integer, json!(" -7 "), json!(-7)),
            (Integer, json!(42.0), json!(42)),
            (Number, json!(1.5), json!(1.5)),
            (Number, json!("1.5"), json!(1.5)),
            (Number, json!("3"), json!(3)),
            (Boolean, json!(true), json!(true)),
            (Boolean, json!("TRUE"), json!(true)),
            (Boolean, json!("false"), json!(false)),
        ];
        for (dt, input, want) in ok {
            assert_eq!(coerce(dt, &input).unwrap(), want, "{dt:?} {input}");
        }
        let bad = [
            (String, json!({"a": 1})),
            (String, json!([1])),
            (Integer, json!("4.5")),
            (Integer, json!(4.5)),
            (Integer, json!("abc")),
            (Integer, json!(true)),
            (Number, json!("NaN")),
            (Number, json!("inf")),
            (Number, json!("1e999")),
            (Number, json!(false)),
            (Boolean, json!("yes")),
            (Boolean, json!(1)),
        ];
        for (dt, input) in bad {
            assert!(coerce(dt, &input).is_err(), "{dt:?} {input} should fail");
        }
    }

    #[test]
    fn field_paths_name_array_positions() {
        let v = json!({"items": [{"q": 1}, {"q": 2}, {"quantity": "x"}], "a/b": {"c": 1}});
        assert_eq!(field_path(&v, "/items/2/quantity"), "items[2].quantity");
        assert_eq!(field_path(&v, "/a~1b/c"), "a/b.c");
        assert_eq!(field_path(&v, ""), "");
    }

    #[test]
    fn argument_strings() {
        assert_eq!(parse_arguments(&json!("{\"a\":1}")).unwrap()["a"], json!(1));
        assert!(parse_arguments(&json!("{\"a\":")).is_err());
        assert!(parse_arguments(&json!("[1]")).is_err());
        assert!(parse_arguments(&json!(5)).is_err());
        assert!(parse_arguments(&json!(null)).unwrap().is_empty());
    }
}
