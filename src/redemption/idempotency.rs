//! `Idempotency-Key` for redemptions (the IETF draft, as Stripe does it): the same key and
//! body from the same staff member get the first response again, byte for byte; the same
//! key with another body is refused; a request still running with the key gets 409.
//!
//! The key is claimed (committed) before the work starts, with a short lease; the outcome
//! is stored in the same transaction as the redemption, so a crash in between leaves a
//! claim that expires and a redemption that never happened — a retry then runs it afresh.
//!
//! [`idempotent`] is the whole protocol; a handler only maps its [`Outcome`] to HTTP.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use entity::idempotency_key;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::db;
use crate::error::{ApiError, ErrorCode, Lang};
use crate::state::AppState;

/// A claim on a key, held by one request. The lease end written when the claim was taken
/// is its fencing token: a retry that takes over an expired claim writes a new one, and
/// from then on nothing the old holder writes under the key matches (see [`complete`]).
#[derive(Debug, Clone)]
pub struct Claim {
    pub staff: Uuid,
    pub key: String,
    pub fence: DateTime<Utc>,
}

/// What an idempotent request answers.
pub enum Outcome<T> {
    /// The operation ran now and succeeded.
    Done(T),
    /// An earlier request with this key and body finished: its response, byte for byte.
    Replay { status: u16, body: String },
}

/// Runs `operation` at most once for `(staff, key)` and a request whose body hashes to
/// `request_hash`:
/// - a new key is claimed, then the operation runs with the [`Claim`]. On success the
///   operation itself must store its response under the key, in the commit that makes its
///   change and only while it still holds the claim (see [`complete`]), so that the two can
///   never part and a request whose claim was taken over changes nothing; it answers
///   `idempotency_in_flight` then. A refusal the client caused (a 4xx) is
///   stored here, rendered in `lang`, and replayed to retries; a failure of ours releases
///   the key, so that a retry runs the operation again.
/// - a finished key with the same body answers [`Outcome::Replay`]; with another body,
///   `idempotency_key_reused`; a key still running, `idempotency_in_flight`.
pub async fn idempotent<T, F, Fut>(
    state: &AppState,
    staff: Uuid,
    key: &str,
    request_hash: &str,
    lang: Lang,
    operation: F,
) -> Result<Outcome<T>, ApiError>
where
    F: FnOnce(Claim) -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let lease = Duration::seconds(state.settings.idempotency_lease_secs.max(1));
    let claim = match begin(&state.db_relaxed, staff, key, request_hash, state.clock.now(), lease).await? {
        Begin::New(fence) => Claim { staff, key: key.to_owned(), fence },
        Begin::Replay { status, body } => return Ok(Outcome::Replay { status, body }),
        Begin::InFlight => return Err(ApiError::new(ErrorCode::IdempotencyInFlight)),
        Begin::Mismatch => return Err(ApiError::new(ErrorCode::IdempotencyKeyReused)),
    };
    match operation(claim.clone()).await {
        Ok(done) => Ok(Outcome::Done(done)),
        // The claim was taken over meanwhile: the key is another request's now.
        Err(e) if e.code() == ErrorCode::IdempotencyInFlight => Err(e),
        Err(e) if e.code().status().is_client_error() => {
            let (status, problem) = e.render(lang);
            complete(&state.db, &claim, status.as_u16(), &String::from_utf8_lossy(&problem)).await?;
            Err(e)
        }
        Err(e) => {
            if let Err(release) = release(&state.db, &claim).await {
                tracing::warn!(error = %release, "could not release an idempotency key");
            }
            Err(e)
        }
    }
}

/// Keys are kept at least this long.
pub const KEEP: Duration = Duration::hours(48);

enum Begin {
    /// Claimed; the claim's fence.
    New(DateTime<Utc>),
    Replay {
        status: u16,
        body: String,
    },
    InFlight,
    Mismatch,
}

async fn begin<C: ConnectionTrait>(
    db: &C,
    staff: Uuid,
    key: &str,
    hash: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Begin, DbErr> {
    // Stored to the microsecond, so that the fence compares equal to what was written.
    let fence = (now + lease).trunc_subsecs(6);
    let claim = idempotency_key::ActiveModel {
        staff_id: Set(staff),
        key: Set(key.to_owned()),
        request_hash: Set(hash.to_owned()),
        status: Set("in_flight".into()),
        response_status: Set(None),
        response_body: Set(None),
        locked_until: Set(fence),
        created_at: Set(now),
    };
    match claim.insert(db).await {
        Ok(_) => return Ok(Begin::New(fence)),
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
        // A finished key always stored its answer with it; anything else is a data error
        // of ours, never an empty success.
        let status = row.response_status.and_then(|s| u16::try_from(s).ok());
        let (Some(status), Some(body)) = (status, row.response_body) else {
            return Err(DbErr::Custom(format!("idempotency key {key:?} of {staff} is done but holds no response")));
        };
        return Ok(Begin::Replay { status, body });
    }
    // A claim whose holder died: take it over.
    let taken = idempotency_key::Entity::update_many()
        .col_expr(idempotency_key::Column::LockedUntil, Expr::value(fence))
        .filter(idempotency_key::Column::StaffId.eq(staff))
        .filter(idempotency_key::Column::Key.eq(key))
        .filter(idempotency_key::Column::Status.eq("in_flight"))
        .filter(idempotency_key::Column::LockedUntil.lte(now))
        .exec(db)
        .await?;
    Ok(if taken.rows_affected == 1 { Begin::New(fence) } else { Begin::InFlight })
}

/// Stores the response (inside the work's transaction when the work succeeded), if
/// `claim` still holds the key; `false` when another request has taken it over.
pub async fn complete<C: ConnectionTrait>(db: &C, claim: &Claim, status: u16, body: &str) -> Result<bool, DbErr> {
    let done = idempotency_key::Entity::update_many()
        .col_expr(idempotency_key::Column::Status, Expr::value("done"))
        .col_expr(idempotency_key::Column::ResponseStatus, Expr::value(Some(i32::from(status))))
        .col_expr(idempotency_key::Column::ResponseBody, Expr::value(Some(body.to_owned())))
        .filter(idempotency_key::Column::StaffId.eq(claim.staff))
        .filter(idempotency_key::Column::Key.eq(claim.key.as_str()))
        .filter(idempotency_key::Column::Status.eq("in_flight"))
        .filter(idempotency_key::Column::LockedUntil.eq(claim.fence))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Gives a key back after a failure of ours, so that a retry runs the request again (only
/// if `claim` still holds it).
async fn release<C: ConnectionTrait>(db: &C, claim: &Claim) -> Result<(), DbErr> {
    idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::StaffId.eq(claim.staff))
        .filter(idempotency_key::Column::Key.eq(claim.key.as_str()))
        .filter(idempotency_key::Column::Status.eq("in_flight"))
        .filter(idempotency_key::Column::LockedUntil.eq(claim.fence))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn purge<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<u64, DbErr> {
    Ok(idempotency_key::Entity::delete_many().filter(idempotency_key::Column::CreatedAt.lt(now - KEEP)).exec(db).await?.rows_affected)
}
