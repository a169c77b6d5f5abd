//! `/api/v1/auth/*` and `/api/v1/me` (the caller's own account).

use actix_web::{HttpResponse, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use super::dto::{ChangePassword, Me, PasswordLogin, PhoneBound, PhoneCode, RefreshRequest, TokenPair, WechatLogin};
use super::extract::{RequestMeta, Session, Talent};
use super::service;
use crate::error::{ApiError, ProblemBody};
use crate::state::AppState;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(wechat_login)
        .service(wechat_phone)
        .service(password_login)
        .service(refresh)
        .service(logout)
        .service(me)
        .service(change_password);
}

/// Sign in from the mini-program with a `wx.login` code. The first sign-in creates the
/// talent's account.
#[utoipa::path(
    tag = "auth",
    request_body = WechatLogin,
    responses(
        (status = OK, body = TokenPair),
        (status = UNPROCESSABLE_ENTITY, description = "`validation_failed`", body = ProblemBody),
        (status = UNAUTHORIZED, description = "`wechat_code_invalid`: invalid or used code", body = ProblemBody),
        (status = FORBIDDEN, description = "`wechat_user_blocked` or `account_disabled`", body = ProblemBody),
        (status = TOO_MANY_REQUESTS, description = "`wechat_rate_limited` or `too_many_requests`", body = ProblemBody),
        (status = SERVICE_UNAVAILABLE, description = "`wechat_busy` / `wechat_unavailable`; retry after `Retry-After`", body = ProblemBody),
    )
)]
#[post("/auth/wechat/login")]
async fn wechat_login(
    state: web::Data<AppState>,
    meta: RequestMeta,
    body: web::Json<WechatLogin>,
) -> Result<web::Json<TokenPair>, ApiError> {
    Ok(web::Json(service::wechat_login(&state, &body.code, &meta).await?))
}

/// Bind the phone number from the mini-program's phone button to the talent's account.
#[utoipa::path(
    tag = "auth",
    request_body = PhoneCode,
    security(("bearer" = ["talent"])),
    responses(
        (status = OK, body = PhoneBound),
        (status = UNPROCESSABLE_ENTITY, description = "`validation_failed` on field `code`: `invalid` (invalid or used) or `other_app` (the phone number WeChat returned is watermarked for another mini-program)", body = ProblemBody),
        (status = UNAUTHORIZED, body = ProblemBody),
        (status = FORBIDDEN, body = ProblemBody),
        (status = SERVICE_UNAVAILABLE, description = "`wechat_busy` / `wechat_unavailable`", body = ProblemBody),
    )
)]
#[post("/auth/wechat/phone")]
async fn wechat_phone(state: web::Data<AppState>, talent: Talent, body: web::Json<PhoneCode>) -> Result<web::Json<PhoneBound>, ApiError> {
    let phone = service::bind_phone(&state, &talent, &body.code).await?;
    Ok(web::Json(PhoneBound { phone }))
}

/// Sign in with a username and password (merchant staff and admins).
#[utoipa::path(
    tag = "auth",
    request_body = PasswordLogin,
    responses(
        (status = OK, body = TokenPair),
        (status = UNAUTHORIZED, description = "`invalid_credentials`", body = ProblemBody),
        (status = FORBIDDEN, description = "`account_disabled`", body = ProblemBody),
        (status = LOCKED, description = "`account_locked`: five wrong passwords for this name from this address lock it here for 15 minutes; 50 from all addresses in an hour lock it everywhere for an hour, except at addresses the account signed in from before; see `Retry-After`", body = ProblemBody),
        (status = TOO_MANY_REQUESTS, description = "`too_many_requests`; see `Retry-After`", body = ProblemBody),
    )
)]
#[post("/auth/password/login")]
async fn password_login(
    state: web::Data<AppState>,
    meta: RequestMeta,
    body: web::Json<PasswordLogin>,
) -> Result<web::Json<TokenPair>, ApiError> {
    Ok(web::Json(service::password_login(&state, &body.username, &body.password, &meta).await?))
}

/// Exchange a refresh token for new tokens. The presented refresh token is used up;
/// presenting it again revokes the whole session.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = OK, body = TokenPair),
        (status = UNAUTHORIZED, description = "`refresh_token_invalid`, `refresh_token_reused` or `session_revoked`", body = ProblemBody),
    )
)]
#[post("/auth/refresh")]
async fn refresh(state: web::Data<AppState>, body: web::Json<RefreshRequest>) -> Result<web::Json<TokenPair>, ApiError> {
    Ok(web::Json(service::refresh(&state, &body.refresh_token).await?))
}

/// Sign out: the session is revoked at once, on every instance.
#[utoipa::path(tag = "auth", security(("bearer" = ["talent", "merchant_staff", "merchant_manager", "reviewer", "operator", "super_admin"])), responses((status = NO_CONTENT), (status = UNAUTHORIZED, body = ProblemBody)))]
#[post("/auth/logout")]
async fn logout(state: web::Data<AppState>, session: Session) -> Result<HttpResponse, ApiError> {
    service::logout(&state, &session).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The signed-in account.
#[utoipa::path(tag = "auth", security(("bearer" = ["talent", "merchant_staff", "merchant_manager", "reviewer", "operator", "super_admin"])), responses((status = OK, body = Me), (status = UNAUTHORIZED, body = ProblemBody)))]
#[get("/me")]
async fn me(session: Session) -> web::Json<Me> {
    web::Json(service::me(&session))
}

/// Change the password (staff and admins). Required before anything else after an
/// account is created or reset with an initial password. Signs out other sessions.
#[utoipa::path(
    tag = "auth",
    request_body = ChangePassword,
    security(("bearer" = ["merchant_staff", "merchant_manager", "reviewer", "operator", "super_admin"])),
    responses(
        (status = NO_CONTENT),
        (status = UNPROCESSABLE_ENTITY, description = "`validation_failed`: wrong current password or a weak new one", body = ProblemBody),
        (status = UNAUTHORIZED, body = ProblemBody),
    )
)]
#[post("/me/password")]
async fn change_password(state: web::Data<AppState>, session: Session, body: web::Json<ChangePassword>) -> Result<HttpResponse, ApiError> {
    service::change_password(&state, &session, &body.current_password, &body.new_password).await?;
    Ok(HttpResponse::NoContent().finish())
}
