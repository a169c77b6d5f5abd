//! Ed25519 keys that sign card QR tokens. Private keys are stored encrypted with the
//! master key; public keys are published (`/.well-known/jwks.json`) while any token they
//! signed can still be verified. Every instance reloads the key set every few seconds, so
//! a rotation made anywhere is picked up everywhere.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use entity::signing_key;
use rand::RngCore;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use utoipa::ToSchema;

use crate::crypto::Keyring;

pub const PRIVATE_CONTEXT: &str = "signing_keys.private";
const RELOAD_EVERY: Duration = Duration::from_secs(5);
/// A retired key verifies for two QR windows after retirement, plus the reload delay.
pub const RETIRED_GRACE: chrono::Duration = chrono::Duration::seconds(90);

pub struct Key {
    pub kid: [u8; 4],
    pub signing: Option<SigningKey>,
    pub verifying: VerifyingKey,
    pub retired_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// The newest key that is not retired: the one that signs.
    pub fn current(&self) -> Option<&Key> {
        self.keys.iter().find(|k| k.retired_at.is_none() && k.signing.is_some())
    }

    pub fn find(&self, kid: &[u8]) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Keys still able to verify a live token at `now`.
    pub fn published(&self, now: DateTime<Utc>) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(move |k| k.retired_at.is_none_or(|r| now < r + RETIRED_GRACE))
    }
}

pub struct Keys {
    loaded: RwLock<(Instant, Arc<KeySet>)>,
}

impl Default for Keys {
    fn default() -> Self {
        Self { loaded: RwLock::new((Instant::now() - RELOAD_EVERY * 2, Arc::new(KeySet::default()))) }
    }
}

fn kid_bytes(kid: &str) -> Option<[u8; 4]> {
    hex::decode(kid).ok()?.try_into().ok()
}

impl Keys {
    /// The current key set, reloaded from the database when it is older than a few seconds
    /// (or when `force`, for a key id this instance has not seen).
    pub async fn get(&self, db: &DatabaseConnection, keyring: &Keyring, force: bool) -> Result<Arc<KeySet>, DbErr> {
        {
            let (at, set) = &*self.loaded.read().unwrap_or_else(|p| p.into_inner());
            if !force && at.elapsed() < RELOAD_EVERY {
                return Ok(set.clone());
            }
        }
        let rows = signing_key::Entity::find().order_by_desc(signing_key::Column::CreatedAt).all(db).await?;
        let keys = rows
            .into_iter()
            .filter_map(|row| {
                let kid = kid_bytes(&row.kid)?;
                let public: [u8; 32] = B64.decode(&row.public_key).ok()?.try_into().ok()?;
                let verifying = VerifyingKey::from_bytes(&public).ok()?;
                let signing = keyring
                    .decrypt(PRIVATE_CONTEXT, &row.private_key_enc)
                    .ok()
                    .and_then(|s| B64.decode(s).ok())
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .map(|seed| SigningKey::from_bytes(&seed));
                Some(Key { kid, signing, verifying, retired_at: row.retired_at })
            })
            .collect();
        let set = Arc::new(KeySet { keys });
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = (Instant::now(), set.clone());
        Ok(set)
    }
}

