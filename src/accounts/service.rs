use chrono::{DateTime, Utc};
use entity::user;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::json;
use uuid::Uuid;

use super::dto::{AccountFilter, AccountStatus, AccountView, UpdateAccount};
use crate::audit::{self, Actor, Change};
use crate::auth::Role;
use crate::auth::password;
use crate::auth::service::normalise_username;
use crate::auth::sessions::{self, Revoke};
use crate::crypto::Keyring;
use crate::db;
use crate::error::{ApiError, ErrorCode, FieldError, Text};
use crate::pagination::{Page, PageParams};
use crate::state::AppState;
use crate::validate;

pub struct NewAccount<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub role: Role,
    pub partner_id: Option<Uuid>,
    /// Accounts made by someone else start with a password only that someone knows.
    pub must_change_password: bool,
}

pub use crate::auth::account::new_row;

pub fn check_username(username: &str, errors: &mut Vec<FieldError>) {
    let u = normalise_username(username);
    let ok_chars = u.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if !(3..=64).contains(&u.len()) || !ok_chars {
        errors.push(FieldError::new(
            "username",
            "invalid",
            Text::new("用户名须为 3–64 个小写字母、数字或 . _ -", "3–64 lower-case letters, digits, '.', '_' or '-'"),
        ));
    }
}

/// Validates and creates a password account inside `txn`, with its audit entry.
pub async fn create<C: ConnectionTrait>(
    txn: &C,
    keys: &Keyring,
    actor: &Actor,
    new: NewAccount<'_>,
    now: DateTime<Utc>,
) -> Result<user::Model, ApiError> {
    let mut errors = Vec::new();
    check_username(new.username, &mut errors);
    if let Some(e) = password::check_new("password", new.password) {
        errors.push(e);
    }
    validate::check(errors)?;
    let hash = password::hash(new.password).await?;
    let account = user::ActiveModel {
        username: Set(Some(normalise_username(new.username))),
        password_hash: Set(Some(hash)),
        must_change_password: Set(new.must_change_password),
        partner_id: Set(new.partner_id),
        ..new_row(new.role, now)
    }
    .insert(txn)
    .await
    .map_err(|e| if db::is_unique_violation(&e) { ApiError::new(ErrorCode::UsernameUnavailable) } else { e.into() })?;
    let change = Change {
        action: "account.create",
        target_type: "user",
        target_id: account.id.to_string(),
        before: None,
        after: Some(json!(AccountView::try_from(&account)?)),
    };
    audit::record(txn, keys, actor, change, now).await?;
    Ok(account)
}

pub async fn create_admin(state: &AppState, actor: &Actor, username: &str, password: &str, role: Role) -> Result<AccountView, ApiError> {
    if !role.is_admin() {
        return Err(ApiError::validation(vec![FieldError::new("role", "invalid", Text::new("须为管理员角色", "must be an admin role"))]));
    }
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let new = NewAccount { username, password, role, partner_id: None, must_change_password: actor.user_id.is_some() };
    let account = create(&txn, &state.keyring, actor, new, now).await?;
    txn.commit().await?;
    AccountView::try_from(&account)
}

fn admin_roles(filter: &AccountFilter) -> Vec<&'static str> {
    match filter.role {
        Some(r) if r.is_admin() => vec![r.as_str()],
        Some(_) => vec![],
        None => Role::ADMINS.iter().map(|r| r.as_str()).collect(),
    }
}

pub async fn list_admins(state: &AppState, filter: &AccountFilter, page: &PageParams) -> Result<Page<AccountView>, ApiError> {
    let (limit, after) = page.parse::<Uuid>()?;
    let mut q = user::Entity::find().filter(user::Column::Role.is_in(admin_roles(filter)));
    if let Some(status) = filter.status {
        q = q.filter(user::Column::Status.eq(status.as_str()));
    }
    if let Some(after) = after {
        q = q.filter(user::Column::Id.gt(after));
    }
    let rows = q.order_by_asc(user::Column::Id).limit(limit + 1).all(&state.db).await?;
    Page::try_from_rows(rows, limit, |u| u.id, |u| AccountView::try_from(&u))
}

async fn find_admin<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<user::Model, ApiError> {
    user::Entity::find_by_id(id).one(db).await?.filter(|u| Role::parse(&u.role).is_some_and(Role::is_admin)).ok_or_else(ApiError::not_found)
}

pub async fn get_admin(state: &AppState, id: Uuid) -> Result<AccountView, ApiError> {
    AccountView::try_from(&find_admin(&state.db, id).await?)
}

