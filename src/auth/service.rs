//! Sign-in flows, token refresh with rotation and theft detection, logout, phone binding
//! and password change. Handlers call these; the rules live here.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{refresh_token, session, user};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter};

use super::dto::{Me, TokenPair};
use super::extract::RequestMeta;
use super::lockout;
use super::password;
use super::ratelimit;
use super::roles::Role;
use super::sessions::{self, Revoke, SessionInfo};
use super::tokens::ACCESS_TTL_SECS;
use crate::crypto::{self, mask};
use crate::db;
use crate::error::{ApiError, ErrorCode, FieldError, Text};
use crate::state::AppState;
use crate::validate;

/// Password sign-in attempts per minute from one address (staff behind one shared
/// address sign in rarely: tokens refresh), and for one name from one address. Nothing
/// limits one name across addresses per minute: that would let anyone keep its owner
/// out; [`lockout`] bounds guessing instead.
const PASSWORD_PER_ADDRESS_PER_MINUTE: i64 = 60;
const PASSWORD_PER_NAME_AND_ADDRESS_PER_MINUTE: i64 = 10;
/// WeChat sign-ins per minute from one address. Thousands of talents share a carrier
/// NAT address, and a WeChat code is no secret to guess: this only keeps one client from
/// spending the mini-program's WeChat quota (WeChat itself allows 100 a minute per user).
const WECHAT_PER_ADDRESS_PER_MINUTE: i64 = 1200;

pub const PHONE_CONTEXT: &str = "users.phone";
pub const SESSION_KEY_CONTEXT: &str = "users.wechat_session_key";

fn tokens(state: &AppState, info: &SessionInfo, refresh_token: String, now: DateTime<Utc>) -> TokenPair {
    TokenPair {
        access_token: state.tokens.issue(info.user_id, info.session_id, info.role, now),
        refresh_token,
        token_type: "Bearer",
        expires_in: ACCESS_TTL_SECS,
    }
}

pub fn normalise_username(username: &str) -> String {
    username.trim().to_lowercase()
}

/// Mini-program sign-in: the first one creates the talent's account.
pub async fn wechat_login(state: &AppState, code: &str, meta: &RequestMeta) -> Result<TokenPair, ApiError> {
    let mut errors = Vec::new();
    validate::required("code", code, 128, &mut errors);
    validate::check(errors)?;
    ratelimit::hit(&state.cache, &format!("wxlogin:ip:{}", meta.limit_address()), WECHAT_PER_ADDRESS_PER_MINUTE, Duration::from_secs(60))
        .await
        .map_err(|secs| ApiError::new(ErrorCode::TooManyRequests).retry_after(secs))?;
    let wx = state.wechat.code2session(code.trim()).await?;
    let now = state.clock.now();
    let session_key = state.keyring.encrypt(SESSION_KEY_CONTEXT, secrecy::ExposeSecret::expose_secret(&wx.session_key));

    let txn = db::begin_write(&state.db).await?;
    let existing = user::Entity::find().filter(user::Column::WechatOpenid.eq(&wx.openid)).one(&txn).await?;
    let account = match existing {
        Some(u) => {
            let mut active = u.into_active_model();
            active.wechat_session_key_enc = Set(Some(session_key));
            if wx.unionid.is_some() {
                active.wechat_unionid = Set(wx.unionid.clone());
            }
            active.updated_at = Set(now);
            active.update(&txn).await?
        }
        None => {
            user::ActiveModel {
                wechat_openid: Set(Some(wx.openid.clone())),
                wechat_unionid: Set(wx.unionid.clone()),
                wechat_session_key_enc: Set(Some(session_key)),
                ..super::account::new_row(Role::Talent, now)
            }
            .insert(&txn)
            .await?
        }
    };
    if account.status != "active" {
        return Err(ApiError::new(ErrorCode::AccountDisabled));
    }
    let role = crate::error::stored("users.role", &account.role, Role::parse)?;
    if role != Role::Talent {
        // An openid belongs to talents only; anything else is a data error of ours.
        return Err(ApiError::internal(anyhow::anyhow!("openid bound to a {role} account")));
    }
    let (info, refresh) = sessions::open(&txn, &state.keyring, &account, role, &meta.origin(), now).await?;
    txn.commit().await?;
    tracing::info!(user_id = %account.id, session_id = %info.session_id, "talent signed in");
    Ok(tokens(state, &info, refresh, now))
}

