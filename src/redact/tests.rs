//! Tests of redaction.

use super::*;
use crate::redact::escapes;
use serde_json::json;

fn red(s: &str) -> Redactor {
    Redactor::new(&[s.to_string()])
}

#[test]
fn a_value_is_redacted_in_its_strings_keys_and_numbers_and_nothing_else_changes() {
    let r = red("s3cr3t/+&x");
    let v = json!({"a": "Bearer s3cr3t/+&x", "s3cr3t/+&x": {"n": [1, "k=s3cr3t%2F%2B%26x", null, true]},
        "plain": "nothing here", "list": ["czNjcjN0LysmeA==", 2.5]});
    let want = json!({"a": "Bearer [REDACTED]", "[REDACTED]": {"n": [1, "k=[REDACTED]", null, true]},
        "plain": "nothing here", "list": ["[REDACTED]A==", 2.5]});
    assert_eq!(r.kept_value(&v), want);
    assert_eq!(r.into_value(v.clone()), want);
    assert_eq!(r.into_text("x s3cr3t/+&x y".into()), "x [REDACTED] y");
    assert_eq!(r.into_text("clean".into()), "clean");
    let h = vec![
        ("A".to_string(), "s3cr3t/+&x".to_string()),
        ("B".into(), "ok".into()),
    ];
    let want_h = vec![
        ("A".to_string(), "[REDACTED]".to_string()),
        ("B".into(), "ok".into()),
    ];
    assert_eq!(r.headers(&h), want_h);
    assert_eq!(r.into_headers(h), want_h);
    let n = Redactor::new(&["123456".to_string()]);
    assert_eq!(
        n.into_value(json!({"id": 123456, "k": 7})),
        json!({"id": "[REDACTED]", "k": 7})
    );
    assert_eq!(Redactor::default().into_value(v.clone()), v);
}

/// A kept value that holds a secret only across its structure is kept as its redacted text; a
/// clean one as the tree, redacted string by string.
#[test]
fn a_kept_value_never_holds_a_secret_across_its_structure() {
    let r = Redactor::new(&["1,2".to_string(), "s3cr3t".to_string()]);
    let spanning = json!({"lines": [1, 2], "note": "s3cr3t"});
    let kept = r.kept_value(&spanning);
    let text = kept.as_str().expect("kept as text");
    assert!(!text.contains("1,2") && !text.contains("s3cr3t"), "{text}");
    assert!(text.contains("[REDACTED]"), "{text}");
    assert_eq!(r.into_kept_value(spanning), kept);
    assert_eq!(
        r.into_kept_value(json!({"lines": [2, 1], "note": "s3cr3t"})),
        json!({"lines": [2, 1], "note": "[REDACTED]"})
    );
    let k = Redactor::new(&["7,\"k\":8".to_string()]);
    assert!(k.kept_value(&json!({"a": 7, "k": 8})).is_string());
    let none = Redactor::default();
    assert_eq!(none.kept_value(&json!([1, 2])), json!([1, 2]));
    // Writing a string adds escapes, and a needle can overlap one: `\n` written for a newline,
    // then `abc`, holds `nabc`, which the string does not.
    let n = Redactor::new(&["nabc".to_string()]);
    let kept = n.kept_value(&json!({"k": "\nabc"}));
    assert!(kept.as_str().is_some_and(|t| !t.contains("nabc")), "{kept}");
    assert_eq!(n.kept_value(&json!({"k": "abc"})), json!({"k": "abc"}));
    // A needle within a literal.
    assert!(
        Redactor::new(&["ru".to_string()])
            .kept_value(&json!([true]))
            .is_string()
    );
}

/// Only needles with JSON's punctuation, a quote or a backslash, or within a literal, can lie
/// across structure; any other needle is found in a string, key or number if at all.
#[test]
fn a_needle_crosses_structure_only_with_json_syntax_in_it() {
    for n in ["1,2", "a:b", "[x", "x}", "\"k", "a\\b", "ull", "true", "e"] {
        assert!(super::crosses_structure(n), "{n}");
    }
    for n in ["s3cr3t", "sk-live_9f/+=", "12", "truex", "A-1001"] {
        assert!(!super::crosses_structure(n), "{n}");
    }
}

/// A redactor as `Redactor::new` builds it when aho-corasick refuses the needles.
fn red_plain(secrets: &[&str]) -> Redactor {
    let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
    let mut r = Redactor::new(&secrets);
    r.matcher = None;
    r.json_matcher = None;
    r
}

