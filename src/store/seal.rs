//! Secrets at rest: ChaCha20-Poly1305 under a 32-byte master key, each value bound to its id.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use super::StoreError;

/// Environment variable holding a base64 master key.
pub const MASTER_KEY_ENV: &str = "TOOLGATE_MASTER_KEY";

/// Seals and opens secret values.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl Sealer {
    /// A sealer over a raw 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// Encrypt `plain`, authenticating `aad` (the secret id); returns base64 of nonce‖ciphertext.
    pub fn seal(&self, plain: &str, aad: &str) -> Result<String, StoreError> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Crypto("encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(B64.encode(out))
    }

    /// Decrypt what `seal` produced with the same `aad`.
    pub fn open(&self, sealed: &str, aad: &str) -> Result<String, StoreError> {
        let raw = B64
            .decode(sealed)
            .map_err(|_| StoreError::Corrupt("sealed value is not base64".into()))?;
        if raw.len() < 12 {
            return Err(StoreError::Corrupt("sealed value too short".into()));
        }
        let (nonce, ct) = raw.split_at(12);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StoreError::WrongKey)?;
        String::from_utf8(plain).map_err(|_| StoreError::Corrupt("secret is not UTF-8".into()))
    }
}

/// Decode a base64 master key, insisting on 32 bytes.
pub fn decode_key(b64: &str) -> Result<[u8; 32], StoreError> {
    let raw = B64
        .decode(b64.trim())
        .map_err(|_| StoreError::Crypto("master key is not valid base64".into()))?;
    raw.try_into().map_err(|_| {
        StoreError::Crypto("master key must be 32 bytes (base64 of 32 random bytes)".into())
    })
}

/// The master key: `TOOLGATE_MASTER_KEY` if set, else `<data_dir>/master.key`, created (mode 0600) if absent.
pub fn load_or_create_key(data_dir: &Path, from_env: Option<&str>) -> Result<[u8; 32], StoreError> {
    if let Some(k) = from_env {
        return decode_key(k);
    }
    let path = data_dir.join("master.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => decode_key(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = ChaCha20Poly1305::generate_key(&mut OsRng);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&path)?;
            f.write_all(B64.encode(key).as_bytes())?;
            f.sync_all()?;
            let mut out = [0u8; 32];
            out.copy_from_slice(&key);
            Ok(out)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_binding() {
        let s = Sealer::new(&[7u8; 32]);
        let sealed = s.seal("hunter2", "sec_1").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_eq!(s.open(&sealed, "sec_1").unwrap(), "hunter2");
        assert!(s.open(&sealed, "sec_2").is_err(), "bound to its id");
        assert!(
            Sealer::new(&[8u8; 32]).open(&sealed, "sec_1").is_err(),
            "wrong key fails"
        );
    }

    #[test]
    fn key_decoding() {
        assert!(decode_key("not base64!").is_err());
        assert!(decode_key(&B64.encode([1u8; 16])).is_err());
        assert_eq!(decode_key(&B64.encode([1u8; 32])).unwrap(), [1u8; 32]);
    }
}