/// Staff and admin sign-in. Unknown users and wrong passwords get the same answer in the
/// same time; repeated failures lock the name at the address they come from, whether or
/// not an account has it (see [`lockout`]).
pub async fn password_login(state: &AppState, username: &str, password: &str, meta: &RequestMeta) -> Result<TokenPair, ApiError> {
    let mut errors = Vec::new();
    validate::required("username", username, 64, &mut errors);
    validate::required("password", password, password::MAX_LEN, &mut errors);
    validate::check(errors)?;
    let username = normalise_username(username);
    let address = meta.limit_address();
    let too_many = |secs| ApiError::new(ErrorCode::TooManyRequests).retry_after(secs);
    let minute = Duration::from_secs(60);
    ratelimit::hit(&state.cache, &format!("login:ip:{address}"), PASSWORD_PER_ADDRESS_PER_MINUTE, minute).await.map_err(too_many)?;
    ratelimit::hit(&state.cache, &format!("login:user:{username}:{address}"), PASSWORD_PER_NAME_AND_ADDRESS_PER_MINUTE, minute)
        .await
        .map_err(too_many)?;

    let now = state.clock.now();
    let account = user::Entity::find().filter(user::Column::Username.eq(&username)).one(&state.db).await?;
    let id = account.as_ref().map(|a| a.id);
    // Counted before the password is checked (see `lockout::attempt`).
    let txn = db::begin_write(&state.db).await?;
    if let Some(secs) = lockout::attempt(&txn, &username, &address, id, meta.ip.as_deref(), now).await? {
        txn.rollback().await?;
        return Err(ApiError::new(ErrorCode::AccountLocked).retry_after(secs));
    }
    txn.commit().await?;

    let ok = password::verify(account.as_ref().and_then(|a| a.password_hash.as_deref()), password).await;
    let Some(account) = account.filter(|_| ok) else {
        tracing::info!(address = %address, "password sign-in failed");
        return Err(ApiError::new(ErrorCode::InvalidCredentials));
    };
    if account.status != "active" {
        return Err(ApiError::new(ErrorCode::AccountDisabled));
    }
    let Some(role) = Role::parse(&account.role).filter(|r| *r != Role::Talent) else {
        return Err(ApiError::new(ErrorCode::InvalidCredentials));
    };

    let txn = db::begin_write(&state.db).await?;
    lockout::forgive(&txn, &username, &address).await?;
    let (info, refresh) = sessions::open(&txn, &state.keyring, &account, role, &meta.origin(), now).await?;
    txn.commit().await?;
    tracing::info!(user_id = %account.id, role = %role, session_id = %info.session_id, "signed in with password");
    Ok(tokens(state, &info, refresh, now))
}

/// Rotates a refresh token. A token that was already rotated is a sign of theft: the
/// whole session is revoked.
pub async fn refresh(state: &AppState, presented: &str) -> Result<TokenPair, ApiError> {
    let invalid = || ApiError::new(ErrorCode::RefreshTokenInvalid);
    if presented.is_empty() || presented.len() > 128 {
        return Err(invalid());
    }
    let hash = crypto::sha256_hex(presented.as_bytes());
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let Some(token) = refresh_token::Entity::find_by_id(hash.clone()).one(&txn).await? else {
        return Err(invalid());
    };
    let rotated = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RotatedAt, Expr::value(Some(now)))
        .filter(refresh_token::Column::TokenHash.eq(hash))
        .filter(refresh_token::Column::RotatedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected;
    if token.rotated_at.is_some() || rotated == 0 {
        let revoked = sessions::revoke(&txn, Revoke::Session(token.session_id), "refresh_token_reused", now).await?;
        txn.commit().await?;
        sessions::forget(&state.cache, &revoked).await;
        tracing::warn!(session_id = %token.session_id, "refresh token reused; session revoked");
        return Err(ApiError::new(ErrorCode::RefreshTokenReused));
    }
    let Some(info) = sessions::load_from_db(&txn, &state.keyring, token.session_id, now).await? else {
        return Err(ApiError::new(ErrorCode::SessionRevoked));
    };
    session::Entity::update_many()
        .col_expr(session::Column::RefreshedAt, Expr::value(now))
        .filter(session::Column::Id.eq(info.session_id))
        .exec(&txn)
        .await?;
    let new_token = sessions::new_refresh_token(&txn, info.session_id, now).await?;
    txn.commit().await?;
    Ok(tokens(state, &info, new_token, now))
}

