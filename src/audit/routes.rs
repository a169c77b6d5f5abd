//! `/admin/audit-log`: reading the log and checking its chain.

use actix_web::{get, web};
use chrono::{DateTime, Utc};
use entity::{audit_log, redemption, visit};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::{Break, ChainReport, Checkpoint, Scope, ledger};
use crate::auth::Operator;
use crate::error::{ApiError, FieldError, ProblemBody, Text};
use crate::pagination::{Page, PageParams};
use crate::state::AppState;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(list).service(verify);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Position in the chain; `null` for a ledger row (a redemption or a verification).
    pub seq: Option<i64>,
    pub id: Uuid,
    pub actor_id: Option<Uuid>,
    pub actor_role: String,
    #[schema(example = "card.suspend")]
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The entry's keyed hash (a ledger row's keyed tag).
    pub hash: String,
}

impl From<redemption::Model> for AuditEntry {
    fn from(r: redemption::Model) -> Self {
        Self {
            seq: None,
            id: r.id,
            actor_id: Some(r.staff_id),
            actor_role: "merchant".into(),
            action: "redemption.create".into(),
            target_type: "redemption".into(),
            target_id: r.id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "partner_id": r.partner_id,
                "card_id": r.card_id,
                "benefit_id": r.benefit_id,
                "visit_id": r.visit_id,
                "period_key": r.period_key,
                "tier": r.tier,
                "status": r.status,
            })),
            ip: r.ip,
            request_id: None,
            created_at: r.created_at,
            hash: r.tag,
        }
    }
}

impl From<visit::Model> for AuditEntry {
    fn from(v: visit::Model) -> Self {
        Self {
            seq: None,
            id: v.id,
            actor_id: Some(v.staff_id),
            actor_role: "merchant".into(),
            action: "card.verify".into(),
            target_type: "card".into(),
            target_id: v.card_id.to_string(),
            before: None,
            after: Some(serde_json::json!({ "partner_id": v.partner_id, "visit_id": v.id })),
            ip: v.ip,
            request_id: None,
            created_at: v.created_at,
            hash: v.tag,
        }
    }
}

impl From<audit_log::Model> for AuditEntry {
    fn from(e: audit_log::Model) -> Self {
        Self {
            seq: Some(e.seq),
            id: e.id,
            actor_id: e.actor_id,
            actor_role: e.actor_role,
            action: e.action,
            target_type: e.target_type,
            target_id: e.target_id,
            before: e.before,
            after: e.after,
            ip: e.ip,
            request_id: e.request_id,
            created_at: e.created_at,
            hash: e.hash,
        }
    }
}

/// Which part of the trail to read.
#[derive(Debug, Default, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditSource {
    /// Admin and merchant writes, voids, anchors (the hash chain).
    #[default]
    Chain,
    /// Every redemption: staff, partner, card, benefit, time and address.
    Redemptions,
    /// Every verification (a card shown to a partner).
    Verifications,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// `chain` (default), `redemptions` or `verifications`.
    #[param(inline)]
    pub source: Option<AuditSource>,
    /// Chain only.
    pub action: Option<String>,
    /// The staff member, for the ledgers.
    pub actor_id: Option<Uuid>,
    /// Chain only.
    pub target_type: Option<String>,
    /// Chain only.
    pub target_id: Option<String>,
    /// Ledgers only: one partner's rows.
    pub partner_id: Option<Uuid>,
    /// Ledgers only: one card's rows.
    pub card_id: Option<Uuid>,
}

