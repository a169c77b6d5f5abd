//! Merchant staff accounts: operators manage any partner's (`/admin/partners/{id}/staff`),
//! a merchant manager manages their own partner's (`/merchant/staff`).
//!
//! Usernames are one namespace for every account, so that signing in by username alone is
//! never ambiguous. Creating an account therefore tells its creator whether a name is in
//! use; it tells nothing more: every conflict is the same `username_unavailable`, whether
//! the name is an admin's, another partner's staff or one's own, and conflicts are
//! budgeted per creator ([`CONFLICTS_PER_HOUR`]), so guessing names costs hours, not
//! seconds.

use actix_web::{HttpResponse, get, patch, post, web};
use entity::{partner, user};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect};
use serde_json::json;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::dto::{AccountView, CreateAccount, ResetPassword, UpdateAccount};
use super::service::{self, NewAccount};
use crate::audit::{self, Actor, Change};
use crate::auth::sessions::{self, Revoke};
use crate::auth::{Manager, Operator, RequestMeta, Role, ratelimit};
use crate::db;
use crate::error::{ApiError, ErrorCode, FieldError, ProblemBody, Text};
use crate::pagination::{Page, PageParams};
use crate::state::AppState;

/// Username conflicts one creator may meet per hour; past that, creating staff waits for
/// the hour to end (whatever the name, so that the refusal itself reveals nothing).
pub const CONFLICTS_PER_HOUR: i64 = 10;
const CONFLICT_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// Who is managing staff, and so which roles they may hand out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum By {
    Operator,
    Manager,
}

impl By {
    fn may_grant(self, role: Role) -> bool {
        match self {
            By::Operator => role.is_merchant(),
            By::Manager => role == Role::MerchantStaff,
        }
    }
}

fn role_error(role: Role) -> ApiError {
    ApiError::validation(vec![FieldError::new(
        "role",
        "not_allowed",
        Text::new(format!("不能授予角色 {role}"), format!("role {role} cannot be granted here")),
    )])
}

async fn list(state: &AppState, partner_id: Uuid, page: &PageParams) -> Result<Page<AccountView>, ApiError> {
    let (limit, after) = page.parse::<Uuid>()?;
    let mut q = user::Entity::find()
        .filter(user::Column::PartnerId.eq(partner_id))
        .filter(user::Column::Role.is_in([Role::MerchantStaff.as_str(), Role::MerchantManager.as_str()]));
    if let Some(after) = after {
        q = q.filter(user::Column::Id.gt(after));
    }
    let rows = q.order_by_asc(user::Column::Id).limit(limit + 1).all(&state.db).await?;
    Page::try_from_rows(rows, limit, |u| u.id, |u| AccountView::try_from(&u))
}

