//! Merchant verification and redemption, the talent's QR and benefits, the offline feeds.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::dto::{
    BenefitUse, MerchantStats, QrView, RedeemRequest, RedemptionFilter, RedemptionView, RevocationFeed, RevocationQuery, StatsPage,
    StatsQuery, VerifyRequest, VerifyView, VoidRequest,
};
use super::idempotency::{self, Outcome};
use super::{render, service, stats};
use crate::auth::{Operator, RequestMeta, Staff, SuperAdmin, Talent};
use crate::cards::keys::{self, Jwks};
use crate::crypto::sha256_hex;
use crate::error::{ApiError, ErrorCode, Lang, PROBLEM_JSON, ProblemBody};
use crate::pagination::{Page, PageParams};
use crate::state::AppState;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(verify)
        .service(redeem)
        .service(void)
        .service(merchant_redemptions)
        .service(merchant_stats)
        .service(my_qr)
        .service(my_qr_png)
        .service(my_qr_svg)
        .service(my_benefits)
        .service(my_redemptions)
        .service(revocations)
        .service(rotate_keys)
        .service(admin_stats);
}

/// Routes outside `/api/v1`.
pub fn root_routes(cfg: &mut ServiceConfig) {
    cfg.service(jwks);
}

/// Verify a scanned card QR. Consumes the token and opens a 5-minute visit at the staff
/// member's partner.
#[utoipa::path(
    operation_id = "verify_qr",
    tag = "merchant",
    request_body = VerifyRequest,
    security(("bearer" = ["merchant_staff", "merchant_manager"])),
    responses(
        (status = OK, body = VerifyView),
        (status = BAD_REQUEST, description = "`qr_invalid`: malformed, tampered, unknown key", body = ProblemBody),
        (status = GONE, description = "`qr_expired`", body = ProblemBody),
        (status = CONFLICT, description = "`qr_replayed`, `card_suspended`, `card_revoked`, `card_expired`", body = ProblemBody),
    )
)]
#[post("/merchant/verify")]
async fn verify(
    state: web::Data<AppState>,
    staff: Staff,
    meta: RequestMeta,
    body: web::Json<VerifyRequest>,
) -> Result<web::Json<VerifyView>, ApiError> {
    Ok(web::Json(service::verify(&state, &staff, meta.ip.as_deref(), &body.qr).await?))
}

fn idempotency_key(req: &HttpRequest) -> Result<String, ApiError> {
    req.headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::new(ErrorCode::IdempotencyKeyRequired))
}

/// Redeem one use of a benefit during a visit. Requires `Idempotency-Key` (≤ 255
/// characters): a retry with the same key and body gets the first answer again.
#[utoipa::path(
    tag = "merchant",
    request_body = RedeemRequest,
    params(("Idempotency-Key" = String, Header, description = "Unique per redemption attempt, ≤ 255 characters", min_length = 1, max_length = 255)),
    security(("bearer" = ["merchant_staff", "merchant_manager"])),
    responses(
        (status = CREATED, body = RedemptionView),
        (status = BAD_REQUEST, description = "`idempotency_key_required`", body = ProblemBody),
        (status = FORBIDDEN, description = "a visit or benefit of another partner", body = ProblemBody),
        (status = NOT_FOUND, description = "`not_found`: no such visit or benefit", body = ProblemBody),
        (status = GONE, description = "`visit_expired`", body = ProblemBody),
        (status = CONFLICT, description = "`quota_exhausted`, `benefit_unavailable`, `card_suspended`, `idempotency_in_flight`", body = ProblemBody),
        (status = UNPROCESSABLE_ENTITY, description = "`idempotency_key_reused`", body = ProblemBody),
    )
)]
#[post("/merchant/redemptions")]
async fn redeem(
    state: web::Data<AppState>,
    staff: Staff,
    meta: RequestMeta,
    req: HttpRequest,
    body: web::Json<RedeemRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let hash = sha256_hex(&serde_json::to_vec(&*body)?);
    let lang = req.extensions().get::<Lang>().copied().unwrap_or_default();
    let (state_ref, staff_ref, request, ip) = (&state, &staff, &body, meta.ip.as_deref());
    let redeem = |claim| async move { service::redeem(state_ref, staff_ref, ip, &claim, request.visit_id, request.benefit_id).await };
    Ok(match idempotency::idempotent(&state, staff.user_id, &key, &hash, lang, redeem).await? {
        Outcome::Done(view) => HttpResponse::Created().json(view),
        Outcome::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let content_type = if status.is_success() { "application/json" } else { PROBLEM_JSON };
            HttpResponse::build(status)
                .insert_header((header::CONTENT_TYPE, content_type))
                .insert_header(("idempotent-replayed", "true"))
                .body(body)
        }
    })
}

