//! Names and other short texts users give definitions: identifier rules, and the characters no
//! name may hold (controls, line breaks, bidi overrides that make a name read differently).

use super::validate::FieldError;

/// `^[A-Za-z_][A-Za-z0-9_]{0,63}$`: dynamic field names and secret names.
pub fn is_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `^[A-Za-z0-9_-]{1,64}$`: tool names (as OpenAI requires of function names).
pub fn is_tool_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// A dotted path whose segments are non-empty `[A-Za-z0-9_-]+` (context paths, response fields).
pub fn is_dotted_path(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        })
}

/// Bidirectional control characters: they reorder how the text around them is displayed, so a
/// name holding one can look like another.
const BIDI_CONTROLS: [char; 12] = [
    '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}',
    '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
];

/// Problems with a free-text name (webhook, subscription): empty, over 200 characters, or holding
/// a control character (NUL, line breaks, tabs) or a bidi control.
pub fn check_display_name(field: &str, name: &str) -> Option<FieldError> {
    if name.trim().is_empty() {
        Some(FieldError::new(field, "name must not be empty"))
    } else if name.chars().count() > 200 {
        Some(FieldError::new(field, "name is longer than 200 characters"))
    } else if name
        .chars()
        .any(|c| c.is_control() || BIDI_CONTROLS.contains(&c))
    {
        Some(FieldError::new(
            field,
            "name must not contain control characters, line breaks or bidirectional overrides",
        ))
    } else {
        None
    }
}

/// Why a URL with user info (`http://user:pass@host/`) is refused, if it has any: credentials in
/// a URL are stored and shown in clear, so they belong in a secret.
pub fn url_credentials_error(url: &reqwest::Url) -> Option<String> {
    (!url.username().is_empty() || url.password().is_some()).then(|| {
        "credentials in the URL are not allowed: they would be stored and shown in clear. Store the password as a secret and send it in a header, e.g. Authorization: Basic {{ secret.NAME }}".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names() {
        assert!(check_display_name("name", "Order status").is_none());
        assert!(check_display_name("name", "Bestellung prüfen").is_none());
        for bad in [
            "",
            "  ",
            "a\0b",
            "a\nb",
            "a\rb",
            "tab\there",
            "evil\u{202E}txt.exe",
            "x\u{2066}y",
        ] {
            assert!(check_display_name("name", bad).is_some(), "{bad:?}");
        }
        assert!(check_display_name("name", &"x".repeat(201)).is_some());
    }

    #[test]
    fn url_credentials() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(url_credentials_error(&u("http://user:pass@h/x")).is_some());
        assert!(url_credentials_error(&u("http://user@h/x")).is_some());
        assert!(url_credentials_error(&u("http://:pass@h/x")).is_some());
        assert!(url_credentials_error(&u("http://h/x?u=a@b")).is_none());
    }
}

text_type!(
    /// A secret's name, `^[A-Za-z_][A-Za-z0-9_]{0,63}$` (it appears in `{{ secret.NAME }}`).
    SecretName,
    is_identifier,
    "secret names match ^[A-Za-z_][A-Za-z0-9_]{0,63}$",
    "^[A-Za-z_][A-Za-z0-9_]{0,63}$"
);

text_type!(
    /// A tool's name, `^[A-Za-z0-9_-]{1,64}$`: the function name a model calls (OpenAI's rule).
    ToolName,
    is_tool_name,
    "tool names match ^[A-Za-z0-9_-]{1,64}$",
    "^[A-Za-z0-9_-]{1,64}$"
);

text_type!(
    /// An agent's name, `^[A-Za-z0-9_-]{1,64}$` (used in `model: "agent:<name>"`).
    AgentName,
    is_tool_name,
    "agent names match ^[A-Za-z0-9_-]{1,64}$",
    "^[A-Za-z0-9_-]{1,64}$"
);

#[cfg(test)]
mod name_type_tests {
    use super::*;

    #[test]
    fn names_validate_on_construction() {
        assert!(SecretName::parse("crm_token").is_ok());
        assert!(SecretName::parse("1x").is_err());
        assert!(SecretName::parse("a-b").is_err());
        let t: Result<SecretName, _> = serde_json::from_value(serde_json::json!("x y"));
        assert!(t.is_err());
        let t: SecretName = serde_json::from_value(serde_json::json!("ok_1")).unwrap();
        assert_eq!(serde_json::to_value(&t).unwrap(), serde_json::json!("ok_1"));
        assert_eq!(t, "ok_1");
    }
}