async fn create(state: &AppState, actor: &Actor, by: By, partner_id: Uuid, body: &CreateAccount) -> Result<AccountView, ApiError> {
    partner::Entity::find_by_id(partner_id).one(&state.db).await?.ok_or_else(ApiError::not_found)?;
    if !by.may_grant(body.role) {
        return Err(role_error(body.role));
    }
    let budget = format!("staff:conflicts:{}", actor.user_id.unwrap_or_default());
    let spent = |secs| ApiError::new(ErrorCode::TooManyRequests).retry_after(secs);
    ratelimit::check(&state.cache, &budget, CONFLICTS_PER_HOUR - 1, CONFLICT_WINDOW).await.map_err(spent)?;
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let new = NewAccount {
        username: &body.username,
        password: &body.password,
        role: body.role,
        partner_id: Some(partner_id),
        must_change_password: true,
    };
    let account = match service::create(&txn, &state.keyring, actor, new, now).await {
        Ok(account) => account,
        Err(e) if e.code() == ErrorCode::UsernameUnavailable => {
            // Counted here, enforced by the check above on the next attempt.
            let spent = ratelimit::hit(&state.cache, &budget, CONFLICTS_PER_HOUR - 1, CONFLICT_WINDOW).await.is_err();
            tracing::warn!(actor = ?actor.user_id, budget_spent = spent, "staff username unavailable");
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    txn.commit().await?;
    AccountView::try_from(&account)
}

/// The staff account `id` of `partner_id`. Staff of another partner: 403 for a manager
/// (they asked about someone else's people), 404 for an operator's mismatched path.
async fn find<C: sea_orm::ConnectionTrait>(db: &C, by: By, partner_id: Uuid, id: Uuid) -> Result<user::Model, ApiError> {
    let account = user::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|u| Role::parse(&u.role).is_some_and(Role::is_merchant))
        .ok_or_else(ApiError::not_found)?;
    if account.partner_id != Some(partner_id) {
        return Err(match by {
            By::Manager => ApiError::new(ErrorCode::Forbidden),
            By::Operator => ApiError::not_found(),
        });
    }
    Ok(account)
}

async fn update(
    state: &AppState,
    actor: &Actor,
    by: By,
    partner_id: Uuid,
    id: Uuid,
    change: &UpdateAccount,
) -> Result<AccountView, ApiError> {
    if let Some(role) = change.role.filter(|r| !by.may_grant(*r)) {
        return Err(role_error(role));
    }
    if actor.user_id == Some(id) {
        return Err(
            ApiError::new(ErrorCode::Conflict).detail(Text::new("不能修改自己的角色或状态", "You cannot change your own role or status"))
        );
    }
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let before = find(&txn, by, partner_id, id).await?;
    if by == By::Manager && before.role != Role::MerchantStaff.as_str() {
        return Err(ApiError::new(ErrorCode::Forbidden));
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
    let revoked = if after.role != before.role || after.status != before.status {
        sessions::revoke(&txn, Revoke::AllOfUser(id), "account_changed", now).await?
    } else {
        Vec::new()
    };
    let change = Change {
        action: "staff.update",
        target_type: "user",
        target_id: id.to_string(),
        before: Some(json!(AccountView::try_from(&before)?)),
        after: Some(json!(AccountView::try_from(&after)?)),
    };
    audit::record(&txn, &state.keyring, actor, change, now).await?;
    txn.commit().await?;
    sessions::forget(&state.cache, &revoked).await;
    AccountView::try_from(&after)
}

async fn reset(state: &AppState, actor: &Actor, by: By, partner_id: Uuid, id: Uuid, password: &str) -> Result<(), ApiError> {
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let account = find(&txn, by, partner_id, id).await?;
    if by == By::Manager && account.role != Role::MerchantStaff.as_str() {
        return Err(ApiError::new(ErrorCode::Forbidden));
    }
    let revoked = service::reset_password(&txn, &state.keyring, actor, account, password, now).await?;
    txn.commit().await?;
    sessions::forget(&state.cache, &revoked).await;
    Ok(())
}

fn own_partner(manager: &Manager) -> Result<Uuid, ApiError> {
    manager.partner_id.ok_or_else(|| ApiError::new(ErrorCode::Forbidden))
}

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(admin_list)
        .service(admin_create)
        .service(admin_update)
        .service(admin_reset)
        .service(merchant_list)
        .service(merchant_create)
        .service(merchant_update)
        .service(merchant_reset);
}

#[utoipa::path(operation_id = "admin_list_staff", tag = "staff", params(PageParams), security(("bearer" = ["operator", "super_admin"])), responses((status = OK, body = Page<AccountView>), (status = FORBIDDEN, body = ProblemBody)))]
#[get("/admin/partners/{id}/staff")]
async fn admin_list(
    state: web::Data<AppState>,
    _: Operator,
    id: web::Path<Uuid>,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<AccountView>>, ApiError> {
    Ok(web::Json(list(&state, *id, &page).await?))
}

/// Create a merchant staff member or manager, with an initial password to change.
#[utoipa::path(
    tag = "staff",
    request_body = CreateAccount,
    security(("bearer" = ["operator", "super_admin"])),
    responses((status = CREATED, body = AccountView), (status = CONFLICT, description = "`username_unavailable`: the name is in use (by whom is not said)", body = ProblemBody), (status = UNPROCESSABLE_ENTITY, body = ProblemBody), (status = NOT_FOUND, body = ProblemBody), (status = TOO_MANY_REQUESTS, description = "`too_many_requests`: too many unavailable names this hour", body = ProblemBody))
)]
#[post("/admin/partners/{id}/staff")]
async fn admin_create(
    state: web::Data<AppState>,
    op: Operator,
    meta: RequestMeta,
    id: web::Path<Uuid>,
    body: web::Json<CreateAccount>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(create(&state, &meta.actor(&op), By::Operator, *id, &body).await?))
}