/// The audit trail, newest first: the chain, or the redemption or verification ledger.
#[utoipa::path(tag = "audit", params(AuditFilter, PageParams), operation_id = "list_audit_log", security(("bearer" = ["operator", "super_admin"])), responses((status = OK, body = Page<AuditEntry>), (status = FORBIDDEN, body = ProblemBody)))]
#[get("/admin/audit-log")]
async fn list(
    state: web::Data<AppState>,
    _: Operator,
    filter: web::Query<AuditFilter>,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<AuditEntry>>, ApiError> {
    match filter.source.unwrap_or_default() {
        AuditSource::Chain => list_chain(&state, &filter, &page).await,
        AuditSource::Redemptions => {
            let (limit, before) = page.parse::<Uuid>()?;
            let mut q = redemption::Entity::find();
            if let Some(a) = filter.actor_id {
                q = q.filter(redemption::Column::StaffId.eq(a));
            }
            if let Some(p) = filter.partner_id {
                q = q.filter(redemption::Column::PartnerId.eq(p));
            }
            if let Some(c) = filter.card_id {
                q = q.filter(redemption::Column::CardId.eq(c));
            }
            if let Some(before) = before {
                q = q.filter(redemption::Column::Id.lt(before));
            }
            // Ids are UUIDv7: their order is the order of creation.
            let rows = q.order_by_desc(redemption::Column::Id).limit(limit + 1).all(&state.db).await?;
            Ok(web::Json(Page::from_rows(rows, limit, |r| r.id, AuditEntry::from)))
        }
        AuditSource::Verifications => {
            let (limit, before) = page.parse::<Uuid>()?;
            let mut q = visit::Entity::find();
            if let Some(a) = filter.actor_id {
                q = q.filter(visit::Column::StaffId.eq(a));
            }
            if let Some(p) = filter.partner_id {
                q = q.filter(visit::Column::PartnerId.eq(p));
            }
            if let Some(c) = filter.card_id {
                q = q.filter(visit::Column::CardId.eq(c));
            }
            if let Some(before) = before {
                q = q.filter(visit::Column::Id.lt(before));
            }
            let rows = q.order_by_desc(visit::Column::Id).limit(limit + 1).all(&state.db).await?;
            Ok(web::Json(Page::from_rows(rows, limit, |v| v.id, AuditEntry::from)))
        }
    }
}

async fn list_chain(state: &AppState, filter: &AuditFilter, page: &PageParams) -> Result<web::Json<Page<AuditEntry>>, ApiError> {
    let (limit, before) = page.parse::<i64>()?;
    let mut q = audit_log::Entity::find();
    if let Some(a) = &filter.action {
        q = q.filter(audit_log::Column::Action.eq(a.as_str()));
    }
    if let Some(a) = filter.actor_id {
        q = q.filter(audit_log::Column::ActorId.eq(a));
    }
    if let Some(t) = &filter.target_type {
        q = q.filter(audit_log::Column::TargetType.eq(t.as_str()));
    }
    if let Some(t) = &filter.target_id {
        q = q.filter(audit_log::Column::TargetId.eq(t.as_str()));
    }
    if let Some(before) = before {
        q = q.filter(audit_log::Column::Seq.lt(before));
    }
    let rows = q.order_by_desc(audit_log::Column::Seq).limit(limit + 1).all(&state.db).await?;
    Ok(web::Json(Page::from_rows(rows, limit, |e| e.seq, AuditEntry::from)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChainCheck {
    pub intact: bool,
    /// Chain entries checked (when intact).
    pub entries: Option<u64>,
    /// Redemption and visit rows checked (when intact).
    pub rows: Option<u64>,
    /// False when the run stopped at `max_entries`: continue from `checkpoint`.
    pub complete: Option<bool>,
    /// Where the run stopped (when intact): pass as `from_seq` and `from_hash` to continue.
    pub checkpoint: Option<Checkpoint>,
    /// The first chain entry that does not match (when broken).
    pub broken_at: Option<i64>,
    /// What does not match (when broken).
    pub broken: Option<Break>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyParams {
    /// Resume after this entry (a `checkpoint.seq` of an earlier run); needs `from_hash`.
    #[param(minimum = 1)]
    pub from_seq: Option<i64>,
    /// The hash of entry `from_seq`, as the earlier run reported it.
    #[param(min_length = 64, max_length = 64, pattern = "^[0-9a-fA-F]{64}$")]
    pub from_hash: Option<String>,
    /// Stop after this many chain entries (default: to the end).
    #[param(minimum = 1)]
    pub max_entries: Option<i64>,
}

impl VerifyParams {
    fn scope(&self) -> Result<Scope, ApiError> {
        let mut errors = Vec::new();
        let from = match (self.from_seq, &self.from_hash) {
            (None, None) => None,
            (Some(seq), Some(hash)) if seq >= 1 && hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(Checkpoint { seq, hash: hash.to_ascii_lowercase() })
            }
            _ => {
                errors.push(FieldError::new(
                    "from_seq",
                    "invalid",
                    Text::new(
                        "from_seq 与 from_hash 须一同给出，取自上次的 checkpoint",
                        "from_seq and from_hash go together, from an earlier checkpoint",
                    ),
                ));
                None
            }
        };
        let max_entries = match self.max_entries {
            None => u64::MAX,
            Some(n) if n >= 1 => n.unsigned_abs(),
            Some(_) => {
                errors.push(FieldError::new(
                    "max_entries",
                    "out_of_range",
                    Text::new("max_entries 须为正数", "max_entries must be positive"),
                ));
                u64::MAX
            }
        };
        if errors.is_empty() { Ok(Scope { from, max_entries, ..Scope::default() }) } else { Err(ApiError::validation(errors)) }
    }
}

/// Checks the audit trail: anchors the ledgers' due windows, then recomputes the keyed
/// chain (from the first entry, or from a checkpoint), every anchored window of
/// redemptions and verifications, and the tags of rows not anchored yet. Reports the first
/// thing that does not match.
#[utoipa::path(tag = "audit", params(VerifyParams), operation_id = "verify_audit_log", security(("bearer" = ["operator", "super_admin"])), responses((status = OK, body = ChainCheck), (status = FORBIDDEN, body = ProblemBody)))]
#[get("/admin/audit-log/verify")]
async fn verify(state: web::Data<AppState>, _: Operator, params: web::Query<VerifyParams>) -> Result<web::Json<ChainCheck>, ApiError> {
    let scope = Scope { visit_retention: chrono::Duration::days(state.settings.visit_retention_days), ..params.scope()? };
    let now = state.clock.now();
    ledger::anchor(&state.db, &state.keyring, now).await?;
    Ok(web::Json(match super::verify(&state.db, &state.keyring, scope, now).await? {
        ChainReport::Intact { entries, rows, checkpoint, complete } => ChainCheck {
            intact: true,
            entries: Some(entries),
            rows: Some(rows),
            complete: Some(complete),
            checkpoint: Some(checkpoint),
            broken_at: None,
            broken: None,
        },
        ChainReport::Broken(problem) => {
            tracing::error!(seq = ?problem.seq, source = ?problem.source, row = ?problem.row_id, reason = %problem.reason, "audit trail broken");
            ChainCheck {
                intact: false,
                entries: None,
                rows: None,
                complete: None,
                checkpoint: None,
                broken_at: problem.seq,
                broken: Some(problem),
            }
        }
    }))
}
