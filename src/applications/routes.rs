//! `/me/applications`, `/me/documents` and `/admin/applications…`.

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{HttpResponse, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::documents;
use super::dto::{
    ApplicationCount, ApplicationFilter, ApplicationPii, ApplicationView, Approve, CountQuery, DocumentUpload, DocumentView,
    NewApplication, Reject,
};
use super::service;
use crate::auth::{RequestMeta, Reviewer, Talent};
use crate::error::{ApiError, ProblemBody};
use crate::pagination::{Page, PageParams};
use crate::state::AppState;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(submit)
        .service(list_mine)
        .service(withdraw)
        .service(upload)
        .service(my_document)
        .service(admin_list)
        // Before `/admin/applications/{id}`, which would take `count` for an id.
        .service(admin_count)
        .service(admin_get)
        .service(admin_pii)
        .service(approve)
        .service(reject)
        .service(admin_document);
}

/// Apply for a card. One open application per talent; an ID number that already holds a
/// live card cannot apply again.
#[utoipa::path(
    tag = "applications",
    request_body = NewApplication,
    security(("bearer" = ["talent"])),
    responses(
        (status = CREATED, body = ApplicationView),
        (status = UNPROCESSABLE_ENTITY, description = "`validation_failed` (ID number format, check character, birth date…)", body = ProblemBody),
        (status = CONFLICT, description = "`application_open`, `id_number_has_card` or `card_exists`", body = ProblemBody),
    )
)]
#[post("/me/applications")]
async fn submit(state: web::Data<AppState>, talent: Talent, body: web::Json<NewApplication>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::submit(&state, talent.user_id, body.into_inner()).await?))
}

#[utoipa::path(tag = "applications", params(PageParams), security(("bearer" = ["talent"])), responses((status = OK, body = Page<ApplicationView>)))]
#[get("/me/applications")]
async fn list_mine(
    state: web::Data<AppState>,
    talent: Talent,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<ApplicationView>>, ApiError> {
    Ok(web::Json(service::list_mine(&state, talent.user_id, &page).await?))
}

#[utoipa::path(tag = "applications", security(("bearer" = ["talent"])), responses((status = OK, body = ApplicationView), (status = NOT_FOUND, body = ProblemBody), (status = CONFLICT, description = "`application_decided`", body = ProblemBody)))]
#[post("/me/applications/{id}/withdraw")]
async fn withdraw(state: web::Data<AppState>, talent: Talent, id: web::Path<Uuid>) -> Result<web::Json<ApplicationView>, ApiError> {
    Ok(web::Json(service::withdraw(&state, talent.user_id, *id).await?))
}

/// Upload a supporting document (`multipart/form-data`, part `file`): PDF, JPEG or PNG by
/// content, at most 5 MiB. Stored encrypted. Each talent may hold 20 documents and 40 MiB
/// in all, and upload 10 times in 10 minutes.
#[utoipa::path(
    tag = "applications",
    request_body(content = DocumentUpload, content_type = "multipart/form-data", description = "One `file` part"),
    security(("bearer" = ["talent"])),
    responses(
        (status = CREATED, body = DocumentView),
        (status = PAYLOAD_TOO_LARGE, body = ProblemBody),
        (status = UNSUPPORTED_MEDIA_TYPE, description = "not a PDF, JPEG or PNG", body = ProblemBody),
        (status = CONFLICT, description = "`document_limit_reached`: 20 documents or 40 MiB in all", body = ProblemBody),
        (status = TOO_MANY_REQUESTS, description = "`too_many_requests`: more than 10 uploads in 10 minutes", body = ProblemBody),
    )
)]
#[post("/me/documents")]
async fn upload(state: web::Data<AppState>, talent: Talent, form: Multipart) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(documents::upload(&state, talent.user_id, form).await?))
}

fn file_response(doc: &DocumentView, bytes: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, doc.content_type.as_str()))
        .insert_header((header::CONTENT_DISPOSITION, "attachment"))
        .body(bytes)
}

/// Download one of the talent's own documents.
#[utoipa::path(tag = "applications", security(("bearer" = ["talent"])), responses((status = OK, description = "The document, of the type found in its content", content((Vec<u8> = "application/pdf"), (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/png"))), (status = NOT_FOUND, body = ProblemBody)))]
#[get("/me/documents/{id}")]
async fn my_document(state: web::Data<AppState>, talent: Talent, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let (doc, bytes) = documents::fetch(&state, *id, Some(talent.user_id)).await?;
    Ok(file_response(&doc, bytes))
}