pub async fn logout(state: &AppState, session: &SessionInfo) -> Result<(), ApiError> {
    let revoked = sessions::revoke(&state.db, Revoke::Session(session.session_id), "logout", state.clock.now()).await?;
    sessions::forget(&state.cache, &revoked).await;
    Ok(())
}

/// The caller's own account, from the session (no database read).
pub fn me(session: &SessionInfo) -> Me {
    Me {
        id: session.user_id,
        role: session.role,
        username: session.username.clone(),
        partner_id: session.partner_id,
        phone: session.phone.clone(),
        must_change_password: session.must_change_password,
        created_at: session.created_at,
    }
}

/// Binds the phone number WeChat vouches for to the talent's account.
pub async fn bind_phone(state: &AppState, session: &SessionInfo, code: &str) -> Result<String, ApiError> {
    let mut errors = Vec::new();
    validate::required("code", code, 128, &mut errors);
    validate::check(errors)?;
    let account = user::Entity::find_by_id(session.user_id).one(&state.db).await?.ok_or_else(ApiError::not_found)?;
    let openid = account.wechat_openid.clone().ok_or_else(|| ApiError::new(ErrorCode::Forbidden))?;
    let phone = state.wechat.phone_number(code.trim(), &openid).await.map_err(crate::wechat::phone_code_problem)?;
    let mut active = account.into_active_model();
    active.phone_enc = Set(Some(state.keyring.encrypt(PHONE_CONTEXT, &phone)));
    active.phone_hash = Set(Some(state.keyring.blind_index("phone", &phone)));
    active.updated_at = Set(state.clock.now());
    active.update(&state.db).await?;
    sessions::refresh_cached(&state.cache, session.session_id).await;
    Ok(mask::phone(&phone))
}

/// Changes the caller's password; every other session of the account is signed out.
pub async fn change_password(state: &AppState, session: &SessionInfo, current: &str, new: &str) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    validate::required("current_password", current, password::MAX_LEN, &mut errors);
    if let Some(e) = password::check_new("new_password", new) {
        errors.push(e);
    }
    if current == new && !current.is_empty() {
        errors.push(FieldError::new(
            "new_password",
            "unchanged",
            Text::new("新密码不能与当前密码相同", "must differ from the current password"),
        ));
    }
    validate::check(errors)?;
    let account = user::Entity::find_by_id(session.user_id).one(&state.db).await?.ok_or_else(ApiError::not_found)?;
    if account.password_hash.is_none() {
        return Err(ApiError::new(ErrorCode::Forbidden));
    }
    if !password::verify(account.password_hash.as_deref(), current).await {
        return Err(ApiError::validation(vec![FieldError::new(
            "current_password",
            "incorrect",
            Text::new("当前密码不正确", "the current password is wrong"),
        )]));
    }
    let hash = password::hash(new).await?;
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(Some(hash)))
        .col_expr(user::Column::MustChangePassword, Expr::value(false))
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(account.id))
        .exec(&txn)
        .await?;
    let others =
        sessions::revoke(&txn, Revoke::OthersOfUser { user: account.id, keep: session.session_id }, "password_changed", now).await?;
    txn.commit().await?;
    sessions::forget(&state.cache, &others).await;
    sessions::refresh_cached(&state.cache, session.session_id).await;
    Ok(())
}
