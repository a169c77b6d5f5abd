//! `Idempotency-Key` for redemptions (the IETF draft, as Stripe does it): the same key and
//! body from the same staff member get the first response again, byte for byte; the same
//! key with another body is refused; a request still running with the key gets 409.
//!
//! The key is claimed (committed) before the work starts, with a short lease; the outcome
//! is stored in the same transaction as the redemption, so a crash in between leaves a
//! claim that expires and a redemption that never happened — a retry then runs it afresh.

use chrono::{DateTime, Duration, Utc};
use entity::idempotency_key;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::db;

/// Keys are kept at least this long.
pub const KEEP: Duration = Duration::hours(48);

pub enum Begin {
    New,
    Replay { status: u16, body: String },
    InFlight,
    Mismatch,
}

pub async fn begin<C: ConnectionTrait>(
    db: &C,
    staff: Uuid,
    key: &str,
    hash: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Begin, DbErr> {
    let claim = idempotency_key::ActiveModel {
        staff_id: Set(staff),
        key: Set(key.to_owned()),
        request_hash: Set(hash.to_owned()),
        status: Set("in_flight".into()),
        response_status: Set(None),
        response_body: Set(None),
        locked_until: Set(now + lease),
        created_at: Set(now),
    };
    match claim.insert(db).await {
        Ok(_) => return Ok(Begin::New),
        Err(e) if db::is_unique_violation(&e) => {}
        Err(e) => return Err(e),
    }
    let Some(row) = idempotency_key::Entity::find_by_id((staff, key.to_owned())).one(db).await? else {
        // Purged between the two statements: treat as in flight; the client retries.
        return Ok(Begin::InFlight);
    };
    if row.request_hash != hash {
        return Ok(Begin::Mismatch);
    }
    if row.status == "done" {
        return Ok(Begin::Replay {
            status: row.response_status.and_then(|s| u16::try_from(s).ok()).unwrap_or(200),
            body: row.response_body.unwrap_or_default(),
        });
    }
    // A claim whose holder died: take it over.
    let taken = idempotency_key::Entity::update_many()
        .col_expr(idempotency_key::Column::LockedUntil, Expr::value(now + lease))
        .filter(idempotency_key::Column::StaffId.eq(staff))
        .filter(idempotency_key::Column::Key.eq(key))
        .filter(idempotency_key::Column::Status.eq("in_flight"))
        .filter(idempotency_key::Column::LockedUntil.lte(now))
        .exec(db)
        .await?;
    Ok(if taken.rows_affected == 1 { Begin::New } else { Begin::InFlight })
}

/// Stores the response (inside the work's transaction when the work succeeded).
pub async fn complete<C: ConnectionTrait>(db: &C, staff: Uuid, key: &str, status: u16, body: &str) -> Result<(), DbErr> {
    idempotency_key::Entity::update_many()
        .col_expr(idempotency_key::Column::Status, Expr::value("done"))
        .col_expr(idempotency_key::Column::ResponseStatus, Expr::value(Some(i32::from(status))))
        .col_expr(idempotency_key::Column::ResponseBody, Expr::value(Some(body.to_owned())))
        .filter(idempotency_key::Column::StaffId.eq(staff))
        .filter(idempotency_key::Column::Key.eq(key))
        .exec(db)
        .await?;
    Ok(())
}

/// Gives a key back after a failure of ours, so that a retry runs the request again.
pub async fn release<C: ConnectionTrait>(db: &C, staff: Uuid, key: &str) -> Result<(), DbErr> {
    idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::StaffId.eq(staff))
        .filter(idempotency_key::Column::Key.eq(key))
        .filter(idempotency_key::Column::Status.eq("in_flight"))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn purge<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<u64, DbErr> {
    Ok(idempotency_key::Entity::delete_many().filter(idempotency_key::Column::CreatedAt.lt(now - KEEP)).exec(db).await?.rows_affected)
}
