//! The rotating card QR token (SPEC §4).
//!
//! Layout, 97 bytes, then Base45 with the prefix `ZG:` (149 characters, QR version 5 at
//! error correction M):
//!
//! | bytes | field |
//! |---|---|
//! | 0 | version, `1` |
//! | 1–4 | key id (the JWK `kid`, hex of these 4 bytes) |
//! | 5–20 | card reference (the card's id, 16 bytes; never personal data) |
//! | 21–24 | window: Unix time ÷ 30, big-endian u32 |
//! | 25–32 | random nonce |
//! | 33–96 | Ed25519 signature over `"zhuge-card/qr/v1"` ‖ bytes 0–32 |
//!
//! A token is good in its own window and the one before; the server consumes its nonce at
//! the first verification.

use chrono::{DateTime, TimeZone, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use rand::RngCore;
use uuid::Uuid;

use super::keys::KeySet;

pub const PREFIX: &str = "ZG:";
pub const VERSION: u8 = 1;
pub const WINDOW_SECS: i64 = 30;
const DOMAIN: &[u8] = b"zhuge-card/qr/v1";
const BODY_LEN: usize = 33;
const TOKEN_LEN: usize = BODY_LEN + 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kid: [u8; 4],
    pub card: Uuid,
    pub window: u32,
    pub nonce: [u8; 8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrError {
    /// Not a token of ours, or tampered with, or signed by a key we do not know.
    Invalid,
    /// Older than the previous window.
    Expired,
}

pub fn window_of(at: DateTime<Utc>) -> u32 {
    u32::try_from(at.timestamp().div_euclid(WINDOW_SECS)).unwrap_or(0)
}

/// When a window ends.
pub fn window_end(window: u32) -> DateTime<Utc> {
    Utc.timestamp_opt((i64::from(window) + 1) * WINDOW_SECS, 0).single().unwrap_or_default()
}

fn body(t: &Token) -> [u8; BODY_LEN] {
    let mut b = [0u8; BODY_LEN];
    b[0] = VERSION;
    b[1..5].copy_from_slice(&t.kid);
    b[5..21].copy_from_slice(t.card.as_bytes());
    b[21..25].copy_from_slice(&t.window.to_be_bytes());
    b[25..33].copy_from_slice(&t.nonce);
    b
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    [DOMAIN, body].concat()
}

pub fn mint(kid: [u8; 4], key: &SigningKey, card: Uuid, at: DateTime<Utc>) -> String {
    let mut nonce = [0u8; 8];
    rand::rng().fill_bytes(&mut nonce);
    let token = Token { kid, card, window: window_of(at), nonce };
    let body = body(&token);
    let signature = key.sign(&signed_message(&body));
    let mut bytes = Vec::with_capacity(TOKEN_LEN);
    bytes.extend_from_slice(&body);
    bytes.extend_from_slice(&signature.to_bytes());
    format!("{PREFIX}{}", base45::encode(&bytes))
}

/// Decodes and checks a token: format, key, signature and window. Single use is the
/// caller's to enforce (it needs storage).
pub fn check(qr: &str, keys: &KeySet, at: DateTime<Utc>) -> Result<Token, QrError> {
    let encoded = qr.trim().strip_prefix(PREFIX).ok_or(QrError::Invalid)?;
    if encoded.len() > 200 {
        return Err(QrError::Invalid);
    }
    let bytes = base45::decode(encoded).map_err(|_| QrError::Invalid)?;
    if bytes.len() != TOKEN_LEN || bytes[0] != VERSION {
        return Err(QrError::Invalid);
    }
    let (body, sig) = bytes.split_at(BODY_LEN);
    let kid: [u8; 4] = body[1..5].try_into().map_err(|_| QrError::Invalid)?;
    let key = keys.find(&kid).ok_or(QrError::Invalid)?;
    let signature = Signature::from_slice(sig).map_err(|_| QrError::Invalid)?;
    key.verifying.verify(&signed_message(body), &signature).map_err(|_| QrError::Invalid)?;
    let token = Token {
        kid,
        card: Uuid::from_slice(&body[5..21]).map_err(|_| QrError::Invalid)?,
        window: u32::from_be_bytes(body[21..25].try_into().map_err(|_| QrError::Invalid)?),
        nonce: body[25..33].try_into().map_err(|_| QrError::Invalid)?,
    };
    let now = window_of(at);
    if token.window > now {
        return Err(QrError::Invalid);
    }
    if now - token.window > 1 {
        return Err(QrError::Expired);
    }
    // A key retired long enough ago cannot have signed a live token.
    if key.retired_at.is_some_and(|r| window_of(r) + 1 < token.window) {
        return Err(QrError::Invalid);
    }
    Ok(token)
}

/// The nonce as stored to enforce single use: key id and nonce, hex.
pub fn nonce_key(t: &Token) -> String {
    format!("{}{}", hex::encode(t.kid), hex::encode(t.nonce))
}