/// Void a redemption of your own partner, once, within 24 hours; the use returns to the quota.
#[utoipa::path(
    tag = "merchant",
    request_body = VoidRequest,
    security(("bearer" = ["merchant_staff", "merchant_manager"])),
    responses((status = OK, body = RedemptionView), (status = CONFLICT, description = "`already_voided`, `void_window_passed`", body = ProblemBody), (status = FORBIDDEN, body = ProblemBody), (status = NOT_FOUND, body = ProblemBody))
)]
#[post("/merchant/redemptions/{id}/void")]
async fn void(
    state: web::Data<AppState>,
    staff: Staff,
    meta: RequestMeta,
    id: web::Path<Uuid>,
    body: web::Json<VoidRequest>,
) -> Result<web::Json<RedemptionView>, ApiError> {
    Ok(web::Json(service::void(&state, &staff, &meta.actor(&staff), *id, &body.reason).await?))
}

/// Your partner's redemptions, newest first: all of them, or one staff member's
/// (`staff=mine`, or an id: managers only for someone else), between two Beijing dates.
#[utoipa::path(
    tag = "merchant",
    params(RedemptionFilter, PageParams),
    security(("bearer" = ["merchant_staff", "merchant_manager"])),
    responses(
        (status = OK, body = Page<RedemptionView>),
        (status = FORBIDDEN, description = "`forbidden`: staff naming another staff member", body = ProblemBody),
        (status = UNPROCESSABLE_ENTITY, description = "`validation_failed`: `staff`, `from`/`to`, `limit` or `cursor`", body = ProblemBody),
    )
)]
#[get("/merchant/redemptions")]
async fn merchant_redemptions(
    state: web::Data<AppState>,
    staff: Staff,
    filter: web::Query<RedemptionFilter>,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<RedemptionView>>, ApiError> {
    let list = service::PartnerRedemptions::parse(&staff, &filter)?;
    Ok(web::Json(service::for_partner(&state, &staff, &list, &page).await?))
}

/// Today's and this month's redemptions at your partner, by benefit.
#[utoipa::path(tag = "merchant", security(("bearer" = ["merchant_staff", "merchant_manager"])), responses((status = OK, body = MerchantStats)))]
#[get("/merchant/stats")]
async fn merchant_stats(state: web::Data<AppState>, staff: Staff) -> Result<web::Json<MerchantStats>, ApiError> {
    Ok(web::Json(service::merchant_stats(&state, &staff).await?))
}

/// A fresh QR token for the talent's card (changes every 30 s).
#[utoipa::path(tag = "cards", security(("bearer" = ["talent"])), responses((status = OK, body = QrView), (status = NOT_FOUND, description = "`no_card`", body = ProblemBody), (status = CONFLICT, description = "`card_suspended`, `card_expired`", body = ProblemBody)))]
#[get("/me/card/qr")]
async fn my_qr(state: web::Data<AppState>, talent: Talent) -> Result<web::Json<QrView>, ApiError> {
    Ok(web::Json(service::mint_qr(&state, talent.user_id).await?))
}

/// The QR token drawn as a PNG.
#[utoipa::path(tag = "cards", security(("bearer" = ["talent"])), responses((status = OK, content_type = "image/png", body = Vec<u8>), (status = NOT_FOUND, body = ProblemBody)))]
#[get("/me/card/qr.png")]
async fn my_qr_png(state: web::Data<AppState>, talent: Talent) -> Result<HttpResponse, ApiError> {
    let qr = service::mint_qr(&state, talent.user_id).await?;
    Ok(HttpResponse::Ok().content_type("image/png").body(render::png(&qr.token)?))
}

/// The QR token drawn as SVG.
#[utoipa::path(tag = "cards", security(("bearer" = ["talent"])), responses((status = OK, content_type = "image/svg+xml", body = String), (status = NOT_FOUND, body = ProblemBody)))]
#[get("/me/card/qr.svg")]
async fn my_qr_svg(state: web::Data<AppState>, talent: Talent) -> Result<HttpResponse, ApiError> {
    let qr = service::mint_qr(&state, talent.user_id).await?;
    Ok(HttpResponse::Ok().content_type("image/svg+xml").body(render::svg(&qr.token)?))
}

/// Every benefit the talent's card may use now, with remaining uses and next reset.
#[utoipa::path(tag = "cards", params(PageParams), security(("bearer" = ["talent"])), responses((status = OK, body = Page<BenefitUse>), (status = NOT_FOUND, description = "`no_card`", body = ProblemBody)))]
#[get("/me/benefits")]
async fn my_benefits(
    state: web::Data<AppState>,
    talent: Talent,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<BenefitUse>>, ApiError> {
    Ok(web::Json(service::my_benefits(&state, talent.user_id, &page).await?))
}

/// The talent's redemptions, newest first.
#[utoipa::path(tag = "cards", params(PageParams), security(("bearer" = ["talent"])), responses((status = OK, body = Page<RedemptionView>)))]
#[get("/me/redemptions")]
async fn my_redemptions(
    state: web::Data<AppState>,
    talent: Talent,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<RedemptionView>>, ApiError> {
    Ok(web::Json(service::for_talent(&state, talent.user_id, &page).await?))
}

/// Card references suspended, revoked or resumed since a version, for offline checking.
#[utoipa::path(tag = "catalogue", params(RevocationQuery), responses((status = OK, body = RevocationFeed)))]
#[get("/cards/revocations")]
async fn revocations(state: web::Data<AppState>, q: web::Query<RevocationQuery>) -> Result<web::Json<RevocationFeed>, ApiError> {
    let mut errors = Vec::new();
    let limit = crate::pagination::limit(q.limit, service::REVOCATIONS_PAGE, service::REVOCATIONS_MAX, &mut errors);
    crate::validate::check(errors)?;
    Ok(web::Json(service::revocations(&state, q.since.unwrap_or(0).max(0), limit).await?))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct Rotated {
    kid: String,
}

/// Rotate the QR signing key. The old key stays published until its tokens have expired.
#[utoipa::path(tag = "admin cards", security(("bearer" = ["super_admin"])), responses((status = OK, body = Rotated), (status = FORBIDDEN, body = ProblemBody)))]
#[post("/admin/keys/rotate")]
async fn rotate_keys(state: web::Data<AppState>, admin: SuperAdmin, meta: RequestMeta) -> Result<HttpResponse, ApiError> {
    let kid = service::rotate_keys(&state, &meta.actor(&admin)).await?;
    Ok(HttpResponse::Ok().json(Rotated { kid }))
}

/// The public keys that verify card QR tokens (OKP/Ed25519 JWKs).
#[utoipa::path(tag = "catalogue", responses((status = OK, body = Jwks)))]
#[get("/.well-known/jwks.json")]
async fn jwks(state: web::Data<AppState>) -> Result<web::Json<Jwks>, ApiError> {
    let set = state.qr_keys.get(&state.db, &state.keyring, false).await?;
    Ok(web::Json(keys::jwks(&set, state.clock.now())))
}

/// Completed redemptions by day, partner, benefit and tier, or any of them (operators and
/// super admins), over at most 366 days; JSON in pages of at most 1 000 rows, or
/// `Accept: text/csv` for every row, streamed. Answered from the daily rollup on a
/// separate small pool; `503 service_unavailable` when that pool is busy or a report
/// outruns its time limit.
#[utoipa::path(
    tag = "admin cards",
    params(StatsQuery),
    security(("bearer" = ["operator", "super_admin"])),
    responses(
        (status = OK, description = "JSON, or CSV with `Accept: text/csv`", content((StatsPage = "application/json"), (String = "text/csv"))),
        (status = FORBIDDEN, description = "`forbidden`: reviewers and merchants", body = ProblemBody),
        (status = UNPROCESSABLE_ENTITY, body = ProblemBody),
        (status = SERVICE_UNAVAILABLE, description = "`service_unavailable`: reports are busy or this one took too long", body = ProblemBody),
    )
)]
#[get("/admin/stats")]
async fn admin_stats(
    state: web::Data<AppState>,
    _: Operator,
    req: HttpRequest,
    q: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    let (report, limit, after) = stats_request(&q, crate::clock::beijing_date(state.clock.now()))?;
    let wants_csv = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/csv"));
    if wants_csv {
        // The first page before the answer starts: a busy report pool is a 503, not a
        // 200 cut short.
        let first = report.page(&state.db_reports, Some(&state.db), None, CSV_PAGE).await?;
        return Ok(HttpResponse::Ok().content_type("text/csv; charset=utf-8").streaming(csv_stream(state.into_inner(), report, first)));
    }
    let rows = report.page(&state.db_reports, Some(&state.db), after.as_ref(), limit + 1).await?;
    let page = Page::from_rows(rows, limit, stats::Position::of, |r| r);
    Ok(HttpResponse::Ok().json(StatsPage {
        from: report.from,
        to: report.to,
        by: report.by,
        rows: page.items,
        next_cursor: page.next_cursor,
    }))
}

const STATS_MAX_DAYS: i64 = 366;
const CSV_PAGE: u64 = 1000;

fn stats_request(q: &StatsQuery, today: chrono::NaiveDate) -> Result<(stats::Report, u64, Option<stats::Position>), ApiError> {
    use crate::error::{FieldError, Text};
    let mut errors = Vec::new();
    let to = q.to.unwrap_or(today);
    let from = q.from.unwrap_or(to - chrono::Duration::days(29));
    if from > to || (to - from).num_days() >= STATS_MAX_DAYS {
        errors.push(FieldError::new(
            "from",
            "range",
            Text::new("日期范围须在 366 天以内且开始不晚于结束", "from must not be after to, and the range at most 366 days"),
        ));
    }
    let mut by = Vec::new();
    match q.by.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
        None => by.extend(stats::Dimension::ALL),
        Some(list) => {
            for name in list.split(',').map(str::trim) {
                match stats::Dimension::parse(name) {
                    Some(d) => by.push(d),
                    None => {
                        errors.push(FieldError::new(
                            "by",
                            "invalid",
                            Text::new("by 只能是 day、partner、benefit、tier", "by lists day, partner, benefit or tier"),
                        ));
                        break;
                    }
                }
            }
        }
    }
    by.sort();
    by.dedup();
    let limit = crate::pagination::limit(q.limit, 500, CSV_PAGE, &mut errors);
    let after = crate::pagination::cursor::<stats::Position>(q.cursor.as_deref(), &mut errors);
    crate::validate::check(errors)?;
    Ok((stats::Report { from, to, by, partner: q.partner_id }, limit, after))
}

/// Every row of a report as CSV, a page at a time from `first` on: memory stays one page
/// whatever the size, and a client that goes away stops the next page.
fn csv_stream(
    state: std::sync::Arc<AppState>,
    report: stats::Report,
    first: Vec<crate::redemption::dto::StatGroup>,
) -> impl futures_util::Stream<Item = Result<web::Bytes, std::io::Error>> {
    let mut header: Vec<&str> = report.by.iter().map(|d| d.column()).collect();
    header.push("count");
    let after_first = if first.len() as u64 == CSV_PAGE { first.last().map(|r| Some(stats::Position::of(r))) } else { None };
    let head = format!("{}\n{}", header.join(","), csv_rows(&first));
    let first = futures_util::stream::once(async move { Ok::<_, std::io::Error>(web::Bytes::from(head)) });
    let pages = futures_util::stream::try_unfold(after_first, move |position| {
        let (state, report) = (state.clone(), report.clone());
        async move {
            let Some(after) = position else { return Ok(None) };
            let rows = report.page(&state.db_reports, Some(&state.db), after.as_ref(), CSV_PAGE).await.map_err(|e| {
                tracing::warn!(error = %e, "statistics export stopped");
                std::io::Error::other(e.to_string())
            })?;
            let next = if rows.len() as u64 == CSV_PAGE { rows.last().map(|r| Some(stats::Position::of(r))) } else { None };
            Ok(Some((web::Bytes::from(csv_rows(&rows)), next)))
        }
    });
    futures_util::StreamExt::chain(first, pages)
}

fn csv_rows(rows: &[crate::redemption::dto::StatGroup]) -> String {
    let mut out = String::with_capacity(rows.len() * 64);
    for r in rows {
        let fields = [r.day.clone(), r.partner_id.map(|p| p.to_string()), r.benefit_id.map(|b| b.to_string()), r.tier.clone()];
        for f in fields.into_iter().flatten() {
            out.push_str(&f);
            out.push(',');
        }
        out.push_str(&r.count.to_string());
        out.push('\n');
    }
    out
}
