//! What keeps the redemption tables bounded, run on schedule by the instance that runs
//! background work (`ZHUGE_OUTBOX_WORKER`):
//! - idempotency keys are forgotten after their retention (48 h; see `idempotency`);
//! - verification visits are the record of which card was scanned where and when, kept
//!   for audit `ZHUGE_VISIT_RETENTION_DAYS` (default two years), then pruned in batches;
//! - new redemptions are folded into the statistics rollup (see [`super::stats`]);
//! - and, on the same schedule, sign-in failure counts past their use
//!   ([`crate::auth::lockout::prune`]).

use chrono::{DateTime, Duration, Utc};
use entity::visit;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, QueryTrait};

use crate::state::AppState;

/// Visits deleted per statement, so that pruning never holds long locks.
const PRUNE_BATCH: u64 = 5_000;
const EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Deletes visits older than the retention, in batches; returns how many.
pub async fn prune_visits(db: &DatabaseConnection, now: DateTime<Utc>, retention_days: i64) -> Result<u64, sea_orm::DbErr> {
    let cutoff = now - Duration::days(retention_days.max(1));
    let mut total = 0;
    loop {
        // One statement a batch: the ids to delete are chosen inside it.
        let batch =
            visit::Entity::find().select_only().column(visit::Column::Id).filter(visit::Column::CreatedAt.lt(cutoff)).limit(PRUNE_BATCH);
        let deleted = visit::Entity::delete_many().filter(visit::Column::Id.in_subquery(batch.into_query())).exec(db).await?.rows_affected;
        total += deleted;
        if deleted < PRUNE_BATCH {
            return Ok(total);
        }
    }
}

/// One round of housekeeping.
pub async fn run_once(state: &AppState) {
    let now = state.clock.now();
    match super::idempotency::purge(&state.db, now).await {
        Ok(n) if n > 0 => tracing::info!(pruned = n, "idempotency keys past retention pruned"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "idempotency purge failed"),
    }
    match prune_visits(&state.db, now, state.settings.visit_retention_days).await {
        Ok(n) if n > 0 => tracing::info!(pruned = n, "visits past retention pruned"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "visit purge failed"),
    }
    // Not a redemption table, but the same schedule: sign-in failure counts nobody uses.
    if let Err(e) = crate::auth::lockout::prune(&state.db, now).await {
        tracing::warn!(error = %e, "sign-in failure purge failed");
    }
}

/// Starts housekeeping and the statistics fold.
pub fn spawn(state: AppState) {
    super::stats::spawn(state.clone());
    tokio::spawn(async move {
        loop {
            run_once(&state).await;
            tokio::time::sleep(EVERY).await;
        }
    });
}