/// Change a staff member's role or status (either signs them out).
#[utoipa::path(tag = "staff", request_body = UpdateAccount, security(("bearer" = ["operator", "super_admin"])), responses((status = OK, body = AccountView), (status = NOT_FOUND, body = ProblemBody), (status = UNPROCESSABLE_ENTITY, body = ProblemBody)))]
#[patch("/admin/partners/{id}/staff/{user_id}")]
async fn admin_update(
    state: web::Data<AppState>,
    op: Operator,
    meta: RequestMeta,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<UpdateAccount>,
) -> Result<web::Json<AccountView>, ApiError> {
    Ok(web::Json(update(&state, &meta.actor(&op), By::Operator, path.0, path.1, &body).await?))
}

#[utoipa::path(tag = "staff", request_body = ResetPassword, security(("bearer" = ["operator", "super_admin"])), responses((status = NO_CONTENT), (status = NOT_FOUND, body = ProblemBody), (status = UNPROCESSABLE_ENTITY, body = ProblemBody)))]
#[post("/admin/partners/{id}/staff/{user_id}/password")]
async fn admin_reset(
    state: web::Data<AppState>,
    op: Operator,
    meta: RequestMeta,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<ResetPassword>,
) -> Result<HttpResponse, ApiError> {
    reset(&state, &meta.actor(&op), By::Operator, path.0, path.1, &body.password).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The manager's own partner's staff.
#[utoipa::path(tag = "staff", params(PageParams), security(("bearer" = ["merchant_manager"])), responses((status = OK, body = Page<AccountView>), (status = FORBIDDEN, body = ProblemBody)))]
#[get("/merchant/staff")]
async fn merchant_list(
    state: web::Data<AppState>,
    m: Manager,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<AccountView>>, ApiError> {
    Ok(web::Json(list(&state, own_partner(&m)?, &page).await?))
}

/// Create a staff member (role `merchant_staff`) of the manager's own partner.
#[utoipa::path(
    tag = "staff",
    request_body = CreateAccount,
    security(("bearer" = ["merchant_manager"])),
    responses(
        (status = CREATED, body = AccountView),
        (status = CONFLICT, description = "`username_unavailable`: the name is in use (by whom is not said)", body = ProblemBody),
        (status = UNPROCESSABLE_ENTITY, body = ProblemBody),
        (status = TOO_MANY_REQUESTS, description = "`too_many_requests`: too many unavailable names this hour", body = ProblemBody),
    )
)]
#[post("/merchant/staff")]
async fn merchant_create(
    state: web::Data<AppState>,
    m: Manager,
    meta: RequestMeta,
    body: web::Json<CreateAccount>,
) -> Result<HttpResponse, ApiError> {
    let partner = own_partner(&m)?;
    Ok(HttpResponse::Created().json(create(&state, &meta.actor(&m), By::Manager, partner, &body).await?))
}

/// Disable or re-enable a staff member of the manager's own partner.
#[utoipa::path(tag = "staff", request_body = UpdateAccount, security(("bearer" = ["merchant_manager"])), responses((status = OK, body = AccountView), (status = FORBIDDEN, description = "staff of another partner", body = ProblemBody), (status = NOT_FOUND, body = ProblemBody)))]
#[patch("/merchant/staff/{user_id}")]
async fn merchant_update(
    state: web::Data<AppState>,
    m: Manager,
    meta: RequestMeta,
    id: web::Path<Uuid>,
    body: web::Json<UpdateAccount>,
) -> Result<web::Json<AccountView>, ApiError> {
    let partner = own_partner(&m)?;
    Ok(web::Json(update(&state, &meta.actor(&m), By::Manager, partner, *id, &body).await?))
}

#[utoipa::path(tag = "staff", request_body = ResetPassword, security(("bearer" = ["merchant_manager"])), responses((status = NO_CONTENT), (status = FORBIDDEN, body = ProblemBody), (status = NOT_FOUND, body = ProblemBody)))]
#[post("/merchant/staff/{user_id}/password")]
async fn merchant_reset(
    state: web::Data<AppState>,
    m: Manager,
    meta: RequestMeta,
    id: web::Path<Uuid>,
    body: web::Json<ResetPassword>,
) -> Result<HttpResponse, ApiError> {
    let partner = own_partner(&m)?;
    reset(&state, &meta.actor(&m), By::Manager, partner, *id, &body.password).await?;
    Ok(HttpResponse::NoContent().finish())
}
