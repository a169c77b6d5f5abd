//! Card rules: issuing numbers, the lifecycle (suspend, resume, revoke, renew, change),
//! each change an event and an audit entry; the holder's and the admins' views.

use chrono::{DateTime, Datelike, Months, Utc};
use entity::{card, card_event};
use sea_orm::ExprTrait;
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde_json::json;
use uuid::Uuid;

use super::dto::{CardDetail, CardEventView, CardPii, CardSearch, CardView, OwnCardView};
use super::number;
use crate::audit::{self, Actor, Change};
use crate::classification::{Category, Tier};
use crate::clock::BEIJING;
use crate::crypto::{Keyring, mask};
use crate::db;
use crate::error::{ApiError, ErrorCode, FieldError, Text};
use crate::pagination::{Page, PageParams};
use crate::state::AppState;
use crate::validate;

pub const NAME_CONTEXT: &str = "cards.holder_name";
pub const ID_CONTEXT: &str = "cards.id_number";
/// `card_sequences` row that numbers card state changes for offline merchant apps.
const STATE_FEED: i32 = 0;

/// Years a card of `tier` is valid for when issued or renewed: what the reviewer asked
/// for, else the configured default for the tier (SPEC §3).
pub fn valid_years(settings: &crate::config::Settings, tier: Tier, requested: Option<i32>) -> i32 {
    requested.unwrap_or_else(|| settings.card_valid_years.for_tier(tier))
}

#[derive(sea_orm::DeriveIden)]
enum CardSequences {
    Table,
    Year,
    Last,
}

/// Takes the next number of a named sequence, inside the caller's transaction. The row
/// lock serialises concurrent callers, so numbers are unique and gap-free per commit.
pub async fn next_in_sequence<C: ConnectionTrait>(txn: &C, key: i32) -> Result<i64, DbErr> {
    let insert = Query::insert()
        .into_table(CardSequences::Table)
        .columns([CardSequences::Year, CardSequences::Last])
        .values_panic([key.into(), 0i64.into()])
        .on_conflict(OnConflict::column(CardSequences::Year).do_nothing().to_owned())
        .to_owned();
    txn.execute(&insert).await?;
    let update = Query::update()
        .table(CardSequences::Table)
        .value(CardSequences::Last, Expr::col(CardSequences::Last).add(1))
        .and_where(Expr::col(CardSequences::Year).eq(key))
        .returning_col(CardSequences::Last)
        .to_owned();
    let row = txn.query_one(&update).await?.ok_or_else(|| DbErr::RecordNotFound("card_sequences".into()))?;
    row.try_get::<i64>("", "last")
}

/// Midnight (Beijing) `years` after today: the expiry of a card issued or renewed now.
pub fn expiry_after(from: DateTime<Utc>, years: i32) -> DateTime<Utc> {
    let date = from.with_timezone(&BEIJING).date_naive();
    let months = u32::try_from(years.clamp(1, 10) * 12).unwrap_or(36);
    let target = date.checked_add_months(Months::new(months)).unwrap_or(date);
    let next_day = target.succ_opt().unwrap_or(target);
    crate::clock::beijing_midnight(next_day)
}

pub fn check_valid_years(years: Option<i32>, errors: &mut Vec<FieldError>) {
    if years.is_some_and(|y| !(1..=10).contains(&y)) {
        errors.push(FieldError::new("valid_years", "out_of_range", Text::new("有效年限须在 1 到 10 年之间", "valid_years must be 1..10")));
    }
}

pub struct NewCard<'a> {
    pub user_id: Uuid,
    pub real_name: &'a str,
    pub id_number: &'a str,
    pub tier: Tier,
    pub category: Category,
    pub valid_years: i32,
}

