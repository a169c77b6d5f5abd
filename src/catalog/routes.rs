//! Public catalogue (`/partners`, `/benefits`) and its administration (`/admin/partners…`).

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use serde::Serialize;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::dto::{
    AdminPartnerQuery, BenefitInput, BenefitQuery, BenefitView, NewBenefit, NewPartner, PartnerInput, PartnerQuery, PartnerView, Status,
};
use super::service;
use crate::auth::{Operator, RequestMeta};
use crate::error::{ApiError, ProblemBody};
use crate::pagination::{Page, PageParams};
use crate::state::AppState;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(list_partners)
        .service(get_partner)
        .service(partner_benefits)
        .service(list_benefits)
        .service(admin_list_partners)
        .service(admin_create_partner)
        .service(admin_get_partner)
        .service(admin_update_partner)
        .service(admin_deactivate_partner)
        .service(admin_list_benefits)
        .service(admin_create_benefit)
        .service(admin_get_benefit)
        .service(admin_update_benefit)
        .service(admin_deactivate_benefit);
}

/// Serves a public read from the instance's list cache while the catalogue version is
/// unchanged; builds, stores and serves it otherwise.
async fn cached<T: Serialize>(
    state: &AppState,
    req: &HttpRequest,
    build: impl Future<Output = Result<T, ApiError>>,
) -> Result<HttpResponse, ApiError> {
    let key = format!("{}?{}", req.path(), req.query_string());
    let render = async { Ok::<_, ApiError>(Bytes::from(serde_json::to_vec(&build.await?).map_err(anyhow::Error::from)?)) };
    Ok(json_bytes(state.catalog_cache.pages.through(&state.cache, &key, render).await?))
}

fn json_bytes(body: Bytes) -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CONTENT_TYPE, "application/json")).body(body)
}

/// Partners open to talents, with filters; `near=lat,lng` sorts by distance.
#[utoipa::path(
    tag = "catalogue",
    params(PartnerQuery, PageParams),
    responses((status = OK, body = Page<PartnerView>), (status = UNPROCESSABLE_ENTITY, body = ProblemBody))
)]
#[get("/partners")]
async fn list_partners(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<PartnerQuery>,
    page: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    cached(&state, &req, service::list_partners(&state, &q, &page)).await
}

#[utoipa::path(tag = "catalogue", responses((status = OK, body = PartnerView), (status = NOT_FOUND, body = ProblemBody)))]
#[get("/partners/{id}")]
async fn get_partner(state: web::Data<AppState>, req: HttpRequest, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    cached(&state, &req, service::public_partner(&state, *id)).await
}

/// The active benefits of one partner.
#[utoipa::path(tag = "catalogue", params(BenefitQuery, PageParams), responses((status = OK, body = Page<BenefitView>), (status = NOT_FOUND, body = ProblemBody)))]
#[get("/partners/{id}/benefits")]
async fn partner_benefits(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
    q: web::Query<BenefitQuery>,
    page: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    cached(&state, &req, service::public_benefits(&state, Some(*id), &q, &page)).await
}

/// Active benefits of active partners, with filters.
#[utoipa::path(tag = "catalogue", params(BenefitQuery, PageParams), responses((status = OK, body = Page<BenefitView>), (status = UNPROCESSABLE_ENTITY, body = ProblemBody)))]
#[get("/benefits")]
async fn list_benefits(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<BenefitQuery>,
    page: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    cached(&state, &req, service::public_benefits(&state, None, &q, &page)).await
}

/// Every partner, any status (operators).
#[utoipa::path(tag = "admin catalogue", params(AdminPartnerQuery, PageParams), security(("bearer" = ["operator", "super_admin"])), responses((status = OK, body = Page<PartnerView>), (status = FORBIDDEN, body = ProblemBody)))]
#[get("/admin/partners")]
async fn admin_list_partners(
    state: web::Data<AppState>,
    _: Operator,
    q: web::Query<AdminPartnerQuery>,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<PartnerView>>, ApiError> {
    Ok(web::Json(service::admin_partners(&state, &q, &page).await?))
}

#[utoipa::path(
    tag = "admin catalogue",
    request_body = NewPartner,
    security(("bearer" = ["operator", "super_admin"])),
    responses((status = CREATED, body = PartnerView), (status = UNPROCESSABLE_ENTITY, body = ProblemBody), (status = FORBIDDEN, body = ProblemBody))
)]
#[post("/admin/partners")]
async fn admin_create_partner(
    state: web::Data<AppState>,
    op: Operator,
    meta: RequestMeta,
    body: web::Json<PartnerInput>,
) -> Result<HttpResponse, ApiError> {
    let view = service::create_partner(&state, &meta.actor(&op), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(tag = "admin catalogue", security(("bearer" = ["operator", "super_admin"])), responses((status = OK, body = PartnerView), (status = NOT_FOUND, body = ProblemBody)))]
#[get("/admin/partners/{id}")]
async fn admin_get_partner(state: web::Data<AppState>, _: Operator, id: web::Path<Uuid>) -> Result<web::Json<PartnerView>, ApiError> {
    Ok(web::Json(service::admin_partner(&state, *id).await?))
}

#[utoipa::path(
    tag = "admin catalogue",
    request_body = PartnerInput,
    security(("bearer" = ["operator", "super_admin"])),
    responses((status = OK, body = PartnerView), (status = NOT_FOUND, body = ProblemBody), (status = UNPROCESSABLE_ENTITY, body = ProblemBody))
)]
#[patch("/admin/partners/{id}")]
async fn admin_update_partner(
    state: web::Data<AppState>,
    op: Operator,
    meta: RequestMeta,
    id: web::Path<Uuid>,
    body: web::Json<PartnerInput>,
) -> Result<web::Json<PartnerView>, ApiError> {
    Ok(web::Json(service::update_partner(&state, &meta.actor(&op), *id, body.into_inner()).await?))
}