/// Creates a new signing key and retires the previous ones; returns the new key id.
pub async fn rotate(db: &DatabaseConnection, keyring: &Keyring, now: DateTime<Utc>) -> Result<String, DbErr> {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let signing = SigningKey::from_bytes(&seed);
    let mut kid = [0u8; 4];
    rand::rng().fill_bytes(&mut kid);
    let kid = hex::encode(kid);
    signing_key::Entity::update_many()
        .col_expr(signing_key::Column::RetiredAt, Expr::value(Some(now)))
        .filter(signing_key::Column::RetiredAt.is_null())
        .exec(db)
        .await?;
    signing_key::ActiveModel {
        kid: Set(kid.clone()),
        private_key_enc: Set(keyring.encrypt(PRIVATE_CONTEXT, &B64.encode(seed))),
        public_key: Set(B64.encode(signing.verifying_key().to_bytes())),
        created_at: Set(now),
        retired_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(kid)
}

/// Makes sure a signing key exists (the first start generates one).
pub async fn ensure(db: &DatabaseConnection, keyring: &Keyring, now: DateTime<Utc>) -> Result<(), DbErr> {
    let current = signing_key::Entity::find().filter(signing_key::Column::RetiredAt.is_null()).one(db).await?;
    if current.is_none() {
        let kid = rotate(db, keyring, now).await?;
        tracing::info!(kid, "generated the first QR signing key");
    }
    Ok(())
}

/// A public key as a JWK (RFC 8037).
#[derive(Debug, Serialize, ToSchema)]
pub struct Jwk {
    #[schema(example = "OKP")]
    pub kty: &'static str,
    #[schema(example = "Ed25519")]
    pub crv: &'static str,
    pub x: String,
    pub kid: String,
    #[serde(rename = "use")]
    #[schema(rename = "use", example = "sig")]
    pub usage: &'static str,
    #[schema(example = "EdDSA")]
    pub alg: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

pub fn jwks(set: &KeySet, now: DateTime<Utc>) -> Jwks {
    Jwks {
        keys: set
            .published(now)
            .map(|k| Jwk {
                kty: "OKP",
                crv: "Ed25519",
                x: B64.encode(k.verifying.to_bytes()),
                kid: hex::encode(k.kid),
                usage: "sig",
                alg: "EdDSA",
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cards::qr::{self, QrError, WINDOW_SECS};

    fn set() -> (KeySet, [u8; 4], SigningKey) {
        let signing = SigningKey::from_bytes(&[7u8; 32]);
        let kid = [1, 2, 3, 4];
        let key = Key { kid, signing: Some(signing.clone()), verifying: signing.verifying_key(), retired_at: None };
        (KeySet { keys: vec![key] }, kid, signing)
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap_or_default()
    }

    #[test]
    fn tokens_are_short_and_live_two_windows() {
        let (set, kid, key) = set();
        let card = uuid::Uuid::now_v7();
        let t0 = at(1_800_000_000 - 1_800_000_000 % WINDOW_SECS);
        let token = qr::mint(kid, &key, card, t0);
        assert!(token.len() <= 150, "{} characters", token.len());
        assert!(token.starts_with("ZG:"));
        assert_eq!(qr::check(&token, &set, t0).map(|t| t.card), Ok(card));
        assert!(qr::check(&token, &set, t0 + chrono::Duration::seconds(WINDOW_SECS)).is_ok());
        assert_eq!(qr::check(&token, &set, t0 + chrono::Duration::seconds(2 * WINDOW_SECS)), Err(QrError::Expired));
        assert_eq!(qr::check(&token, &set, t0 - chrono::Duration::seconds(1)), Err(QrError::Invalid));
    }

    #[test]
    fn a_flipped_bit_or_another_key_is_invalid() {
        let (set, kid, key) = set();
        let now = at(1_800_000_000);
        let token = qr::mint(kid, &key, uuid::Uuid::nil(), now);
        let mut bytes = base45::decode(&token[3..]).unwrap_or_default();
        bytes[10] ^= 1;
        let flipped = format!("ZG:{}", base45::encode(&bytes));
        assert_eq!(qr::check(&flipped, &set, now), Err(QrError::Invalid));
        let other = SigningKey::from_bytes(&[9u8; 32]);
        assert_eq!(qr::check(&qr::mint(kid, &other, uuid::Uuid::nil(), now), &set, now), Err(QrError::Invalid));
        assert_eq!(qr::check(&qr::mint([9, 9, 9, 9], &key, uuid::Uuid::nil(), now), &set, now), Err(QrError::Invalid));
        assert_eq!(qr::check("garbage", &set, now), Err(QrError::Invalid));
        assert_eq!(qr::check("ZG:::::", &set, now), Err(QrError::Invalid));
    }
}
