//! The outbox: notifications written in the same transaction as the change they announce,
//! then delivered by a background worker. A row is claimed with a lease before it is sent,
//! so instances never send it together; it is marked sent right after WeChat accepts it.
//! A crash between WeChat's answer and that mark is the one case that sends twice — the
//! lease expires and the row is retried (WeChat's API takes no idempotency key).

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::outbox;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::Value;
use uuid::Uuid;

use crate::state::AppState;
use crate::wechat::WechatError;

pub const WECHAT_SUBSCRIBE: &str = "wechat_subscribe";
const LEASE: chrono::Duration = chrono::Duration::seconds(60);
const MAX_ATTEMPTS: i32 = 8;
const BATCH: u64 = 20;

pub async fn enqueue<C: ConnectionTrait>(txn: &C, kind: &str, payload: Value, now: DateTime<Utc>) -> Result<(), DbErr> {
    outbox::ActiveModel {
        id: Set(Uuid::now_v7()),
        kind: Set(kind.into()),
        payload: Set(payload),
        status: Set("pending".into()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        locked_until: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        sent_at: Set(None),
    }
    .insert(txn)
    .await?;
    Ok(())
}

/// Runs the worker until the process ends.
pub fn spawn(state: AppState) {
    tokio::spawn(async move {
        loop {
            match deliver_due(&state).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox pass failed"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

/// Delivers what is due now; returns how many rows it handled.
pub async fn deliver_due(state: &AppState) -> Result<usize, DbErr> {
    let now = state.clock.now();
    let free = Condition::any().add(outbox::Column::LockedUntil.is_null()).add(outbox::Column::LockedUntil.lt(now));
    let due = outbox::Entity::find()
        .filter(outbox::Column::Status.eq("pending"))
        .filter(outbox::Column::NextAttemptAt.lte(now))
        .filter(free.clone())
        .order_by_asc(outbox::Column::NextAttemptAt)
        .limit(BATCH)
        .all(&state.db)
        .await?;
    let mut handled = 0;
    for row in due {
        let claimed = outbox::Entity::update_many()
            .col_expr(outbox::Column::LockedUntil, Expr::value(Some(now + LEASE)))
            .filter(outbox::Column::Id.eq(row.id))
            .filter(outbox::Column::Status.eq("pending"))
            .filter(free.clone())
            .exec(&state.db)
            .await?;
        if claimed.rows_affected != 1 {
            continue;
        }
        let result = send(state, &row).await;
        let now = state.clock.now();
        let mut update = outbox::Entity::update_many()
            .col_expr(outbox::Column::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(outbox::Column::Id.eq(row.id));
        update = match result {
            Ok(()) => update.col_expr(outbox::Column::Status, Expr::value("sent")).col_expr(outbox::Column::SentAt, Expr::value(Some(now))),
            Err(WechatError::NotSubscribed) => {
                tracing::info!(outbox_id = %row.id, "talent has not subscribed; notification skipped");
                update.col_expr(outbox::Column::Status, Expr::value("skipped"))
            }
            Err(e) => {
                let attempts = row.attempts + 1;
                let backoff = chrono::Duration::seconds(2i64.pow(u32::try_from(attempts).unwrap_or(12).min(12)));
                tracing::warn!(outbox_id = %row.id, attempts, error = %e, "notification not delivered");
                update
                    .col_expr(outbox::Column::Attempts, Expr::value(attempts))
                    .col_expr(outbox::Column::NextAttemptAt, Expr::value(now + backoff))
                    .col_expr(outbox::Column::LastError, Expr::value(Some(e.to_string().chars().take(200).collect::<String>())))
                    .col_expr(outbox::Column::Status, Expr::value(if attempts >= MAX_ATTEMPTS { "dead" } else { "pending" }))
            }
        };
        update.exec(&state.db).await?;
        handled += 1;
    }
    Ok(handled)
}

async fn send(state: &AppState, row: &outbox::Model) -> Result<(), WechatError> {
    match row.kind.as_str() {
        WECHAT_SUBSCRIBE => {
            let template = row.payload.get("template").and_then(Value::as_str).unwrap_or_default();
            let template_id = match template {
                "card_issued" => state.settings.wechat.template_card_issued.clone(),
                _ => state.settings.wechat.template_application_rejected.clone(),
            };
            state.wechat.send_subscribe(&row.payload, &template_id).await
        }
        other => Err(WechatError::Unavailable(format!("unknown outbox kind {other}"))),
    }
}
