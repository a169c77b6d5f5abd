//! What an account is to sign-in: its state, and the row a new account starts as. The
//! account rules (who may create, change or disable which account) are in `accounts`, which
//! builds on this; sign-in never imports them.

use chrono::{DateTime, Utc};
use entity::user;
use sea_orm::ActiveValue::Set;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Disabled,
}

impl AccountStatus {
    pub const ALL: [AccountStatus; 2] = [AccountStatus::Active, AccountStatus::Disabled];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Disabled => "disabled",
        }
    }
}

/// A new account row: active, no credentials, no WeChat or phone data. Callers set what
/// their kind of account has.
pub fn new_row(role: Role, now: DateTime<Utc>) -> user::ActiveModel {
    user::ActiveModel {
        id: Set(Uuid::now_v7()),
        role: Set(role.as_str().into()),
        status: Set(AccountStatus::Active.as_str().into()),
        username: Set(None),
        password_hash: Set(None),
        must_change_password: Set(false),
        partner_id: Set(None),
        wechat_openid: Set(None),
        wechat_unionid: Set(None),
        wechat_session_key_enc: Set(None),
        phone_enc: Set(None),
        phone_hash: Set(None),
        failed_logins: Set(0),
        locked_until: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}
