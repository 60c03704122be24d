//! A record's MessagePack (`StoredRef`), written straight into a buffer: the bytes `rmp_serde`
//! writes for it (structs as arrays by position, unit variants by name, `Result` as a one-entry
//! map, each integer, string, array and map length in its shortest form), so `rmp_serde` reads
//! it back as `Stored`. Through serde the benchmark's record took about 3,700 instructions on
//! the serving thread, for some forty values, each passed through serde's generic calls and an
//! `io::Write`; walked here, with `rmp`'s own marker and length writers, about 2,400
//! (callgrind, BENCHMARKS.md, issue 16, twenty-second and twenty-third sessions). The tests
//! compare both, byte for byte, on records that take every marker.

use serde_json::Value;

use super::StoredRef;
use crate::model::call::{RecordedRequest, RecordedResponse};
use crate::store::StoreError;

/// Append `s` to `out`. Fails only on a string, array or map longer than MessagePack can say
/// (4 GiB, or 2³² entries), as `rmp_serde` does.
pub(super) fn write_stored(out: &mut Vec<u8>, s: &StoredRef<'_>) -> Result<(), StoreError> {
    array_len(out, 16)?;
    opt_str(out, s.tool.as_deref())?;
    str(out, s.webhook_id)?;
    str(out, s.source.as_str())?;
    // `Result<i64, String>`: a newtype variant, a map from its name to its value.
    map_len(out, 1)?;
    match &s.started {
        Ok(nanos) => {
            str(out, "Ok")?;
            sint(out, *nanos);
        }
        Err(text) => {
            str(out, "Err")?;
            str(out, text)?;
        }
    }
    uint(out, s.duration_ms);
    str(out, s.outcome.as_str())?;
    opt_str(out, s.error.as_deref())?;
    value(out, s.arguments)?;
    match s.request {
        Some(r) => request(out, r)?,
        None => nil(out),
    }
    match s.response {
        Some(r) => response(out, r)?,
        None => nil(out),
    }
    uint(out, u64::from(s.attempts));
    opt_str(out, s.agent.as_deref())?;
    opt_str(out, s.conversation_id.as_deref())?;
    opt_str(out, s.caller.as_deref())?;
    match s.context {
        Some(v) => value(out, v)?,
        None => nil(out),
    }
    opt_str(out, s.response_json)
}

fn request(out: &mut Vec<u8>, r: &RecordedRequest) -> Result<(), StoreError> {
    array_len(out, 4)?;
    str(out, &r.method)?;
    str(out, &r.url)?;
    pairs(out, &r.headers)?;
    value(out, &r.body)
}

fn response(out: &mut Vec<u8>, r: &RecordedResponse) -> Result<(), StoreError> {
    array_len(out, 3)?;
    uint(out, u64::from(r.status));
    pairs(out, &r.headers)?;
    value(out, &r.body)
}

/// Headers: an array of two-element arrays.
fn pairs(out: &mut Vec<u8>, pairs: &[(String, String)]) -> Result<(), StoreError> {
    array_len(out, pairs.len())?;
    for (name, value) in pairs {
        array_len(out, 2)?;
        str(out, name)?;
        str(out, value)?;
    }
    Ok(())
}

/// A JSON value as serde_json hands it to a serializer: integers as `u64` when not negative,
/// else `i64`, other numbers as `f64`.
fn value(out: &mut Vec<u8>, v: &Value) -> Result<(), StoreError> {
    match v {
        Value::Null => nil(out),
        Value::Bool(b) => {
            let _ = rmp::encode::write_bool(out, *b);
        }
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                uint(out, u);
            } else if let Some(i) = n.as_i64() {
                sint(out, i);
            } else {
                let _ = rmp::encode::write_f64(out, n.as_f64().unwrap_or(0.0));
            }
        }
        Value::String(s) => str(out, s)?,
        Value::Array(items) => {
            array_len(out, items.len())?;
            for item in items {
                value(out, item)?;
            }
        }
        Value::Object(map) => {
            map_len(out, map.len())?;
            for (k, item) in map {
                str(out, k)?;
                value(out, item)?;
            }
        }
    }
    Ok(())
}

// The markers and lengths are `rmp`'s (what `rmp_serde` calls too); only the walk over the
// record is written here. Writing into a `Vec` cannot fail: the only error left is a length
// past what MessagePack can say.

fn nil(out: &mut Vec<u8>) {
    out.push(rmp::Marker::Null.to_u8());
}

fn opt_str(out: &mut Vec<u8>, s: Option<&str>) -> Result<(), StoreError> {
    match s {
        Some(s) => str(out, s),
        None => {
            nil(out);
            Ok(())
        }
    }
}

fn too_long() -> StoreError {
    StoreError::Corrupt("a call history value too long for MessagePack".into())
}

/// `n` as a MessagePack length (at most 2³² − 1).
fn length(n: usize) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| too_long())
}

// Most strings, arrays and maps of a record are short: their one-byte marker (rmp's `Marker`)
// is pushed here, since whether the compiler inlines rmp's general writers changes from build
// to build, by about 1.8k instructions a call when it does not (BENCHMARKS.md, issue 16,
// twenty-fourth session).

