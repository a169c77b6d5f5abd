//! Access tokens: HS256 JWTs (the one accepted algorithm), 15 minutes, with `iss`, `aud`,
//! `sub`, `sid`, `role`, an explicit `typ` claim and header, checked against our clock.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::roles::Role;

pub const ISSUER: &str = "zhuge-card";
pub const AUDIENCE: &str = "zhuge-card-api";
pub const TYP: &str = "at+jwt";
pub const ACCESS_TTL_SECS: i64 = 15 * 60;
/// Tolerated clock difference between instances.
const LEEWAY_SECS: i64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    pub sid: Uuid,
    pub role: Role,
    pub typ: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is invalid")]
    Invalid,
    #[error("token has expired")]
    Expired,
}

pub struct TokenService {
    encoding: EncodingKey,
    /// The signing key's, then those of earlier master keys (see `Keyring::jwt_verify_keys`).
    decoding: Vec<DecodingKey>,
    validation: Validation,
}

impl TokenService {
    pub fn new(secret: &[u8]) -> Self {
        Self::with_previous(secret, std::iter::empty::<&[u8]>())
    }

    /// Signs with the keyring's current key; also accepts tokens signed under the previous
    /// master keys (a token issued just before a rotation keeps its 15 minutes).
    pub fn from_keyring(keyring: &crate::crypto::Keyring) -> Self {
        Self::with_previous(keyring.jwt_key(), keyring.jwt_verify_keys().skip(1).map(|k| &k[..]))
    }

    /// Signs with `secret`; also accepts tokens signed with any of `previous`.
    pub fn with_previous<'a>(secret: &'a [u8], previous: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked against the service clock below.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let decoding = std::iter::once(secret).chain(previous).map(DecodingKey::from_secret).collect();
        Self { encoding: EncodingKey::from_secret(secret), decoding, validation }
    }

    pub fn issue(&self, user: Uuid, session: Uuid, role: Role, now: DateTime<Utc>) -> String {
        let iat = now.timestamp();
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: user,
            sid: session,
            role,
            typ: TYP.into(),
            iat,
            exp: iat + ACCESS_TTL_SECS,
        };
        let header = Header { typ: Some(TYP.into()), ..Header::new(Algorithm::HS256) };
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .unwrap_or_else(|_| unreachable!("HS256 signing of plain claims does not fail"))
    }

    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
        let data = self
            .decoding
            .iter()
            .find_map(|key| jsonwebtoken::decode::<Claims>(token, key, &self.validation).ok())
            .ok_or(TokenError::Invalid)?;
        if data.header.typ.as_deref() != Some(TYP) || data.claims.typ != TYP {
            return Err(TokenError::Invalid);
        }
        let now = now.timestamp();
        if data.claims.iat > now + LEEWAY_SECS {
            return Err(TokenError::Invalid);
        }
        if data.claims.exp + LEEWAY_SECS <= now {
            return Err(TokenError::Expired);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    fn service() -> TokenService {
        TokenService::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn issued_tokens_verify_until_they_expire() {
        let s = service();
        let now = Utc::now();
        let (user, sid) = (Uuid::now_v7(), Uuid::now_v7());
        let token = s.issue(user, sid, Role::Operator, now);
        let claims = s.verify(&token, now).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((claims.sub, claims.sid, claims.role), (user, sid, Role::Operator));
        let later = now + chrono::Duration::seconds(ACCESS_TTL_SECS + LEEWAY_SECS);
        assert_eq!(s.verify(&token, later).err(), Some(TokenError::Expired));
    }

    #[test]
    fn tokens_of_a_previous_key_verify_and_new_ones_use_the_current_key() {
        let now = Utc::now();
        let old = service();
        let rotated = TokenService::with_previous(b"the-new-key-the-new-key-the-new!", [&b"0123456789abcdef0123456789abcdef"[..]]);
        let before = old.issue(Uuid::nil(), Uuid::nil(), Role::Talent, now);
        assert!(rotated.verify(&before, now).is_ok());
        let after = rotated.issue(Uuid::nil(), Uuid::nil(), Role::Talent, now);
        assert_eq!(old.verify(&after, now).err(), Some(TokenError::Invalid));
    }

    #[test]
    fn other_keys_algorithms_and_none_are_refused() {
        let now = Utc::now();
        let token = TokenService::new(b"another-key-another-key-another!").issue(Uuid::nil(), Uuid::nil(), Role::Talent, now);
        assert_eq!(service().verify(&token, now).err(), Some(TokenError::Invalid));

        let payload = token.split('.').nth(1).unwrap_or_default();
        let none = format!("{}.{payload}.", B64.encode(br#"{"alg":"none","typ":"at+jwt"}"#));
        assert_eq!(service().verify(&none, now).err(), Some(TokenError::Invalid));
        let hs512 = format!("{}.{payload}.AAAA", B64.encode(br#"{"alg":"HS512","typ":"at+jwt"}"#));
        assert_eq!(service().verify(&hs512, now).err(), Some(TokenError::Invalid));
    }
}