/// Deactivate a partner: it leaves the public catalogue and keeps its history.
#[utoipa::path(tag = "admin catalogue", security(("bearer" = ["operator", "super_admin"])), responses((status = OK, body = PartnerView), (status = NOT_FOUND, body = ProblemBody)))]
#[delete("/admin/partners/{id}")]
async fn admin_deactivate_partner(
    state: web::Data<AppState>,
    op: Operator,
    meta: RequestMeta,
    id: web::Path<Uuid>,
) -> Result<web::Json<PartnerView>, ApiError> {
    let change = PartnerInput {
        name: None,
        category: None,
        district: None,
        address: None,
        lat: None,
        lng: None,
        phone: None,
        opening_hours: None,
        description: None,
        status: Some(Status::Inactive),
    };
    Ok(web::Json(service::update_partner(&state, &meta.actor(&op), *id, change).await?))
}

#[utoipa::path(tag = "admin catalogue", params(PageParams), security(("bearer" = ["operator", "super_admin"])), responses((status = OK, body = Page<BenefitView>), (status = NOT_FOUND, body = ProblemBody)))]
#[get("/admin/partners/{id}/benefits")]
async fn admin_list_benefits(
    state: web::Data<AppState>,
    _: Operator,
    id: web::Path<Uuid>,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<BenefitView>>, ApiError> {
    Ok(web::Json(service::admin_benefits(&state, *id, &page).await?))
}

#[utoipa::path(
    tag = "admin catalogue",
    request_body = NewBenefit,
    security(("bearer" = ["operator", "super_admin"])),
    responses((status = CREATED, body = BenefitView), (status = NOT_FOUND, body = ProblemBody), (status = UNPROCESSABLE_ENTITY, body = ProblemBody))
)]
#[post("/admin/partners/{id}/benefits")]
async fn admin_create_benefit(
    state: web::Data<AppState>,
    op: Operator,
    meta: RequestMeta,
    id: web::Path<Uuid>,
    body: web::Json<BenefitInput>,
) -> Result<HttpResponse, ApiError> {
    let view = service::create_benefit(&state, &meta.actor(&op), *id, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(tag = "admin catalogue", security(("bearer" = ["operator", "super_admin"])), responses((status = OK, body = BenefitView), (status = NOT_FOUND, body = ProblemBody)))]
#[get("/admin/partners/{id}/benefits/{benefit_id}")]
async fn admin_get_benefit(
    state: web::Data<AppState>,
    _: Operator,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<BenefitView>, ApiError> {
    Ok(web::Json(service::admin_benefit(&state, path.0, path.1).await?))
}

#[utoipa::path(
    tag = "admin catalogue",
    request_body = BenefitInput,
    security(("bearer" = ["operator", "super_admin"])),
    responses((status = OK, body = BenefitView), (status = NOT_FOUND, body = ProblemBody), (status = UNPROCESSABLE_ENTITY, body = ProblemBody))
)]
#[patch("/admin/partners/{id}/benefits/{benefit_id}")]
async fn admin_update_benefit(
    state: web::Data<AppState>,
    op: Operator,
    meta: RequestMeta,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<BenefitInput>,
) -> Result<web::Json<BenefitView>, ApiError> {
    Ok(web::Json(service::update_benefit(&state, &meta.actor(&op), path.0, path.1, body.into_inner()).await?))
}

/// Deactivate a benefit (redemptions keep referring to it).
#[utoipa::path(tag = "admin catalogue", security(("bearer" = ["operator", "super_admin"])), responses((status = OK, body = BenefitView), (status = NOT_FOUND, body = ProblemBody)))]
#[delete("/admin/partners/{id}/benefits/{benefit_id}")]
async fn admin_deactivate_benefit(
    state: web::Data<AppState>,
    op: Operator,
    meta: RequestMeta,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<BenefitView>, ApiError> {
    let change = BenefitInput {
        title: None,
        description: None,
        tiers: None,
        categories: None,
        quota: None,
        period: None,
        valid_from: None,
        valid_until: None,
        status: Some(Status::Inactive),
        offline_ok: None,
    };
    Ok(web::Json(service::update_benefit(&state, &meta.actor(&op), path.0, path.1, change).await?))
}
