//! A JSON body that already is the text serde_json would write of it, recognised without writing
//! it again.
//!
//! `result::verbatim_json` hands an upstream's JSON on as the compact text serde_json writes of it
//! (transcoding it token by token). Most APIs already answer in that form: no whitespace between
//! tokens, no escapes, integers. For those the transcoded text is the body itself, byte for byte,
//! and checking that costs about two thirds of transcoding (BENCHMARKS.md, issue 16, seventeenth
//! session). Anything this check is not sure of goes to the transcoder, which stays the one
//! judge of what is handed on.

use serde::de::IgnoredAny;

/// Deepest nesting handed on as it is: serde_json's own limit for what it parses into a tree
/// (128 levels deep fails there), so the text can always be read back.
const MAX_DEPTH: usize = 127;

/// Most digits of an integer taken as it is: an integer of at most this many digits is an `i64`
/// or a `u64`, which serde_json writes back digit for digit; longer ones may be read as floats.
const MAX_DIGITS: usize = 18;

/// `body` as text when it is valid JSON that serde_json would write back unchanged: compact, no
/// escape in any string, integers only (not `-0`), at most `MAX_DEPTH` deep, UTF-8, and at most
/// `max` bytes. `None` means "not sure", never "not JSON".
pub fn already_compact(body: &[u8], max: usize) -> Option<String> {
    if body.is_empty() || body.len() > max || body.contains(&b'\\') || !written_as_is(body) {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    serde::Deserialize::deserialize(&mut de)
        .map(|_: IgnoredAny| ())
        .ok()?;
    de.end().ok()?;
    String::from_utf8(body.to_vec()).ok()
}

/// Whether every token of `body` outside its strings is written as serde_json writes it (the
/// grammar itself is checked by parsing). Strings hold no backslash (checked before), so a quote
/// always ends one.
fn written_as_is(body: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        match b {
            b'"' => match body[i + 1..].iter().position(|&c| c == b'"') {
                Some(end) => i += end + 2,
                None => return false,
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let len = body[i..]
                    .iter()
                    .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .unwrap_or(body.len() - i);
                let number = &body[i..i + len];
                let digits = number.strip_prefix(b"-").unwrap_or(number);
                if digits.is_empty()
                    || digits.len() > MAX_DIGITS
                    || !digits.iter().all(u8::is_ascii_digit)
                    || number == b"-0"
                {
                    return false;
                }
                i += len;
            }
            b' ' | b'\t' | b'\n' | b'\r' => return false,
            _ => i += 1,
        }
    }
    true
}

