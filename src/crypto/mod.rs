//! Keys derived from the master key, AEAD for personal data, blind indexes, and masking.
//!
//! Personal data (real name, ID number, phone) is stored as `v1.<kid>.<base64(nonce‖ct)>`
//! (ChaCha20-Poly1305); the key id lets a later master key decrypt what an earlier one
//! wrote. Lookups go through a keyed hash (HMAC-SHA-256), never through the clear text.

pub mod mask;
pub mod rotation;

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
    blind: [u8; 32],
    jwt: [u8; 32],
    /// Keys the audit trail: the chain's links and the tags of redemption and visit rows.
    audit: [u8; 32],
}

pub struct Keyring {
    current: KeySet,
    /// Older master keys, still able to decrypt what they wrote, find what they indexed
    /// and verify the access tokens they signed, until `rotate-master-key` has moved
    /// everything to the current key.
    previous: Vec<KeySet>,
}

fn derive(master: &[u8], label: &str) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(master).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(b"zhuge-card/");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Binary ciphertexts (documents) start with this version byte, then the 4 key-id bytes.
const BYTES_V1: u8 = 1;

impl KeySet {
    fn new(master: &str) -> Self {
        let key = derive(master.as_bytes(), "pii-aead/v1");
        let kid = hex::encode(&Sha256::digest(key)[..4]);
        Self {
            kid,
            aead: ChaCha20Poly1305::new(Key::from_slice(&key)),
            blind: derive(master.as_bytes(), "blind-index/v1"),
            jwt: derive(master.as_bytes(), "jwt-hs256/v1"),
            audit: derive(master.as_bytes(), "audit/v1"),
        }
    }

    fn blind_index(&self, kind: &str, value: &str) -> String {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.blind).unwrap_or_else(|_| unreachable!("any key length"));
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(value.trim().to_uppercase().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn audit_tag(&self, domain: &str, fields: &[&str]) -> String {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.audit).unwrap_or_else(|_| unreachable!("any key length"));
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        for f in fields {
            // Length-prefixed, so that no two field lists hash alike.
            mac.update(&(f.len() as u64).to_be_bytes());
            mac.update(f.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }

    fn seal(&self, context: &str, plaintext: &[u8]) -> ([u8; 12], Vec<u8>) {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .aead
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: context.as_bytes() })
            .unwrap_or_else(|_| unreachable!("ChaCha20-Poly1305 encryption does not fail for in-memory input"));
        (nonce, ct)
    }

    fn open(&self, context: &str, blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if blob.len() < 12 + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ct) = blob.split_at(12);
        self.aead.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: context.as_bytes() }).map_err(|_| CryptoError::Tampered)
    }
}

impl Keyring {
    pub fn new(master: &str, previous: &[&str]) -> Self {
        Self { current: KeySet::new(master), previous: previous.iter().map(|m| KeySet::new(m)).collect() }
    }

    /// The HS256 key that signs access tokens.
    pub fn jwt_key(&self) -> &[u8; 32] {
        &self.current.jwt
    }

    /// Keys that verify access tokens: the current one, then the previous master keys'
    /// (a token signed just before a rotation stays valid for its 15 minutes).
    pub fn jwt_verify_keys(&self) -> impl Iterator<Item = &[u8; 32]> {
        std::iter::once(&self.current.jwt).chain(self.previous.iter().map(|k| &k.jwt))
    }

    /// The id of the current key, as it appears in what it encrypts.
    pub fn current_kid(&self) -> &str {
        &self.current.kid
    }

    fn keys(&self) -> impl Iterator<Item = &KeySet> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    fn find(&self, kid: &str) -> Result<&KeySet, CryptoError> {
        self.keys().find(|k| k.kid == kid).ok_or_else(|| CryptoError::UnknownKey(kid.to_owned()))
    }

