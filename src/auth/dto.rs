//! Wire types of sign-in and the caller's own account.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::roles::Role;

#[derive(Debug, Deserialize, ToSchema)]
pub struct WechatLogin {
    /// The code from `wx.login`.
    #[schema(example = "081aBcDe2xYz", min_length = 1, max_length = 128, pattern = r"\S")]
    pub code: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PhoneCode {
    /// The code from the mini-program's phone-number button.
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    pub code: String,
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordLogin {
    #[schema(example = "wolong.hospital.li", min_length = 1, max_length = 64, pattern = r"\S")]
    pub username: String,
    #[schema(example = "correct horse battery 9", min_length = 1, max_length = 128, pattern = r"\S")]
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// Any other string is `refresh_token_invalid` (401).
    #[schema(min_length = 1, max_length = 128)]
    pub refresh_token: String,
}

#[derive(Deserialize, ToSchema)]
pub struct ChangePassword {
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    pub current_password: String,
    /// 10–128 characters with at least two of letters, digits and symbols, not the current one.
    #[schema(min_length = 10, max_length = 128)]
    pub new_password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub id: Uuid,
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<Uuid>,
    /// Masked, e.g. `138****5678`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "138****5678")]
    pub phone: Option<String>,
    pub must_change_password: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneBound {
    #[schema(example = "138****5678")]
    pub phone: String,
}
