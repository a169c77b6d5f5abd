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

/// Counts one sign-in attempt of `username` from `address` **before** its password is
/// checked, and says whether it may be checked: `Some(seconds)` when a lock keeps it out.
/// Call inside a write transaction, and roll it back when refused (a refused attempt
/// reveals nothing and counts for nothing); commit it otherwise, before the check.
///
/// Counting first is what bounds guessing under concurrency: attempts on one name and
/// address queue on their row (PostgreSQL's row lock, SQLite's write lock), each sees the
/// count including itself, and only the first [`PER_ADDRESS`]`.failures` of a window are
/// checked, however many arrive at once. The attempt that reaches a rule's count is still
/// checked, and sets the lock. A sign-in that succeeds is taken back by [`forgive`].
///
/// `account` is the account the name belongs to, when one does, and `ip` the client's own
/// address (for the every-address lock's known-address exception).
pub async fn attempt<C: ConnectionTrait>(
    db: &C,
    username: &str,
    address: &str,
    account: Option<Uuid>,
    ip: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<u64>, DbErr> {
    let here = count(db, username, address, &PER_ADDRESS, now).await?;
    let everywhere = count(db, username, EVERY, &EVERY_ADDRESS, now).await?;
    let left = |until: DateTime<Utc>| Ord::max((until - now).num_seconds(), 1).unsigned_abs();
    if let Some(until) = here.locked_after(&PER_ADDRESS) {
        return Ok(Some(left(until)));
    }
    let Some(until) = everywhere.locked_after(&EVERY_ADDRESS) else { return Ok(None) };
    if let (Some(id), Some(ip)) = (account, ip)
        && known_address(db, id, ip, now).await?
    {
        return Ok(None);
    }
    Ok(Some(left(until)))
}

/// Deletes the counts of names nobody has tried for [`KEEP`] and that hold no lock, which
/// would otherwise pile up; run by housekeeping, not by sign-ins.
pub async fn prune<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let old = login_failure::Entity::delete_many()
        .filter(login_failure::Column::WindowStart.lt(now - KEEP))
        .filter(Condition::any().add(login_failure::Column::LockedUntil.is_null()).add(login_failure::Column::LockedUntil.lt(now)))
        .exec(db)
        .await?;
    Ok(old.rows_affected)
}

/// A row's count after this attempt was added.
struct Counted {
    failures: i32,
    locked_until: Option<DateTime<Utc>>,
}

impl Counted {
    /// The end of a lock that was set before this attempt came (the attempt that sets a
    /// lock is the rule's last one allowed).
    fn locked_after(&self, rule: &Rule) -> Option<DateTime<Utc>> {
        self.locked_until.filter(|_| self.failures > rule.failures)
    }
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

/// Adds one to a row, in one statement (concurrent attempts all count, in turn): a window
/// that has passed, or a lock that has ended, starts the count again at one; reaching the
/// rule's count sets the lock. Returns the row as this attempt left it.
async fn count<C: ConnectionTrait>(db: &C, username: &str, address: &str, rule: &Rule, now: DateTime<Utc>) -> Result<Counted, DbErr> {
    let row = login_failure::ActiveModel {
        username: Set(username.to_owned()),
        address: Set(address.to_owned()),
        failures: Set(1),
        window_start: Set(now),
        locked_until: Set(None),
    };
    let failures = Expr::col((login_failure::Entity, login_failure::Column::Failures));
    let window_start = Expr::col((login_failure::Entity, login_failure::Column::WindowStart));
    let locked_until = Expr::col((login_failure::Entity, login_failure::Column::LockedUntil));
    let lock_over = locked_until.clone().is_not_null().and(locked_until.clone().lte(now));
    let window_over = locked_until.clone().is_null().and(window_start.clone().lte(now - rule.window));
    let restart = window_over.or(lock_over);
    login_failure::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([login_failure::Column::Username, login_failure::Column::Address])
                .value(login_failure::Column::Failures, Expr::case(restart.clone(), 1).finally(failures.add(1)))
                .value(login_failure::Column::WindowStart, Expr::case(restart.clone(), now).finally(window_start))
                .value(
                    login_failure::Column::LockedUntil,
                    Expr::case(restart, Expr::value(Option::<DateTime<Utc>>::None)).finally(locked_until),
                )
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    login_failure::Entity::update_many()
        .col_expr(login_failure::Column::LockedUntil, Expr::value(Some(now + rule.lock_for)))
        .filter(login_failure::Column::Username.eq(username))
        .filter(login_failure::Column::Address.eq(address))
        .filter(login_failure::Column::Failures.gte(rule.failures))
        .filter(login_failure::Column::LockedUntil.is_null())
        .exec(db)
        .await?;
    let row = login_failure::Entity::find_by_id((username.to_owned(), address.to_owned()))
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("login_failures".into()))?;
    Ok(Counted { failures: row.failures, locked_until: row.locked_until })
}

/// A sign-in that succeeded: its address's count is cleared, and its attempt is taken
/// back from the count across addresses (a guesser elsewhere is still counted).
pub async fn forgive<C: ConnectionTrait>(db: &C, username: &str, address: &str) -> Result<(), DbErr> {
    clear(db, username, address).await?;
    login_failure::Entity::update_many()
        .col_expr(login_failure::Column::Failures, Expr::col(login_failure::Column::Failures).sub(1))
        .filter(login_failure::Column::Username.eq(username))
        .filter(login_failure::Column::Address.eq(EVERY))
        .filter(login_failure::Column::Failures.gt(0))
        .filter(login_failure::Column::LockedUntil.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Clears `address`'s count of `username`.
async fn clear<C: ConnectionTrait>(db: &C, username: &str, address: &str) -> Result<(), DbErr> {
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