/// Without its automaton a redactor looks for each needle in turn: it finds what the
/// automaton finds, leaves no form behind, and never calls JSON text clean.
#[test]
fn a_redactor_without_its_automaton_still_redacts_every_form() {
    for secret in ["s3cr3t/+&x", "hunter2", "кл\"ю/ч\t"] {
        let (auto, plain) = (red(secret), red_plain(&[secret]));
        let pct = utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string();
        let v =
            json!({"a": format!("Bearer {secret}"), secret: [1, format!("q={pct}")], "n": "clean"});
        let compact = serde_json::to_string(&v).unwrap();
        for text in [
            format!("x{secret}y"),
            format!("hun{secret}{secret}ter {pct}"),
            compact.clone(),
            "nothing here at all".to_string(),
        ] {
            assert_eq!(plain.finds(&text), auto.finds(&text), "{text:?}");
            let out = plain.text(&text);
            assert!(!auto.finds(&out), "{secret:?} left in {out:?}");
        }
        assert_eq!(plain.text(&format!("x{secret}y")), "x[REDACTED]y");
        assert_eq!(plain.text("nothing here at all"), "nothing here at all");
        assert_eq!(plain.into_value(v.clone()), auto.into_value(v.clone()));
        assert!(!plain.is_clean_json(&compact) && !plain.is_clean_json("{\"n\":1}"));
    }
}

