//! Wire types of sign-in and the caller's own account.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::roles::Role;

#[derive(Debug, Deserialize, ToSchema)]
pub struct WechatLogin {
    /// The code from `wx.login`.
    #[schema(example = "081aBcDe2xYz")]
    pub code: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PhoneCode {
    /// The code from the mini-program's phone-number button.
    pub code: String,
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordLogin {
    #[schema(example = "wolong.hospital.li")]
    pub username: String,
    #[schema(example = "correct horse battery 9")]
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Deserialize, ToSchema)]
pub struct ChangePassword {
    pub current_password: String,
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