#[utoipa::path(operation_id = "admin_list_applications", tag = "admin applications", params(ApplicationFilter, PageParams), security(("bearer" = ["reviewer", "super_admin"])), responses((status = OK, body = Page<ApplicationView>)))]
#[get("/admin/applications")]
async fn admin_list(
    state: web::Data<AppState>,
    _: Reviewer,
    filter: web::Query<ApplicationFilter>,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<ApplicationView>>, ApiError> {
    Ok(web::Json(service::admin_list(&state, &filter, &page).await?))
}

/// How many applications are in a status: the exact length of the review queue with
/// `status=submitted`.
#[utoipa::path(
    operation_id = "admin_count_applications",
    tag = "admin applications",
    params(CountQuery),
    security(("bearer" = ["reviewer", "super_admin"])),
    responses((status = OK, body = ApplicationCount), (status = FORBIDDEN, body = ProblemBody), (status = UNPROCESSABLE_ENTITY, body = ProblemBody))
)]
#[get("/admin/applications/count")]
async fn admin_count(state: web::Data<AppState>, _: Reviewer, q: web::Query<CountQuery>) -> Result<web::Json<ApplicationCount>, ApiError> {
    Ok(web::Json(ApplicationCount { status: q.status, count: service::count(&state, q.status).await? }))
}

#[utoipa::path(tag = "admin applications", security(("bearer" = ["reviewer", "super_admin"])), responses((status = OK, body = ApplicationView), (status = NOT_FOUND, body = ProblemBody)))]
#[get("/admin/applications/{id}")]
async fn admin_get(state: web::Data<AppState>, _: Reviewer, id: web::Path<Uuid>) -> Result<web::Json<ApplicationView>, ApiError> {
    Ok(web::Json(service::admin_get(&state, *id).await?))
}

/// The applicant's name and ID number in full (reviewers and super admins). Every call
/// is recorded in the audit log (`application.pii_view`).
#[utoipa::path(
    tag = "admin applications",
    security(("bearer" = ["reviewer", "super_admin"])),
    responses((status = OK, body = ApplicationPii), (status = FORBIDDEN, body = ProblemBody), (status = NOT_FOUND, body = ProblemBody))
)]
#[get("/admin/applications/{id}/pii")]
async fn admin_pii(
    state: web::Data<AppState>,
    r: Reviewer,
    meta: RequestMeta,
    id: web::Path<Uuid>,
) -> Result<web::Json<ApplicationPii>, ApiError> {
    Ok(web::Json(service::pii(&state, &meta.actor(&r), *id).await?))
}

/// Approve: the card is issued in the same transaction.
#[utoipa::path(
    tag = "admin applications",
    request_body = Approve,
    security(("bearer" = ["reviewer", "super_admin"])),
    responses((status = OK, body = ApplicationView), (status = CONFLICT, description = "`application_decided` or `id_number_has_card`", body = ProblemBody), (status = NOT_FOUND, body = ProblemBody))
)]
#[post("/admin/applications/{id}/approve")]
async fn approve(
    state: web::Data<AppState>,
    r: Reviewer,
    meta: RequestMeta,
    id: web::Path<Uuid>,
    body: web::Json<Approve>,
) -> Result<web::Json<ApplicationView>, ApiError> {
    Ok(web::Json(service::approve(&state, &meta.actor(&r), *id, &body).await?))
}

#[utoipa::path(
    tag = "admin applications",
    request_body = Reject,
    security(("bearer" = ["reviewer", "super_admin"])),
    responses((status = OK, body = ApplicationView), (status = CONFLICT, description = "`application_decided`", body = ProblemBody), (status = UNPROCESSABLE_ENTITY, body = ProblemBody))
)]
#[post("/admin/applications/{id}/reject")]
async fn reject(
    state: web::Data<AppState>,
    r: Reviewer,
    meta: RequestMeta,
    id: web::Path<Uuid>,
    body: web::Json<Reject>,
) -> Result<web::Json<ApplicationView>, ApiError> {
    Ok(web::Json(service::reject(&state, &meta.actor(&r), *id, &body.reason).await?))
}

/// Download a supporting document for review.
#[utoipa::path(tag = "admin applications", security(("bearer" = ["reviewer", "super_admin"])), responses((status = OK, description = "The document, of the type found in its content", content((Vec<u8> = "application/pdf"), (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/png"))), (status = NOT_FOUND, body = ProblemBody)))]
#[get("/admin/documents/{id}")]
async fn admin_document(state: web::Data<AppState>, _: Reviewer, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let (doc, bytes) = documents::fetch(&state, *id, None).await?;
    Ok(file_response(&doc, bytes))
}