/// A secret held by `[REDACTED]`, or one completed across a replacement's edge, neither hangs
/// the redactor nor survives it: another marker is used, and the rounds are bounded.
#[test]
fn a_secret_inside_the_marker_neither_hangs_nor_survives() {
    let cases: [(&[&str], &str); 7] = [
        (&["ED]"], "[redacted]"),
        (&["[REDACTED]"], "[redacted]"),
        (&["E"], "[redacted]"),
        (&["E", "e"], "***"),
        (&["["], "***"),
        (&["[", "*"], ""),
        (&["a["], REDACTED),
    ];
    for (secrets, marker) in cases {
        for r in [
            Redactor::new(&secrets.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            red_plain(secrets),
        ] {
            assert_eq!(r.marker, marker, "{secrets:?}");
            for s in secrets {
                for text in [
                    s.to_string(),
                    format!("a{s}b{s}{s}c [REDACTED] *** [secret]"),
                    format!("{}{s}", "a".repeat(20)),
                ] {
                    let out = r.text(&text);
                    assert!(!r.finds(&out), "{secrets:?}: {text:?} left {out:?}");
                    assert!(out.len() <= text.len() * REDACTED.len(), "{out:?}");
                }
            }
        }
    }
    // `a[` in twenty `a`s and a `[`: every round makes the next match, so after the last
    // round the whole text is the marker.
    assert_eq!(red("a[").text(&format!("{}[", "a".repeat(20))), REDACTED);
    assert_eq!(red("a[").text("xa[y"), "x[REDACTED]y");
}

/// Texts shorter than every form of the secrets are passed over unscanned; a text exactly as
/// long as the shortest form is still found.
#[test]
fn a_text_as_short_as_the_shortest_form_is_still_scanned() {
    let r = red("abc");
    assert_eq!(r.text("abc"), REDACTED);
    assert_eq!(r.text("ab"), "ab");
    assert!(r.finds("xabcx") && !r.finds("ab"));
    assert!(!Redactor::default().finds(""));
}

/// A text that is one form of a secret whole is redacted as scanning it would redact it: to the
/// marker.
#[test]
fn a_text_that_is_a_whole_form_of_a_secret_becomes_the_marker() {
    for secret in [
        "hunter2\"x/é+ &\t",
        "tok_3n-9.Zq",
        "a/b+c=",
        "pässwörd",
        "[REDACTED]",
    ] {
        let r = red(secret);
        for n in &r.needles {
            assert_eq!(r.redacted(n), r.scanned(n), "{secret}: {n}");
            assert_eq!(r.redacted(n).as_deref(), Some(r.marker), "{secret}: {n}");
        }
    }
}

/// Every form of a secret, held by a string or a key of a JSON value, is found in the value's
/// compact text: what `redact_value` would touch, `is_clean_json` never calls clean.
#[test]
fn every_form_held_in_json_is_found_in_its_text() {
    for secret in ["hunter2\"x/é+ &\t", "tok_3n-9.Zq", "a/b+c=", "pässwörd"] {
        let r = red(secret);
        for n in &r.needles {
            for v in [json!({"x": format!("<{n}>")}), json!({ n.clone(): [1] })] {
                let mut redacted = v.clone();
                r.redact_value(&mut redacted);
                assert_ne!(redacted, v, "{n}");
                let text = serde_json::to_string(&v).unwrap();
                assert!(!r.is_clean_json(&text), "{secret}: {n} in {text}");
            }
        }
        assert!(r.is_clean_json(r#"{"order":{"status":"shipped"}}"#));
    }
}

#[test]
fn redacts_everywhere() {
    let r = red("s3cr3t/+&x");
    assert_eq!(r.text("Bearer s3cr3t/+&x"), "Bearer [REDACTED]");
    assert_eq!(
        r.text("https://a/b?k=s3cr3t%2F%2B%26x"),
        "https://a/b?k=[REDACTED]"
    );
    assert_eq!(r.text("k=s3cr3t%2F%2B%26x&y=1"), "k=[REDACTED]&y=1");
    let v = r.into_value(json!({"echo": {"auth": "x s3cr3t/+&x"}, "s3cr3t/+&x": 1}));
    assert!(!v.to_string().contains("s3cr3t"), "{v}");
}

#[test]
fn every_encoding_is_found() {
    let secret = "hunter2\"x/é+ &";
    let r = red(secret);
    let mut encoded = vec![secret.to_string()];
    // JSON-escaped 1..=4 times, as an echo inside an echo would show it.
    let mut cur = secret.to_string();
    for _ in 0..4 {
        cur = serde_json::to_string(&cur).unwrap();
        encoded.push(cur.clone());
    }
    encoded.push(utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string());
    encoded.push(
        utf8_percent_encode(secret, URI_COMPONENT)
            .to_string()
            .to_lowercase(),
    );
    encoded.push(serde_urlencoded::to_string([("k", secret)]).unwrap());
    let b64 = base64::engine::general_purpose::STANDARD;
    for prefix in ["", "u:", "us:", "use:"] {
        encoded.push(b64.encode(format!("{prefix}{secret}")));
        encoded.push(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{prefix}{secret}")),
        );
    }
    encoded.push(secret.bytes().map(|b| format!("{b:02x}")).collect());
    encoded.push(json_escape(secret, true, true));
    for e in encoded {
        let out = r.text(&format!("before {e} after"));
        assert!(out.contains(REDACTED), "{e} -> {out}");
        // What is left around the redaction is quoting or a few boundary characters.
        let rest = out
            .replace("before ", "")
            .replace(" after", "")
            .replace(REDACTED, "");
        let rest: String = rest.chars().filter(|c| !matches!(c, '"' | '\\')).collect();
        assert!(rest.len() <= 12 && !rest.contains("hunt"), "{e} -> {out}");
    }
}

#[test]
fn cut_keeps_no_fragment() {
    let secret = "hunter2-very-secret";
    let r = red(secret);
    let body = format!(
        "{{\"data\": \"{}{secret}{}\"}}",
        "x".repeat(20),
        "y".repeat(20)
    );
    let no_fragment = |out: &str, what: &str| {
        for len in 3..=secret.len() {
            for start in 0..=secret.len() - len {
                let frag = &secret[start..start + len];
                assert!(!out.contains(frag), "{what} kept {frag:?}: {out}");
            }
        }
    };
    for max in 0..body.len() + 5 {
        let (out, _) = r.cut(&body, max, false);
        assert!(out.len() <= max || out.len() == body.len() - secret.len() + REDACTED.len());
        no_fragment(&out, &format!("cut at {max}"));
        // The body itself read only up to a cap (the secret may be cut in two already).
        let read = &body[..max.min(body.len())];
        let (out, _) = r.cut(read, usize::MAX, max < body.len());
        no_fragment(&out, &format!("read cap {max}"));
    }
}

#[test]
fn empty_secret_is_ignored() {
    let r = Redactor::new(&[String::new()]);
    assert!(r.is_empty());
    assert_eq!(r.text("abc"), "abc");
}

/// `s` with every other character (the second, the fourth, ...) written by `escape`, as a
/// hostile upstream might echo a secret.
fn every_other(s: &str, escape: impl Fn(char) -> String) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| if i % 2 == 1 { escape(c) } else { c.to_string() })
        .collect()
}

/// A character as JSON's `\uXXXX`, a surrogate pair past the BMP.
fn json_unicode(c: char) -> String {
    let mut units = [0u16; 2];
    c.encode_utf16(&mut units)
        .iter()
        .map(|u| format!("\\u{u:04x}"))
        .collect()
}

/// `s` with every other character written as `\uXXXX`.
fn half_escaped(s: &str) -> String {
    every_other(s, json_unicode)
}

/// Every level of `s` with its escapes undone, `s` first.
fn views(s: &str) -> Vec<String> {
    let mut out = vec![s.to_string()];
    out.extend(escapes::levels(s).into_iter().map(|l| l.text));
    out
}

fn holds_no_piece(out: &str, secret: &str) {
    let chars: Vec<char> = secret.chars().collect();
    for v in views(out) {
        for i in 0..chars.len().saturating_sub(2) {
            let piece: String = chars[i..i + 3].iter().collect();
            assert!(!v.contains(&piece), "{piece:?} in {v:?} (from {out:?})");
        }
    }
}

/// A secret escaped only in part (`b\u0065n\u0063h`), in a text, in a JSON string, and in a
/// string holding JSON (escaped again), with characters past the BMP: found and cut out over the
/// bytes it was written in, the text around it kept.
#[test]
fn a_secret_escaped_in_part_is_found_behind_its_escapes() {
    let secret = "bench-s3cret-vålue😀x";
    let r = red(secret);
    let mixed = half_escaped(secret);
    let text = format!("echo: \"{mixed}\" and more");
    assert!(r.finds(&text));
    let out = r.text(&text);
    assert_eq!(out, "echo: \"[REDACTED]\" and more");
    // Twice escaped, inside JSON inside a string, with another echo beside it.
    let inner = serde_json::to_string(&json!({ "k": mixed, "raw": secret })).unwrap();
    let outer = serde_json::to_string(&json!({ "inner": inner })).unwrap();
    let out = r.text(&outer);
    holds_no_piece(&out, secret);
    assert!(out.starts_with(r#"{"inner":"{\"k\":\"[REDACTED]\",\"raw\":\"[REDACTED]\"}"}"#));
    assert!(!r.is_clean_json(&outer));
    let mut v = json!({ "inner": inner, "list": [text] });
    r.redact_value(&mut v);
    holds_no_piece(&v.to_string(), secret);
    // Percent-encoded characters and HTML references, mixed with JSON escapes and plain ones.
    for mixed in [
        "b%65nch-s%33cret-v%C3%A5lue%F0%9F%98%80x",
        "b&#101;nch-s&#x33;cret-v&#229;lue&#x1F600;x",
        "b\\u0065nch-s%33cret-v&#229;lue\\ud83d\\ude00x",
        "b\\x65nch-s\\u{33}cret-v\\u{e5}lue\\u{1F600}x",
        "b\\x65nch-s3cret-v\\xc3\\xa5lue\\xF0\\x9F\\x98\\x80x",
    ] {
        let out = r.text(&format!("<p>{mixed}</p>"));
        assert_eq!(out, "<p>[REDACTED]</p>", "{mixed}");
    }
    // Escapes that undo to no secret change nothing.
    for clean in [
        r"a\u0062c \n \\ \q \u12",
        r"\ud800 alone",
        "no backslash",
        "100% & 50%2 &amp; &#xZZ; %E2%82 &#999999999;",
    ] {
        assert_eq!(r.text(clean), clean);
        assert!(!r.finds(clean));
    }
}

/// A text cut within a secret escaped in part, or within one of its escapes, keeps no piece of
/// it at any level of undone escapes.
#[test]
fn a_cut_keeps_no_piece_of_a_secret_escaped_in_part() {
    let secret = "hunter2-very-secret";
    let r = red(secret);
    for escaped in [
        half_escaped(secret),
        half_escaped(secret).replace('\\', "\\\\"),
        every_other(secret, |c| format!("%{:02X}", c as u32)),
        every_other(secret, |c| format!("&#x{:X};", c as u32)),
        every_other(secret, |c| format!("\\x{:02x}", c as u32)),
        every_other(secret, |c| format!("\\u{{{:x}}}", c as u32)),
    ] {
        let body = format!(
            "{{\"data\": \"{}{escaped}{}\"}}",
            "x".repeat(9),
            "y".repeat(9)
        );
        for max in 0..body.len() + 2 {
            let (out, _) = r.cut(&body, max, false);
            assert!(out.len() <= max.max(body.len() - escaped.len() + REDACTED.len()));
            holds_no_piece(&out, secret);
            let read = &body[..max.min(body.len())];
            let (out, _) = r.cut(read, usize::MAX, max < body.len());
            holds_no_piece(&out, secret);
        }
    }
}