/// Changes role and/or status. Either change revokes the account's sessions. An admin
/// cannot demote or disable themselves (so the last super admin cannot lock everyone out).
pub async fn update_admin(state: &AppState, actor: &Actor, id: Uuid, change: &UpdateAccount) -> Result<AccountView, ApiError> {
    if let Some(role) = change.role.filter(|r| !r.is_admin()) {
        return Err(ApiError::validation(vec![FieldError::new(
            "role",
            "invalid",
            Text::new(format!("{role} 不是管理员角色"), format!("{role} is not an admin role")),
        )]));
    }
    if actor.user_id == Some(id) {
        return Err(
            ApiError::new(ErrorCode::Conflict).detail(Text::new("不能修改自己的角色或状态", "You cannot change your own role or status"))
        );
    }
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let before = find_admin(&txn, id).await?;
    let role_changes = change.role.is_some_and(|r| r.as_str() != before.role);
    let status_changes = change.status.is_some_and(|s| s.as_str() != before.status);
    if !role_changes && !status_changes {
        return AccountView::try_from(&before);
    }
    let mut active = before.clone().into_active_model();
    if let Some(role) = change.role {
        active.role = Set(role.as_str().into());
    }
    if let Some(status) = change.status {
        active.status = Set(status.as_str().into());
    }
    active.updated_at = Set(now);
    let after = active.update(&txn).await?;
    let revoked =
        sessions::revoke(&txn, Revoke::AllOfUser(id), if status_changes { "account_status_changed" } else { "role_changed" }, now).await?;
    audit::record(
        &txn,
        &state.keyring,
        actor,
        Change {
            action: "account.update",
            target_type: "user",
            target_id: id.to_string(),
            before: Some(json!(AccountView::try_from(&before)?)),
            after: Some(json!(AccountView::try_from(&after)?)),
        },
        now,
    )
    .await?;
    txn.commit().await?;
    sessions::forget(&state.cache, &revoked).await;
    AccountView::try_from(&after)
}

/// Disables or re-enables a talent's account (SPEC §5). Disabling signs the talent out
/// everywhere and suspends their live card, so that their QR tokens stop verifying at
/// once and offline merchant apps learn it from the revocation feed; re-enabling resumes
/// the card only if disabling the account is what suspended it (a reviewer's own
/// suspension stays).
pub async fn set_talent_status(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    to: AccountStatus,
    reason: &str,
) -> Result<AccountView, ApiError> {
    let mut errors = Vec::new();
    validate::required("reason", reason, 500, &mut errors);
    validate::check(errors)?;
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let before =
        user::Entity::find_by_id(id).one(&txn).await?.filter(|u| u.role == Role::Talent.as_str()).ok_or_else(ApiError::not_found)?;
    if before.status == to.as_str() {
        return AccountView::try_from(&before);
    }
    let mut active = before.clone().into_active_model();
    active.status = Set(to.as_str().into());
    active.updated_at = Set(now);
    let after = active.update(&txn).await?;
    let revoked = sessions::revoke(&txn, Revoke::AllOfUser(id), "account_status_changed", now).await?;
    use crate::cards::service::{ACCOUNT_DISABLED, Op, last_suspended_by, live_card_of, transition};
    if let Some(card) = live_card_of(&txn, id).await? {
        match to {
            AccountStatus::Disabled if card.status == "active" => {
                transition(&txn, &state.keyring, &state.settings, actor, card.id, Op::Suspend, reason, Some(ACCOUNT_DISABLED), now).await?;
            }
            AccountStatus::Active if card.status == "suspended" && last_suspended_by(&txn, card.id, ACCOUNT_DISABLED).await? => {
                transition(&txn, &state.keyring, &state.settings, actor, card.id, Op::Resume, reason, Some(ACCOUNT_DISABLED), now).await?;
            }
            _ => {}
        }
    }
    let action = if to == AccountStatus::Disabled { "talent.disable" } else { "talent.enable" };
    let change = Change {
        action,
        target_type: "user",
        target_id: id.to_string(),
        before: Some(json!({"status": before.status})),
        after: Some(json!({"status": after.status, "reason": reason.trim()})),
    };
    audit::record(&txn, &state.keyring, actor, change, now).await?;
    txn.commit().await?;
    sessions::forget(&state.cache, &revoked).await;
    AccountView::try_from(&after)
}

/// Sets a new initial password, which must be changed at next sign-in, and signs the
/// account out everywhere.
pub async fn reset_password<C: ConnectionTrait>(
    txn: &C,
    keys: &Keyring,
    actor: &Actor,
    account: user::Model,
    password: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, ApiError> {
    if let Some(e) = password::check_new("password", password) {
        return Err(ApiError::validation(vec![e]));
    }
    let hash = password::hash(password).await?;
    let id = account.id;
    if let Some(username) = &account.username {
        crate::auth::lockout::clear_all(txn, username).await?;
    }
    let mut active = account.into_active_model();
    active.password_hash = Set(Some(hash));
    active.must_change_password = Set(true);
    active.failed_logins = Set(0);
    active.locked_until = Set(None);
    active.updated_at = Set(now);
    active.update(txn).await?;
    let revoked = sessions::revoke(txn, Revoke::AllOfUser(id), "password_reset", now).await?;
    let change = Change { action: "account.reset_password", target_type: "user", target_id: id.to_string(), before: None, after: None };
    audit::record(txn, keys, actor, change, now).await?;
    Ok(revoked)
}

pub async fn reset_admin_password(state: &AppState, actor: &Actor, id: Uuid, password: &str) -> Result<(), ApiError> {
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let account = find_admin(&txn, id).await?;
    let revoked = reset_password(&txn, &state.keyring, actor, account, password, now).await?;
    txn.commit().await?;
    sessions::forget(&state.cache, &revoked).await;
    Ok(())
}
