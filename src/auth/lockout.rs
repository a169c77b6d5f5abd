//! Failed password sign-ins and the locks they set. A lock that protects must not lock out
//! the innocent (SPEC §7): anyone can type an admin's username.
//!
//! - Failures count per account name **and** client address ([`PER_ADDRESS`]): five wrong
//!   passwords from one address lock that name at that address only. Whoever typed them
//!   cannot keep the owner out; the owner signs in from anywhere else.
//! - Across addresses a higher ceiling ([`EVERY_ADDRESS`]) bounds guessing by many
//!   addresses at once: it locks the name everywhere, except at addresses the account
//!   has signed in from before ([`KNOWN_FOR_DAYS`]), so the owner at their usual desk is
//!   still let in even then.
//! - Unknown names count and lock exactly like known ones: locking reveals nothing.
//! - The counts live in the database (`login_failures`), not in the cache: losing Redis
//!   (FLUSHALL, restart) unlocks nothing.

use chrono::{DateTime, Duration, Utc};
use entity::{login_failure, session};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, ExprTrait, QueryFilter};
use uuid::Uuid;

/// The address of the row that counts failures from every address together.
const EVERY: &str = "*";

/// `failures` within `window` (from the first of them) lock for `lock_for`.
pub struct Rule {
    pub failures: i32,
    pub window: Duration,
    pub lock_for: Duration,
}

/// One name at one address: five failures in 15 minutes lock for 15 minutes.
pub const PER_ADDRESS: Rule = Rule { failures: 5, window: Duration::minutes(15), lock_for: Duration::minutes(15) };
/// One name from every address together: 50 failures in an hour lock for an hour.
pub const EVERY_ADDRESS: Rule = Rule { failures: 50, window: Duration::hours(1), lock_for: Duration::hours(1) };
/// An address the account signed in from this recently passes the every-address lock.
pub const KNOWN_FOR_DAYS: i64 = 90;
/// Rows whose window started this long ago, and that hold no lock, are deleted.
const KEEP: Duration = Duration::days(1);

/// Seconds left on a lock that keeps `username` out at `address` (see
/// [`RequestMeta::limit_address`](super::RequestMeta::limit_address)), if any. `account`
/// is the account the name belongs to, when one does, and `ip` the client's own address.
pub async fn locked<C: ConnectionTrait>(
    db: &C,
    username: &str,
    address: &str,
    account: Option<Uuid>,
    ip: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<u64>, DbErr> {
    let locks = login_failure::Entity::find()
        .filter(login_failure::Column::Username.eq(username))
        .filter(login_failure::Column::Address.is_in([address, EVERY]))
        .filter(login_failure::Column::LockedUntil.gt(now))
        .all(db)
        .await?;
    let left = |row: &login_failure::Model| row.locked_until.map(|until| Ord::max((until - now).num_seconds(), 1).unsigned_abs());
    if let Some(here) = locks.iter().find(|r| r.address == address) {
        return Ok(left(here));
    }
    let Some(everywhere) = locks.iter().find(|r| r.address == EVERY) else { return Ok(None) };
    if let (Some(id), Some(ip)) = (account, ip)
        && known_address(db, id, ip, now).await?
    {
        return Ok(None);
    }
    Ok(left(everywhere))
}

/// Whether the account has signed in from `ip` within [`KNOWN_FOR_DAYS`].
async fn known_address<C: ConnectionTrait>(db: &C, account: Uuid, ip: &str, now: DateTime<Utc>) -> Result<bool, DbErr> {
    let since = now - Duration::days(KNOWN_FOR_DAYS);
    let found = session::Entity::find()
        .filter(session::Column::UserId.eq(account))
        .filter(session::Column::Ip.eq(ip))
        .filter(session::Column::CreatedAt.gt(since))
        .one(db)
        .await?;
    Ok(found.is_some())
}

/// Counts a failed sign-in of `username` from `address`, locking where a rule says so.
pub async fn record_failure<C: ConnectionTrait>(db: &C, username: &str, address: &str, now: DateTime<Utc>) -> Result<(), DbErr> {
    count(db, username, address, &PER_ADDRESS, now).await?;
    count(db, username, EVERY, &EVERY_ADDRESS, now).await?;
    // Old counts of names nobody tries any more would otherwise pile up.
    login_failure::Entity::delete_many()
        .filter(login_failure::Column::WindowStart.lt(now - KEEP))
        .filter(Condition::any().add(login_failure::Column::LockedUntil.is_null()).add(login_failure::Column::LockedUntil.lt(now)))
        .exec(db)
        .await?;
    Ok(())
}

/// One failure on one row, in one statement each (concurrent failures all count): a
/// window that has passed starts again at one; reaching the rule's count sets the lock.
async fn count<C: ConnectionTrait>(db: &C, username: &str, address: &str, rule: &Rule, now: DateTime<Utc>) -> Result<(), DbErr> {
    let row = login_failure::ActiveModel {
        username: Set(username.to_owned()),
        address: Set(address.to_owned()),
        failures: Set(1),
        window_start: Set(now),
        locked_until: Set(None),
    };
    let failures = Expr::col((login_failure::Entity, login_failure::Column::Failures));
    let window_start = Expr::col((login_failure::Entity, login_failure::Column::WindowStart));
    let window_over = window_start.clone().lte(now - rule.window);
    login_failure::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([login_failure::Column::Username, login_failure::Column::Address])
                .value(login_failure::Column::Failures, Expr::case(window_over.clone(), 1).finally(failures.add(1)))
                .value(login_failure::Column::WindowStart, Expr::case(window_over, now).finally(window_start))
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    login_failure::Entity::update_many()
        .col_expr(login_failure::Column::LockedUntil, Expr::value(Some(now + rule.lock_for)))
        .col_expr(login_failure::Column::Failures, Expr::value(0))
        .col_expr(login_failure::Column::WindowStart, Expr::value(now))
        .filter(login_failure::Column::Username.eq(username))
        .filter(login_failure::Column::Address.eq(address))
        .filter(login_failure::Column::Failures.gte(rule.failures))
        .exec(db)
        .await?;
    Ok(())
}

/// A successful sign-in from `address` clears that address's count (not the count from
/// every address: a guesser elsewhere is still guessing).
pub async fn clear<C: ConnectionTrait>(db: &C, username: &str, address: &str) -> Result<(), DbErr> {
    login_failure::Entity::delete_many()
        .filter(login_failure::Column::Username.eq(username))
        .filter(login_failure::Column::Address.eq(address))
        .exec(db)
        .await?;
    Ok(())
}

/// Clears every count and lock of `username` (an admin set a new password).
pub async fn clear_all<C: ConnectionTrait>(db: &C, username: &str) -> Result<(), DbErr> {
    login_failure::Entity::delete_many().filter(login_failure::Column::Username.eq(username)).exec(db).await?;
    Ok(())
}