/// Issues a card inside the caller's transaction (the approval's).
pub async fn issue<C: ConnectionTrait>(
    txn: &C,
    keyring: &Keyring,
    actor: &Actor,
    new: NewCard<'_>,
    now: DateTime<Utc>,
) -> Result<card::Model, ApiError> {
    // One live card per person. The unique index on `id_hash` enforces it only while every
    // card is indexed under one key; during a master-key rotation an older card may still
    // hold its hash under the previous key. So look under every key, serialised per person
    // (PostgreSQL: a transaction lock on each of the person's hashes, in order; SQLite: the
    // write transaction already serialises writers).
    let mut hashes = keyring.blind_indexes("id_number", new.id_number);
    hashes.sort();
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        for hash in &hashes {
            let lock = sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                [hash.clone().into()],
            );
            txn.execute_raw(lock).await?;
        }
    }
    let held = card::Entity::find().filter(card::Column::IdHash.is_in(hashes)).filter(card::Column::Status.ne("revoked")).one(txn).await?;
    if held.is_some() {
        return Err(ApiError::new(ErrorCode::IdNumberHasCard));
    }
    let year = now.with_timezone(&BEIJING).year();
    let seq = next_in_sequence(txn, year).await?;
    let seq = u32::try_from(seq)
        .ok()
        .filter(|s| *s <= 9_999_999)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("card numbers for {year} exhausted")))?;
    let created = card::ActiveModel {
        id: Set(Uuid::now_v7()),
        card_no: Set(number::format(year, seq)),
        user_id: Set(new.user_id),
        holder_name_enc: Set(keyring.encrypt(NAME_CONTEXT, new.real_name)),
        holder_masked: Set(mask::name(new.real_name)),
        name_hash: Set(keyring.blind_index("name", new.real_name)),
        id_number_enc: Set(keyring.encrypt(ID_CONTEXT, new.id_number)),
        id_hash: Set(keyring.blind_index("id_number", new.id_number)),
        tier: Set(new.tier.letter().to_string()),
        category: Set(new.category.as_str().into()),
        status: Set("active".into()),
        valid_from: Set(now),
        valid_until: Set(expiry_after(now, new.valid_years)),
        state_version: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(txn)
    .await
    .map_err(|e| if db::is_unique_violation(&e) { ApiError::new(ErrorCode::IdNumberHasCard) } else { e.into() })?;
    let details =
        json!({"card_no": created.card_no, "tier": created.tier, "category": created.category, "valid_until": created.valid_until});
    event(txn, &created, "issued", actor, "approved", Some(details.clone()), now).await?;
    audit::record(
        txn,
        keyring,
        actor,
        Change { action: "card.issue", target_type: "card", target_id: created.id.to_string(), before: None, after: Some(details) },
        now,
    )
    .await?;
    Ok(created)
}

async fn event<C: ConnectionTrait>(
    txn: &C,
    card: &card::Model,
    kind: &str,
    actor: &Actor,
    reason: &str,
    details: Option<serde_json::Value>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    card_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        card_id: Set(card.id),
        kind: Set(kind.into()),
        actor_id: Set(actor.user_id),
        reason: Set(reason.into()),
        details: Set(details),
        created_at: Set(now),
    }
    .insert(txn)
    .await?;
    Ok(())
}

/// A lifecycle operation on a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Suspend,
    Resume,
    Revoke,
    /// `None`: the configured validity of the card's tier.
    Renew {
        years: Option<i32>,
    },
    Change {
        tier: Option<Tier>,
        category: Option<Category>,
    },
}

fn check_reason(reason: &str) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    validate::required("reason", reason, 500, &mut errors);
    validate::check(errors)
}

/// Applies `op` with its reason: checks the transition, records the event and the audit
/// entry, and moves the offline state feed when the card's usability changes.
pub async fn apply(state: &AppState, actor: &Actor, card_id: Uuid, op: Op, reason: &str) -> Result<CardDetail, ApiError> {
    check_reason(reason)?;
    let txn = db::begin_write(&state.db).await?;
    transition(&txn, &state.keyring, &state.settings, actor, card_id, op, reason, None, state.clock.now()).await?;
    txn.commit().await?;
    detail(state, card_id).await
}

/// Why the account (not a reviewer's decision on the card) suspended a card: recorded on the
/// event, so that re-enabling the account resumes only what disabling it suspended.
pub const ACCOUNT_DISABLED: &str = "account_disabled";