fn str(out: &mut Vec<u8>, s: &str) -> Result<(), StoreError> {
    if s.len() < 32 {
        out.push(rmp::Marker::FixStr(s.len() as u8).to_u8());
    } else {
        rmp::encode::write_str_len(out, length(s.len())?).map_err(|_| too_long())?;
    }
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn array_len(out: &mut Vec<u8>, n: usize) -> Result<(), StoreError> {
    if n < 16 {
        out.push(rmp::Marker::FixArray(n as u8).to_u8());
        return Ok(());
    }
    rmp::encode::write_array_len(out, length(n)?).map_err(|_| too_long())?;
    Ok(())
}

fn map_len(out: &mut Vec<u8>, n: usize) -> Result<(), StoreError> {
    if n < 16 {
        out.push(rmp::Marker::FixMap(n as u8).to_u8());
        return Ok(());
    }
    rmp::encode::write_map_len(out, length(n)?).map_err(|_| too_long())?;
    Ok(())
}

fn uint(out: &mut Vec<u8>, v: u64) {
    // Into a `Vec`: cannot fail.
    let _ = rmp::encode::write_uint(out, v);
}

fn sint(out: &mut Vec<u8>, v: i64) {
    // Into a `Vec`: cannot fail.
    let _ = rmp::encode::write_sint(out, v);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{CallId, CallRecord, Outcome, Source};

    fn record(i: usize) -> CallRecord {
        let outcomes = [
            Outcome::Success,
            Outcome::HttpError,
            Outcome::Timeout,
            Outcome::NetworkError,
            Outcome::Blocked,
            Outcome::InvalidArguments,
            Outcome::ConfigError,
            Outcome::Forbidden,
        ];
        let sources = [Source::Invoke, Source::Test, Source::Chat, Source::Mcp];
        let long = |n: usize| "é".repeat(n / 2) + &"x".repeat(n % 2);
        let many = |n: usize| {
            (0..n)
                .map(|k| (format!("h{k}"), long(k * 7)))
                .collect::<Vec<_>>()
        };
        let object: serde_json::Map<String, Value> = (0..i * 3)
            .map(|k| (format!("k{k}"), json!(k as i64 - 40)))
            .collect();
        CallRecord {
            id: CallId::new(),
            tool: (i % 2 == 0).then(|| long(i * 13)),
            webhook_id: format!("wh_{}", long(i * 40)),
            source: sources[i % sources.len()],
            started_at: if i % 5 == 4 {
                "not a time".into()
            } else {
                "2026-12-07T09:41:03.123456789Z".into()
            },
            duration_ms: [0, 127, 128, 255, 256, 65_535, 65_536, 1 << 32, u64::MAX][i % 9],
            outcome: outcomes[i % outcomes.len()],
            error: (i % 3 == 1).then(|| long(300 * i)),
            arguments: json!({
                "n": [i as i64 * -1_000_003, -1, -32, -33, -128, -129, -32_768, -32_769,
                      -2_147_483_648i64, -2_147_483_649i64, i64::MIN, u64::MAX, 1.5, -0.25, 1e300],
                "flags": [true, false, null],
                "nested": {"deep": [[], {}, [object.clone()]]},
                "text": long(i * 5_000),
            }),
            request: (i % 4 != 3).then(|| RecordedRequest {
                method: "POST".into(),
                url: format!("http://127.0.0.1:9/{}", long(i * 30)),
                headers: many(i * 4),
                body: Value::Object(object.clone()),
            }),
            response: (i % 4 != 2).then(|| RecordedResponse {
                status: [200, 404, 599][i % 3],
                headers: many(i * 2 + 1),
                body: if i % 2 == 0 {
                    Value::Null
                } else {
                    json!(long(i * 100))
                },
            }),
            attempts: [1, 200, 70_000][i % 3],
            agent: (i % 2 == 1).then(|| "support".into()),
            conversation_id: (i % 3 == 0).then(|| long(70_000 * (i % 2))),
            caller: (i % 2 == 0).then(|| "key_1".into()),
            context: match i {
                // Past 65,535 entries: the 32-bit array and map lengths.
                7 => Some(Value::Array(vec![Value::Null; 70_000])),
                8 => Some(Value::Object(
                    (0..70_000).map(|k| (k.to_string(), Value::Null)).collect(),
                )),
                _ => (i % 3 != 0).then(|| json!({"tenant": long(i)})),
            },
        }
    }

    /// What `rmp_serde` wrote for a record, byte for byte, for records that take every
    /// integer, string, array and map marker, both `Result` variants and every variant name;
    /// and `rmp_serde` reads it back.
    #[test]
    fn writes_what_rmp_serde_writes() {
        for i in 0..40 {
            let r = record(i);
            let body = (i % 2 == 0).then_some(r#"{"order":{"number":"A-1001"}}"#);
            let stored = super::super::to_stored(&r, body);
            let mut ours = Vec::new();
            write_stored(&mut ours, &stored).expect("encodes");
            let theirs = rmp_serde::to_vec(&stored).expect("rmp_serde");
            assert_eq!(ours, theirs, "record {i}");
            let back: super::super::Stored = rmp_serde::from_slice(&ours).expect("reads back");
            assert_eq!(back.duration_ms, r.duration_ms);
            assert_eq!(back.arguments, r.arguments);
            assert_eq!(back.request, r.request);
        }
    }
}
