//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` keyed with the
//! base64-decoded part of a `whsec_` secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Prefix of signing secrets.
pub const SECRET_PREFIX: &str = "whsec_";

/// A fresh signing secret: `whsec_` and 24 random bytes in base64.
pub fn new_secret() -> String {
    use chacha20poly1305::aead::OsRng;
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut key = [0u8; 24];
    OsRng.fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", B64.encode(key))
}

fn mac(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<HmacSha256, String> {
    let key = B64
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .map_err(|_| "signing secret is not valid base64".to_string())?;
    let mut mac = HmacSha256::new_from_slice(&key)
        .map_err(|_| "signing secret has a bad length".to_string())?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Ok(mac)
}

/// The `webhook-signature` header value for one message.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, String> {
    Ok(format!(
        "v1,{}",
        B64.encode(mac(secret, id, timestamp, body)?.finalize().into_bytes())
    ))
}

/// Check a `webhook-signature` header (space-separated `v1,…` entries) in constant time.
pub fn verify(secret: &str, id: &str, timestamp: i64, body: &str, header: &str) -> bool {
    header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|sig| {
            let Ok(raw) = B64.decode(sig) else {
                return false;
            };
            mac(secret, id, timestamp, body).is_ok_and(|m| m.verify_slice(&raw).is_ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1649367553;
    const BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;

    #[test]
    fn reproduces_the_published_test_vector() {
        assert_eq!(
            sign(SECRET, ID, TS, BODY).unwrap(),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
        assert!(verify(
            SECRET,
            ID,
            TS,
            BODY,
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        ));
    }

    #[test]
    fn tampering_fails_verification() {
        let sig = sign(SECRET, ID, TS, BODY).unwrap();
        assert!(!verify(
            SECRET,
            ID,
            TS,
            &BODY.replace("test_user", "admin"),
            &sig
        ));
        assert!(!verify(SECRET, ID, TS + 1, BODY, &sig));
        assert!(!verify(SECRET, "msg_other", TS, BODY, &sig));
        assert!(!verify(
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ID,
            TS,
            BODY,
            &sig
        ));
        assert!(
            verify(SECRET, ID, TS, BODY, &format!("v1,bm9wZQ== {sig}")),
            "any listed signature may match"
        );
    }

    #[test]
    fn new_secrets_are_random_and_usable() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX));
        assert!(sign(&a, ID, TS, BODY).is_ok());
    }
}
