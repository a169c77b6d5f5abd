//! Keys derived from the master key, AEAD for personal data, blind indexes, and masking.
//!
//! Personal data (real name, ID number, phone) is stored as `v1.<kid>.<base64(nonce‖ct)>`
//! (ChaCha20-Poly1305); the key id lets a later master key decrypt what an earlier one
//! wrote. Lookups go through a keyed hash (HMAC-SHA-256), never through the clear text.

pub mod mask;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("no key with id {0}")]
    UnknownKey(String),
    #[error("ciphertext failed authentication")]
    Tampered,
}

/// Keys of one master key.
struct KeySet {
    kid: String,
    aead: ChaCha20Poly1305,
}

pub struct Keyring {
    current: KeySet,
    /// Older master keys, still able to decrypt what they wrote.
    previous: Vec<KeySet>,
    blind: [u8; 32],
    jwt: [u8; 32],
}

fn derive(master: &[u8], label: &str) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(master).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(b"zhuge-card/");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

impl KeySet {
    fn new(master: &str) -> Self {
        let key = derive(master.as_bytes(), "pii-aead/v1");
        let kid = hex::encode(&Sha256::digest(key)[..4]);
        Self { kid, aead: ChaCha20Poly1305::new(Key::from_slice(&key)) }
    }
}

impl Keyring {
    pub fn new(master: &str, previous: &[&str]) -> Self {
        Self {
            current: KeySet::new(master),
            previous: previous.iter().map(|m| KeySet::new(m)).collect(),
            // The blind index key must not change with rotation, or lookups would break;
            // it is derived from the first master key ever used (the last of `previous`).
            blind: derive(previous.last().copied().unwrap_or(master).as_bytes(), "blind-index/v1"),
            jwt: derive(master.as_bytes(), "jwt-hs256/v1"),
        }
    }

    pub fn jwt_key(&self) -> &[u8; 32] {
        &self.jwt
    }

    /// Encrypts `plaintext`; `context` binds the ciphertext to its column so that a value
    /// copied into another column does not decrypt.
    pub fn encrypt(&self, context: &str, plaintext: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .current
            .aead
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext.as_bytes(), aad: context.as_bytes() })
            .unwrap_or_else(|_| unreachable!("ChaCha20-Poly1305 encryption does not fail for in-memory input"));
        let mut blob = Vec::with_capacity(12 + ct.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        format!("v1.{}.{}", self.current.kid, B64.encode(blob))
    }

    pub fn decrypt(&self, context: &str, stored: &str) -> Result<String, CryptoError> {
        let mut parts = stored.splitn(3, '.');
        let (Some("v1"), Some(kid), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CryptoError::Malformed);
        };
        let keys = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.kid == kid)
            .ok_or_else(|| CryptoError::UnknownKey(kid.to_owned()))?;
        let blob = B64.decode(body).map_err(|_| CryptoError::Malformed)?;
        if blob.len() < 12 + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ct) = blob.split_at(12);
        let pt =
            keys.aead.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: context.as_bytes() }).map_err(|_| CryptoError::Tampered)?;
        String::from_utf8(pt).map_err(|_| CryptoError::Malformed)
    }

    /// The keyed hash used to find or de-duplicate a value without storing it in clear.
    pub fn blind_index(&self, kind: &str, value: &str) -> String {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.blind).unwrap_or_else(|_| unreachable!("any key length"));
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(value.trim().to_uppercase().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// SHA-256, hex: for values that are high-entropy already (refresh tokens).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `n` random bytes as URL-safe base64.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    B64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_context_binding() {
        let k = Keyring::new("master-one", &[]);
        let ct = k.encrypt("users.phone", "13812345678");
        assert!(!ct.contains("13812345678"));
        assert_eq!(k.decrypt("users.phone", &ct).ok().as_deref(), Some("13812345678"));
        assert!(matches!(k.decrypt("cards.id_number", &ct), Err(CryptoError::Tampered)));
        // Same clear text, different ciphertexts.
        assert_ne!(ct, k.encrypt("users.phone", "13812345678"));
    }

    #[test]
    fn tampering_is_detected() {
        let k = Keyring::new("master-one", &[]);
        let ct = k.encrypt("c", "张三");
        let mut bytes = ct.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap_or_default();
        assert!(k.decrypt("c", &tampered).is_err());
        assert!(matches!(k.decrypt("c", "garbage"), Err(CryptoError::Malformed)));
    }

    #[test]
    fn rotation_keeps_old_ciphertexts_readable_and_lookups_stable() {
        let old = Keyring::new("master-one", &[]);
        let ct = old.encrypt("c", "410102199001011234");
        let new = Keyring::new("master-two", &["master-one"]);
        assert_eq!(new.decrypt("c", &ct).ok().as_deref(), Some("410102199001011234"));
        assert_eq!(old.blind_index("id", "410102199001011234"), new.blind_index("id", "410102199001011234"));
        assert!(matches!(Keyring::new("master-three", &[]).decrypt("c", &ct), Err(CryptoError::UnknownKey(_))));
    }

    #[test]
    fn blind_index_normalises_case_and_space() {
        let k = Keyring::new("m", &[]);
        assert_eq!(k.blind_index("id", " 41010219900101123x"), k.blind_index("id", "41010219900101123X"));
        assert_ne!(k.blind_index("id", "1"), k.blind_index("phone", "1"));
    }
}
