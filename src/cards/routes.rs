//! `/me/card` and `/admin/cards…`.

use actix_web::{get, patch, post, web};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::dto::{CardDetail, CardPii, CardSearch, CardView, ChangeCard, OwnCardView, Reason, Renew};
use super::service::{self, Op};
use crate::auth::{RequestMeta, Reviewer, Talent};
use crate::error::{ApiError, ProblemBody};
use crate::pagination::{Page, PageParams};
use crate::state::AppState;
use crate::validate;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(my_card)
        .service(search)
        .service(detail)
        .service(pii)
        .service(suspend)
        .service(resume)
        .service(revoke)
        .service(renew)
        .service(change);
}

/// The talent's own card, with their name and ID number in full.
#[utoipa::path(tag = "cards", security(("bearer" = ["talent"])), responses((status = OK, body = OwnCardView), (status = NOT_FOUND, description = "`no_card`", body = ProblemBody)))]
#[get("/me/card")]
async fn my_card(state: web::Data<AppState>, talent: Talent) -> Result<web::Json<OwnCardView>, ApiError> {
    Ok(web::Json(service::own(&state, talent.user_id).await?))
}

/// Search cards by number, exact holder name, tier or status.
#[utoipa::path(tag = "admin cards", params(CardSearch, PageParams), security(("bearer" = ["reviewer", "super_admin"])), responses((status = OK, body = Page<CardView>), (status = UNPROCESSABLE_ENTITY, body = ProblemBody)))]
#[get("/admin/cards")]
async fn search(
    state: web::Data<AppState>,
    _: Reviewer,
    q: web::Query<CardSearch>,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<CardView>>, ApiError> {
    Ok(web::Json(service::search(&state, &q, &page).await?))
}

/// A card with its event history.
#[utoipa::path(tag = "admin cards", security(("bearer" = ["reviewer", "super_admin"])), responses((status = OK, body = CardDetail), (status = NOT_FOUND, body = ProblemBody)))]
#[get("/admin/cards/{id}")]
async fn detail(state: web::Data<AppState>, _: Reviewer, id: web::Path<Uuid>) -> Result<web::Json<CardDetail>, ApiError> {
    Ok(web::Json(service::detail(&state, *id).await?))
}

/// The holder's name and ID number in full. Every call is recorded in the audit log.
#[utoipa::path(tag = "admin cards", security(("bearer" = ["reviewer", "super_admin"])), responses((status = OK, body = CardPii), (status = NOT_FOUND, body = ProblemBody)))]
#[get("/admin/cards/{id}/pii")]
async fn pii(state: web::Data<AppState>, r: Reviewer, meta: RequestMeta, id: web::Path<Uuid>) -> Result<web::Json<CardPii>, ApiError> {
    Ok(web::Json(service::pii(&state, &meta.actor(&r), *id).await?))
}

// rustfmt re-indents the attribute inside this macro on every run; keep it as written.
#[rustfmt::skip]
macro_rules! transition {
    ($name:ident, $path:literal, $op:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(
            tag = "admin cards",
            request_body = Reason,
            security(("bearer" = ["reviewer", "super_admin"])),
            responses(
                (status = OK, body = CardDetail),
                (status = CONFLICT, description = "`card_state_conflict`", body = ProblemBody),
                (status = NOT_FOUND, body = ProblemBody),
                (status = UNPROCESSABLE_ENTITY, body = ProblemBody),
            )
        )]
        #[post($path)]
        async fn $name(
            state: web::Data<AppState>,
            r: Reviewer,
            meta: RequestMeta,
            id: web::Path<Uuid>,
            body: web::Json<Reason>,
        ) -> Result<web::Json<CardDetail>, ApiError> {
            Ok(web::Json(service::apply(&state, &meta.actor(&r), *id, $op, &body.reason).await?))
        }
    };
}

transition!(suspend, "/admin/cards/{id}/suspend", Op::Suspend, "Suspend an active card.");
transition!(resume, "/admin/cards/{id}/resume", Op::Resume, "Resume a suspended card (a revoked card cannot be resumed).");
transition!(revoke, "/admin/cards/{id}/revoke", Op::Revoke, "Revoke a card for good; its holder may apply again.");

/// Extend a card's validity.
#[utoipa::path(tag = "admin cards", request_body = Renew, security(("bearer" = ["reviewer", "super_admin"])), responses((status = OK, body = CardDetail), (status = CONFLICT, body = ProblemBody), (status = UNPROCESSABLE_ENTITY, body = ProblemBody)))]
#[post("/admin/cards/{id}/renew")]
async fn renew(
    state: web::Data<AppState>,
    r: Reviewer,
    meta: RequestMeta,
    id: web::Path<Uuid>,
    body: web::Json<Renew>,
) -> Result<web::Json<CardDetail>, ApiError> {
    let mut errors = Vec::new();
    service::check_valid_years(body.valid_years, &mut errors);
    validate::check(errors)?;
    let op = Op::Renew { years: body.valid_years };
    Ok(web::Json(service::apply(&state, &meta.actor(&r), *id, op, &body.reason).await?))
}

/// Change a card's tier or category.
#[utoipa::path(tag = "admin cards", request_body = ChangeCard, security(("bearer" = ["reviewer", "super_admin"])), responses((status = OK, body = CardDetail), (status = CONFLICT, body = ProblemBody), (status = UNPROCESSABLE_ENTITY, body = ProblemBody)))]
#[patch("/admin/cards/{id}")]
async fn change(
    state: web::Data<AppState>,
    r: Reviewer,
    meta: RequestMeta,
    id: web::Path<Uuid>,
    body: web::Json<ChangeCard>,
) -> Result<web::Json<CardDetail>, ApiError> {
    let op = Op::Change { tier: body.tier, category: body.category };
    Ok(web::Json(service::apply(&state, &meta.actor(&r), *id, op, &body.reason).await?))
}
