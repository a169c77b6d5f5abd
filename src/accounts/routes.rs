//! `/api/v1/admin/users`: admin accounts, for super admins.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::dto::{AccountFilter, AccountStatus, AccountView, CreateAccount, ResetPassword, TalentStatusChange, UpdateAccount};
use super::service;
use crate::auth::{RequestMeta, Reviewer, SuperAdmin};
use crate::error::{ApiError, ProblemBody};
use crate::pagination::{Page, PageParams};
use crate::state::AppState;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(list).service(create).service(get_one).service(update).service(disable).service(reset_password).service(update_talent);
}

/// Disable or re-enable a talent's account. Disabling signs them out everywhere and
/// suspends their live card (its QR tokens stop verifying); re-enabling resumes a card that
/// disabling suspended. Reviewers and super admins; the reason is recorded.
#[utoipa::path(
    tag = "admin cards",
    request_body = TalentStatusChange,
    security(("bearer" = ["reviewer", "super_admin"])),
    responses((status = OK, body = AccountView), (status = NOT_FOUND, description = "no such talent", body = ProblemBody), (status = UNPROCESSABLE_ENTITY, body = ProblemBody), (status = FORBIDDEN, body = ProblemBody))
)]
#[patch("/admin/talents/{id}")]
async fn update_talent(
    state: web::Data<AppState>,
    r: Reviewer,
    meta: RequestMeta,
    id: web::Path<Uuid>,
    body: web::Json<TalentStatusChange>,
) -> Result<web::Json<AccountView>, ApiError> {
    Ok(web::Json(service::set_talent_status(&state, &meta.actor(&r), *id, body.status, &body.reason).await?))
}

/// List admin accounts, oldest first.
#[utoipa::path(
    operation_id = "list_admin_users",
    tag = "admin users",
    params(AccountFilter, PageParams),
    security(("bearer" = ["super_admin"])),
    responses((status = OK, body = Page<AccountView>), (status = UNPROCESSABLE_ENTITY, body = ProblemBody), (status = FORBIDDEN, body = ProblemBody))
)]
#[get("/admin/users")]
async fn list(
    state: web::Data<AppState>,
    _: SuperAdmin,
    filter: web::Query<AccountFilter>,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<AccountView>>, ApiError> {
    Ok(web::Json(service::list_admins(&state, &filter, &page).await?))
}

/// Create an admin account with an initial password it must change at first sign-in.
#[utoipa::path(
    tag = "admin users",
    request_body = CreateAccount,
    security(("bearer" = ["super_admin"])),
    responses(
        (status = CREATED, body = AccountView),
        (status = UNPROCESSABLE_ENTITY, body = ProblemBody),
        (status = CONFLICT, description = "`username_unavailable`", body = ProblemBody),
        (status = FORBIDDEN, body = ProblemBody),
    )
)]
#[post("/admin/users")]
async fn create(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    meta: RequestMeta,
    body: web::Json<CreateAccount>,
) -> Result<HttpResponse, ApiError> {
    let view = service::create_admin(&state, &meta.actor(&admin), &body.username, &body.password, body.role).await?;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(tag = "admin users", security(("bearer" = ["super_admin"])), responses((status = OK, body = AccountView), (status = NOT_FOUND, body = ProblemBody)))]
#[get("/admin/users/{id}")]
async fn get_one(state: web::Data<AppState>, _: SuperAdmin, id: web::Path<Uuid>) -> Result<web::Json<AccountView>, ApiError> {
    Ok(web::Json(service::get_admin(&state, *id).await?))
}

/// Change an admin's role or status; either signs the account out everywhere.
#[utoipa::path(
    tag = "admin users",
    request_body = UpdateAccount,
    security(("bearer" = ["super_admin"])),
    responses((status = OK, body = AccountView), (status = NOT_FOUND, body = ProblemBody), (status = CONFLICT, description = "changing yourself", body = ProblemBody), (status = UNPROCESSABLE_ENTITY, body = ProblemBody))
)]
#[patch("/admin/users/{id}")]
async fn update(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    meta: RequestMeta,
    id: web::Path<Uuid>,
    body: web::Json<UpdateAccount>,
) -> Result<web::Json<AccountView>, ApiError> {
    Ok(web::Json(service::update_admin(&state, &meta.actor(&admin), *id, &body).await?))
}

/// Disable an admin account (accounts are never deleted: the audit log refers to them).
#[utoipa::path(tag = "admin users", security(("bearer" = ["super_admin"])), responses((status = OK, body = AccountView), (status = NOT_FOUND, body = ProblemBody), (status = CONFLICT, body = ProblemBody)))]
#[delete("/admin/users/{id}")]
async fn disable(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    meta: RequestMeta,
    id: web::Path<Uuid>,
) -> Result<web::Json<AccountView>, ApiError> {
    let change = UpdateAccount { role: None, status: Some(AccountStatus::Disabled) };
    Ok(web::Json(service::update_admin(&state, &meta.actor(&admin), *id, &change).await?))
}

/// Set a new initial password; the account is signed out and must change it.
#[utoipa::path(tag = "admin users", request_body = ResetPassword, security(("bearer" = ["super_admin"])), responses((status = NO_CONTENT), (status = NOT_FOUND, body = ProblemBody), (status = UNPROCESSABLE_ENTITY, body = ProblemBody)))]
#[post("/admin/users/{id}/password")]
async fn reset_password(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    meta: RequestMeta,
    id: web::Path<Uuid>,
    body: web::Json<ResetPassword>,
) -> Result<HttpResponse, ApiError> {
    service::reset_admin_password(&state, &meta.actor(&admin), *id, &body.password).await?;
    Ok(HttpResponse::NoContent().finish())
}