/// Write `text` as a JSON string, byte for byte what serde_json writes. The answer of a call
/// carries its response twice, once as JSON and once as this string (`content`), and the text is
/// the response's compact JSON: full of quotes and with no control character, where serde_json
/// writes each quote's run and escape separately. One pass over the bytes here, each pushed as it
/// comes: with a quote every few bytes, the runs between them are too short for copying each
/// (or finding each quote with `memchr`) to pay. A text with a control character (never compact
/// JSON) is left to serde_json.
pub fn write_string(out: &mut Vec<u8>, text: &str) -> serde_json::Result<()> {
    let bytes = text.as_bytes();
    let start = out.len();
    out.reserve(bytes.len() + bytes.len() / 4 + 2);
    out.push(b'"');
    for &b in bytes {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        } else if b < 0x20 {
            out.truncate(start);
            return serde_json::to_writer(out, text);
        }
        out.push(b);
    }
    out.push(b'"');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the transcoder `result::verbatim_json` falls back to writes of `body`, if it is JSON.
    fn transcoded(body: &[u8]) -> Option<String> {
        crate::call::result::transcoded(body, usize::MAX)
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let alphabet = [
            '"', '\\', 'a', '{', ':', '\n', '\t', '\u{1}', '\u{1f}', '\u{7f}', 'é', '😀', '/',
        ];
        let mut texts = vec![
            String::new(),
            r#"{"order":{"number":"A-1001","status":"shipped"}}"#.to_string(),
            r#"\"\\""#.to_string(),
        ];
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 12) as usize;
            texts.push(
                (0..len)
                    .map(|i| alphabet[((seed >> (i * 4)) % alphabet.len() as u64) as usize])
                    .collect(),
            );
        }
        for text in texts {
            // After what the answer already holds: a text left to serde_json part-way through
            // must not leave the part written before.
            let mut ours = b"{\"content\":".to_vec();
            write_string(&mut ours, &text).expect("write");
            let mut theirs = b"{\"content\":".to_vec();
            serde_json::to_writer(&mut theirs, &text).expect("serde_json");
            assert_eq!(ours, theirs, "{text:?}");
        }
    }

    #[test]
    fn what_it_takes_is_what_the_transcoder_writes() {
        let taken = [
            r#"{"order":{"number":"A-1001","status":"shipped","eta":"2026-11-24"}}"#,
            r#"[1,-2,0,123456789012345678,-123456789012345678,true,false,null,"é😀</"]"#,
            r#"{"k":1,"k":2,"":{},"a":[],"b":[[[]]]}"#,
            r#""just a string""#,
            "42",
            "{\"del\":\"\u{7f}\"}",
        ];
        for b in taken {
            let text = already_compact(b.as_bytes(), 1000);
            assert_eq!(text.as_deref(), Some(b), "{b}");
            assert_eq!(transcoded(b.as_bytes()).as_deref(), Some(b), "{b}");
        }
    }

    /// Short strings over JSON's own characters, by the thousand: whatever is taken as it is, is
    /// the transcoder's text.
    #[test]
    fn nothing_is_taken_that_the_transcoder_would_write_otherwise() {
        const ALPHABET: &[u8] = b"[]{}\",:-+.0123456789eEtrufalsn \\\n\x7f\xc3\xa9";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize
        };
        let mut taken = 0;
        for _ in 0..200_000 {
            let len = 1 + next() % 10;
            let body: Vec<u8> = (0..len)
                .map(|_| ALPHABET[next() % ALPHABET.len()])
                .collect();
            if let Some(text) = already_compact(&body, 1000) {
                taken += 1;
                assert_eq!(Some(&text), transcoded(&body).as_ref(), "{body:?}");
            }
        }
        assert!(taken > 100, "only {taken} bodies were valid compact JSON");
    }

    #[test]
    fn what_the_transcoder_would_change_or_refuse_is_left_to_it() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        for b in [
            // Whitespace, escapes, floats, `-0`, integers that may not fit.
            " 42",
            "[1, 2]",
            "{\"a\":\n1}",
            r#"{"a":"\u00e9"}"#,
            r#"{"a":"x\"y"}"#,
            "2.5",
            "1e2",
            "-0",
            "[-0]",
            "18446744073709551615",
            "1234567890123456789",
            // Not JSON, or not only JSON.
            "",
            "{",
            "\"open",
            "[1,]",
            "01",
            "-",
            "{\"a\":1} {}",
            "nul",
            "{\"a\" 1}",
        ] {
            assert_eq!(already_compact(b.as_bytes(), 1000), None, "{b:?}");
        }
        // Nesting: serde_json's depth (127 taken as it is), deeper is not.
        let ok = deep(MAX_DEPTH);
        assert_eq!(
            already_compact(ok.as_bytes(), 1000).as_deref(),
            Some(ok.as_str())
        );
        assert_eq!(transcoded(ok.as_bytes()).as_deref(), Some(ok.as_str()));
        assert_eq!(already_compact(deep(MAX_DEPTH + 1).as_bytes(), 1000), None);
        assert_eq!(transcoded(deep(MAX_DEPTH + 1).as_bytes()), None);
        // Invalid UTF-8 in a string, and a body longer than `max`.
        assert_eq!(already_compact(b"[\"\xff\"]", 1000), None);
        assert_eq!(already_compact(b"[1,2]", 4), None);
        assert_eq!(already_compact(b"[1,2]", 5).as_deref(), Some("[1,2]"));
    }
}
