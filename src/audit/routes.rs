//! `/admin/audit-log`: reading the log and checking its chain.

use actix_web::{get, web};
use chrono::{DateTime, Utc};
use entity::audit_log;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::{ChainReport, verify_chain};
use crate::auth::Operator;
use crate::error::{ApiError, ProblemBody};
use crate::pagination::{Page, PageParams};
use crate::state::AppState;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(list).service(verify);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
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
    pub hash: String,
}

impl From<audit_log::Model> for AuditEntry {
    fn from(e: audit_log::Model) -> Self {
        Self {
            seq: e.seq,
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor_id: Option<Uuid>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
}

/// The audit log, newest first.
#[utoipa::path(tag = "audit", params(AuditFilter, PageParams), security(("bearer" = [])), responses((status = OK, body = Page<AuditEntry>), (status = FORBIDDEN, body = ProblemBody)))]
#[get("/admin/audit-log")]
async fn list(
    state: web::Data<AppState>,
    _: Operator,
    filter: web::Query<AuditFilter>,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<AuditEntry>>, ApiError> {
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
    /// Entries checked (when intact).
    pub entries: Option<u64>,
    /// The first entry that does not match (when broken).
    pub broken_at: Option<i64>,
}

/// Recompute the hash chain from the first entry; reports the first tampered entry.
#[utoipa::path(tag = "audit", security(("bearer" = [])), responses((status = OK, body = ChainCheck), (status = FORBIDDEN, body = ProblemBody)))]
#[get("/admin/audit-log/verify")]
async fn verify(state: web::Data<AppState>, _: Operator) -> Result<web::Json<ChainCheck>, ApiError> {
    Ok(web::Json(match verify_chain(&state.db).await? {
        ChainReport::Intact { entries } => ChainCheck { intact: true, entries: Some(entries), broken_at: None },
        ChainReport::Broken { seq } => {
            tracing::error!(seq, "audit chain broken");
            ChainCheck { intact: false, entries: None, broken_at: Some(seq) }
        }
    }))
}
