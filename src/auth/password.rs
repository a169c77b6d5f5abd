//! Argon2id password hashing (on the blocking pool: it is deliberately slow) and the
//! password rules.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::error::{FieldError, Text};

pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 128;

pub async fn hash(password: &str) -> anyhow::Result<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
    .await?
}

/// Checks `password` against `stored`. With no stored hash (unknown user) it checks
/// against a dummy hash, so that both cases take the same time.
pub async fn verify(stored: Option<&str>, password: &str) -> bool {
    let known = stored.is_some();
    let stored = stored.map(str::to_owned).or_else(|| dummy_hash().map(str::to_owned));
    let password = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || {
        let Some(stored) = stored else { return false };
        PasswordHash::new(&stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false);
    ok && known
}

fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default().hash_password(b"not-a-real-password", &salt).ok().map(|h| h.to_string())
        })
        .as_deref()
}

/// The rules a new password must meet.
pub fn check_new(field: &'static str, password: &str) -> Option<FieldError> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Some(FieldError::new(
            field,
            "too_short",
            Text::new(format!("密码至少 {MIN_LEN} 个字符"), format!("at least {MIN_LEN} characters")),
        ));
    }
    if len > MAX_LEN {
        return Some(FieldError::new(
            field,
            "too_long",
            Text::new(format!("密码最多 {MAX_LEN} 个字符"), format!("at most {MAX_LEN} characters")),
        ));
    }
    let classes = [
        password.chars().any(|c| c.is_alphabetic()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ];
    if classes.iter().filter(|c| **c).count() < 2 {
        return Some(FieldError::new(
            field,
            "too_weak",
            Text::new("密码须包含字母、数字、符号中的至少两类", "use at least two of letters, digits and symbols"),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_do() {
        let h = hash("correct horse 1").await.unwrap_or_default();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(Some(&h), "correct horse 1").await);
        assert!(!verify(Some(&h), "wrong horse 1").await);
        assert!(!verify(None, "not-a-real-password").await);
    }

    #[test]
    fn password_rules() {
        assert!(check_new("p", "short1").is_some());
        assert!(check_new("p", "onlyletterslong").is_some());
        assert!(check_new("p", "letters and 123").is_none());
        assert!(check_new("p", &"a1".repeat(65)).is_some());
    }
}