/// [`apply`] inside the caller's transaction; `cause` is recorded on the event.
#[expect(clippy::too_many_arguments, reason = "one transition's inputs; a struct would only rename them")]
pub async fn transition<C: ConnectionTrait>(
    txn: &C,
    keys: &Keyring,
    settings: &crate::config::Settings,
    actor: &Actor,
    card_id: Uuid,
    op: Op,
    reason: &str,
    cause: Option<&str>,
    now: DateTime<Utc>,
) -> Result<card::Model, ApiError> {
    // Concurrent changes of one card queue here: a row lock on PostgreSQL; on SQLite the
    // write transaction already holds the database's write lock.
    let before = card::Entity::find_by_id(card_id).lock_exclusive().one(txn).await?.ok_or_else(ApiError::not_found)?;
    let conflict = || ApiError::new(ErrorCode::CardStateConflict);
    let mut m = before.clone().into_active_model();
    let (kind, feed) = match op {
        Op::Suspend if before.status == "active" => {
            m.status = Set("suspended".into());
            ("suspended", true)
        }
        Op::Resume if before.status == "suspended" => {
            m.status = Set("active".into());
            ("resumed", true)
        }
        Op::Revoke if before.status != "revoked" => {
            m.status = Set("revoked".into());
            ("revoked", true)
        }
        Op::Renew { years } if before.status != "revoked" => {
            let years = valid_years(settings, super::dto::classification_of(&before)?.0, years);
            // From the card's last valid day (`valid_until` is the midnight after it), or
            // from today for a card that has expired: exactly `years` more.
            let last_valid = before.valid_until - chrono::Duration::seconds(1);
            m.valid_until = Set(expiry_after(Ord::max(last_valid, now), years));
            ("renewed", false)
        }
        Op::Change { tier, category } if before.status != "revoked" => {
            if let Some(t) = tier {
                m.tier = Set(t.letter().to_string());
            }
            if let Some(c) = category {
                m.category = Set(c.as_str().into());
            }
            ("changed", false)
        }
        _ => return Err(conflict()),
    };
    if feed {
        m.state_version = Set(next_in_sequence(txn, STATE_FEED).await?);
    }
    m.updated_at = Set(now);
    // And the write itself only applies to the state the checks above saw.
    let updated = card::Entity::update_many()
        .set(m)
        .filter(card::Column::Id.eq(card_id))
        .filter(card::Column::Status.eq(before.status.as_str()))
        .exec(txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(conflict());
    }
    let after = card::Entity::find_by_id(card_id).one(txn).await?.ok_or_else(ApiError::not_found)?;
    let snapshot = |c: &card::Model| json!({"status": c.status, "tier": c.tier, "category": c.category, "valid_until": c.valid_until});
    let mut details = json!({"from": snapshot(&before), "to": snapshot(&after)});
    if let Some(cause) = cause {
        details["cause"] = json!(cause);
    }
    event(txn, &after, kind, actor, reason.trim(), Some(details), now).await?;
    let change = Change {
        action: match kind {
            "suspended" => "card.suspend",
            "resumed" => "card.resume",
            "revoked" => "card.revoke",
            "renewed" => "card.renew",
            _ => "card.change",
        },
        target_type: "card",
        target_id: card_id.to_string(),
        before: Some(snapshot(&before)),
        after: Some(snapshot(&after)),
    };
    audit::record(txn, keys, actor, change, now).await?;
    Ok(after)
}

/// Whether the card's last change of state is a suspension caused by `cause`.
pub async fn last_suspended_by<C: ConnectionTrait>(txn: &C, card_id: Uuid, cause: &str) -> Result<bool, DbErr> {
    // The last change of state: a renewal or a change of tier in between does not count.
    let last = card_event::Entity::find()
        .filter(card_event::Column::CardId.eq(card_id))
        .filter(card_event::Column::Kind.is_in(["suspended", "resumed", "revoked"]))
        .order_by_desc(card_event::Column::Id)
        .one(txn)
        .await?;
    Ok(last
        .is_some_and(|e| e.kind == "suspended" && e.details.as_ref().and_then(|d| d.get("cause")).and_then(|c| c.as_str()) == Some(cause)))
}

pub async fn detail(state: &AppState, card_id: Uuid) -> Result<CardDetail, ApiError> {
    let card = card::Entity::find_by_id(card_id).one(&state.db).await?.ok_or_else(ApiError::not_found)?;
    let events = card_event::Entity::find()
        .filter(card_event::Column::CardId.eq(card_id))
        .order_by_asc(card_event::Column::Id)
        .all(&state.db)
        .await?;
    Ok(CardDetail {
        card: CardView::of(&card, state.clock.now())?,
        user_id: card.user_id,
        events: events.iter().map(CardEventView::from).collect(),
    })
}