    /// Encrypts `plaintext`; `context` binds the ciphertext to its column so that a value
    /// copied into another column does not decrypt.
    pub fn encrypt(&self, context: &str, plaintext: &str) -> String {
        let (nonce, ct) = self.current.seal(context, plaintext.as_bytes());
        let mut blob = Vec::with_capacity(12 + ct.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        format!("v1.{}.{}", self.current.kid, B64.encode(blob))
    }

    pub fn decrypt(&self, context: &str, stored: &str) -> Result<String, CryptoError> {
        let (kid, body) = split_text(stored)?;
        let blob = B64.decode(body).map_err(|_| CryptoError::Malformed)?;
        let pt = self.find(kid)?.open(context, &blob)?;
        String::from_utf8(pt).map_err(|_| CryptoError::Malformed)
    }

    /// Encrypts binary content (documents): version, key id, nonce, ciphertext.
    pub fn encrypt_bytes(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let (nonce, ct) = self.current.seal(context, plaintext);
        let mut out = Vec::with_capacity(1 + 4 + 12 + ct.len());
        out.push(BYTES_V1);
        out.extend_from_slice(&hex::decode(&self.current.kid).unwrap_or_default());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn decrypt_bytes(&self, context: &str, stored: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let kid = bytes_kid(stored)?;
        self.find(&kid)?.open(context, &stored[5..])
    }

    /// Whether `stored` (text or binary ciphertext) was written under an earlier key.
    pub fn is_stale(&self, stored: &str) -> bool {
        split_text(stored).is_ok_and(|(kid, _)| kid != self.current.kid)
    }

    pub fn is_stale_bytes(&self, stored: &[u8]) -> bool {
        bytes_kid(stored).is_ok_and(|kid| kid != self.current.kid)
    }

    /// The keyed hash stored to find or de-duplicate a value without storing it in clear.
    pub fn blind_index(&self, kind: &str, value: &str) -> String {
        self.current.blind_index(kind, value)
    }

    /// The audit tag (HMAC-SHA-256, hex) of `fields` under the current key; `domain` keeps
    /// tags of one kind of record from standing in for another.
    pub fn audit_tag(&self, domain: &str, fields: &[&str]) -> String {
        self.current.audit_tag(domain, fields)
    }

    /// Whether `tag` is the audit tag of `fields` under any key of the ring (an entry
    /// written before a rotation finished is still recognised), compared in constant time.
    pub fn audit_tag_matches(&self, domain: &str, fields: &[&str], tag: &str) -> bool {
        self.keys().any(|k| constant_time_eq(k.audit_tag(domain, fields).as_bytes(), tag.as_bytes()))
    }

    /// Whether `tag` is under the current key (else `rotate-master-key` rewrites it).
    pub fn audit_tag_is_current(&self, domain: &str, fields: &[&str], tag: &str) -> bool {
        constant_time_eq(self.current.audit_tag(domain, fields).as_bytes(), tag.as_bytes())
    }

    /// Every hash `value` may be stored under: the current key's first. Lookups use all of
    /// them, so that a row not yet re-indexed by `rotate-master-key` is still found.
    pub fn blind_indexes(&self, kind: &str, value: &str) -> Vec<String> {
        self.keys().map(|k| k.blind_index(kind, value)).collect()
    }
}

fn split_text(stored: &str) -> Result<(&str, &str), CryptoError> {
    let mut parts = stored.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some(kid), Some(body)) => Ok((kid, body)),
        _ => Err(CryptoError::Malformed),
    }
}

fn bytes_kid(stored: &[u8]) -> Result<String, CryptoError> {
    match stored {
        [BYTES_V1, kid @ ..] if kid.len() >= 4 => Ok(hex::encode(&kid[..4])),
        _ => Err(CryptoError::Malformed),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        assert!(new.is_stale(&ct) && !old.is_stale(&ct));
        assert!(!new.is_stale(&new.encrypt("c", "x")));
        // New rows are indexed under the new key; lookups also try the old one.
        let id = "410102199001011234";
        assert_ne!(old.blind_index("id", id), new.blind_index("id", id));
        assert_eq!(new.blind_indexes("id", id), [new.blind_index("id", id), old.blind_index("id", id)]);
        assert_eq!(new.jwt_verify_keys().count(), 2);
        assert!(matches!(Keyring::new("master-three", &[]).decrypt("c", &ct), Err(CryptoError::UnknownKey(_))));
    }

    #[test]
    fn binary_content_round_trips_under_rotation() {
        let old = Keyring::new("master-one", &[]);
        let ct = old.encrypt_bytes("documents.content", b"%PDF-1.7 secret");
        assert!(!ct.windows(6).any(|w| w == b"secret"));
        assert_eq!(old.decrypt_bytes("documents.content", &ct).ok().as_deref(), Some(&b"%PDF-1.7 secret"[..]));
        assert!(old.decrypt_bytes("documents.filename", &ct).is_err());
        let new = Keyring::new("master-two", &["master-one"]);
        assert!(new.is_stale_bytes(&ct));
        assert_eq!(new.decrypt_bytes("documents.content", &ct).ok().as_deref(), Some(&b"%PDF-1.7 secret"[..]));
        assert!(Keyring::new("master-two", &[]).decrypt_bytes("documents.content", &ct).is_err());
        assert!(matches!(new.decrypt_bytes("c", &[1, 2]), Err(CryptoError::Malformed)));
    }

    #[test]
    fn blind_index_normalises_case_and_space() {
        let k = Keyring::new("m", &[]);
        assert_eq!(k.blind_index("id", " 41010219900101123x"), k.blind_index("id", "41010219900101123X"));
        assert_ne!(k.blind_index("id", "1"), k.blind_index("phone", "1"));
    }
}
