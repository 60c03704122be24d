//! Opaque, prefixed, time-ordered identifiers (`wh_…`, `tl_…`, `sec_…`, `call_…`).
//! UUIDv7 underneath, so ids of one kind sort by creation time, which history paging relies on.
//! Definition ids are newtypes that only hold a well-formed id of their own kind.

/// A fresh id with the given prefix, e.g. `new_id("wh")` → `wh_0190…`. The digits are
/// written into the string directly: through `format!` (its formatter and padding) an id cost
/// about 1,200 instructions, and a call without history takes one.
pub fn new_id(prefix: &str) -> String {
    let mut digits = [0u8; uuid::fmt::Simple::LENGTH];
    let digits = uuid::Uuid::now_v7().simple().encode_lower(&mut digits);
    let mut out = String::with_capacity(prefix.len() + 1 + digits.len());
    out.push_str(prefix);
    out.push('_');
    out.push_str(digits);
    out
}

/// Whether `s` is `prefix` + `_` + 32 lower-case hex digits, the shape `new_id` makes.
pub fn is_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| {
            hex.len() == 32 && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        })
}

/// Defines an id newtype for one prefix, with `new()` for a fresh one.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        text_type!(
            $(#[$doc])*
            $name,
            |s| is_id(s, $prefix),
            concat!($kind, " ids are ", $prefix, "_ followed by 32 lower-case hex digits"),
            concat!("^", $prefix, "_[0-9a-f]{32}$")
        );

        impl $name {
            /// A fresh id of this kind.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                $name(new_id($prefix))
            }
        }
    };
}

id_type!(
    /// A webhook's id, `wh_…`.
    WebhookId,
    "wh",
    "webhook"
);
id_type!(
    /// A tool's id, `tl_…`.
    ToolId,
    "tl",
    "tool"
);
id_type!(
    /// An agent's id, `ag_…`.
    AgentId,
    "ag",
    "agent"
);
id_type!(
    /// A secret's id, `sec_…`.
    SecretId,
    "sec",
    "secret"
);
id_type!(
    /// An event subscription's id, `sub_…`.
    SubscriptionId,
    "sub",
    "subscription"
);
id_type!(
    /// A recorded call's id, `call_…` (the history's order).
    CallId,
    "call",
    "call"
);

impl CallId {
    /// The id whose 32 hex digits spell `bits` (how the embedded store keys a call).
    pub fn from_bits(bits: u128) -> CallId {
        // Every call takes one: spelled digit by digit, since `format!` with a width went
        // through the formatter's padding and a `u128` division loop (about 1,000 instructions).
        // The digits go into an array first: a `String` push checks capacity per character.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = *b"call_00000000000000000000000000000000";
        // Byte by byte: shifting a `u128` per digit cost about 400 instructions.
        for (pair, byte) in text[5..].chunks_exact_mut(2).zip(bits.to_be_bytes()) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
        // Always ASCII: the fallback is never taken.
        CallId(String::from_utf8(text.to_vec()).unwrap_or_default())
    }

    /// A placeholder for a record the history recorder gives its id to (see
    /// `history::Recorder::record`): not an id, and never shown as one.
    pub(crate) fn unassigned() -> CallId {
        CallId(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_id_spells_its_bits() {
        for bits in [
            0u128,
            1,
            0xf,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
            u128::MAX,
            1 << 127,
            uuid::Uuid::now_v7().as_u128(),
        ] {
            let id = CallId::from_bits(bits);
            assert_eq!(id.as_str(), format!("call_{bits:032x}"));
            assert!(CallId::parse(id.as_str()).is_ok());
        }
    }

    #[test]
    fn fresh_ids_are_the_prefix_and_the_uuid_in_lower_hex_and_grow() {
        let mut last = String::new();
        for _ in 0..100 {
            let id = new_id("call");
            let hex = id.strip_prefix("call_").expect("prefix");
            let bits = u128::from_str_radix(hex, 16).expect("hex");
            assert_eq!(id, format!("call_{}", uuid::Uuid::from_u128(bits).simple()));
            assert!(is_id(&id, "call") && CallId::parse(&id).is_ok(), "{id}");
            assert!(id > last, "{id} after {last}");
            last = id;
        }
        assert!(is_id(&new_id("wh"), "wh"));
    }

    #[test]
    fn ids_validate_on_construction() {
        let fresh = WebhookId::new();
        assert!(WebhookId::parse(fresh.as_str()).is_ok());
        assert!(
            ToolId::parse(fresh.as_str()).is_err(),
            "a webhook id is not a tool id"
        );
        for bad in [
            "",
            "wh_",
            "wh_0190",
            "wh-0123456789abcdef0123456789abcdef",
            "wh_0123456789ABCDEF0123456789ABCDEF",
            "wh_0123456789abcdef0123456789abcdeg",
            "wh_0123456789abcdef0123456789abcdef0",
            "xwh_0123456789abcdef0123456789abcdef",
        ] {
            assert!(WebhookId::parse(bad).is_err(), "{bad}");
        }
        assert!(WebhookId::parse("wh_0123456789abcdef0123456789abcdef").is_ok());
        let id: Result<SecretId, _> = serde_json::from_value(serde_json::json!("sec_1"));
        assert_eq!(
            id.map_err(|e| e.to_string()),
            Err("secret ids are sec_ followed by 32 lower-case hex digits".to_string())
        );
        let t = AgentId::new();
        let back: AgentId = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        assert!(t.starts_with("ag_"));
    }
}