/// The talent's live card (not revoked), in full.
pub async fn own(state: &AppState, user_id: Uuid) -> Result<OwnCardView, ApiError> {
    let card = live_card_of(&state.db, user_id).await?.ok_or_else(|| ApiError::new(ErrorCode::NoCard))?;
    Ok(OwnCardView {
        card: CardView::of(&card, state.clock.now())?,
        holder_name: state.keyring.decrypt(NAME_CONTEXT, &card.holder_name_enc)?,
        id_number: state.keyring.decrypt(ID_CONTEXT, &card.id_number_enc)?,
    })
}

pub async fn live_card_of<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<Option<card::Model>, DbErr> {
    card::Entity::find().filter(card::Column::UserId.eq(user_id)).filter(card::Column::Status.ne("revoked")).one(db).await
}

/// The holder's personal data for an admin; the viewing itself is audited.
pub async fn pii(state: &AppState, actor: &Actor, card_id: Uuid) -> Result<CardPii, ApiError> {
    let card = card::Entity::find_by_id(card_id).one(&state.db).await?.ok_or_else(ApiError::not_found)?;
    let phone = match entity::user::Entity::find_by_id(card.user_id).one(&state.db).await?.and_then(|u| u.phone_enc) {
        Some(enc) => Some(state.keyring.decrypt(crate::auth::service::PHONE_CONTEXT, &enc)?),
        None => None,
    };
    let view = CardPii {
        card_id,
        holder_name: state.keyring.decrypt(NAME_CONTEXT, &card.holder_name_enc)?,
        id_number: state.keyring.decrypt(ID_CONTEXT, &card.id_number_enc)?,
        phone,
    };
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    audit::record(
        &txn,
        &state.keyring,
        actor,
        Change { action: "card.pii_view", target_type: "card", target_id: card_id.to_string(), before: None, after: None },
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(view)
}

pub async fn search(state: &AppState, q: &CardSearch, page: &PageParams) -> Result<Page<CardView>, ApiError> {
    let (limit, after) = page.parse::<Uuid>()?;
    let now = state.clock.now();
    let mut select = card::Entity::find();
    if let Some(no) = q.card_no.as_deref() {
        select = select.filter(card::Column::CardNo.eq(no.trim().to_uppercase()));
    }
    if let Some(name) = q.name.as_deref().filter(|n| !n.trim().is_empty()) {
        select = select.filter(card::Column::NameHash.is_in(state.keyring.blind_indexes("name", name.trim())));
    }
    if let Some(id) = q.id_number.as_deref().filter(|n| !n.trim().is_empty()) {
        select = select.filter(card::Column::IdHash.is_in(state.keyring.blind_indexes("id_number", id.trim())));
    }
    if let Some(t) = q.tier {
        select = select.filter(card::Column::Tier.eq(t.letter().to_string()));
    }
    if let Some(status) = q.status {
        select = select.filter(status.condition(now));
    }
    if let Some(after) = after {
        select = select.filter(card::Column::Id.gt(after));
    }
    let rows = select.order_by_asc(card::Column::Id).limit(limit + 1).all(&state.db).await?;
    Page::try_from_rows(rows, limit, |c| c.id, |c| CardView::of(&c, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_beijing_midnight_after_the_anniversary() {
        let issued = DateTime::parse_from_rfc3339("2026-11-27T10:00:00+08:00").map(|d| d.to_utc()).unwrap_or_default();
        let until = expiry_after(issued, 3);
        assert_eq!(until, DateTime::parse_from_rfc3339("2029-11-28T00:00:00+08:00").map(|d| d.to_utc()).unwrap_or_default());
        // 29 February to a year without one.
        let leap = DateTime::parse_from_rfc3339("2028-02-29T12:00:00+08:00").map(|d| d.to_utc()).unwrap_or_default();
        assert_eq!(
            expiry_after(leap, 1),
            DateTime::parse_from_rfc3339("2029-03-01T00:00:00+08:00").map(|d| d.to_utc()).unwrap_or_default()
        );
    }
}
