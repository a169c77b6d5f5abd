//! Verification of a scanned QR, and exactly-once redemption.
//!
//! - A token's nonce is consumed by the visit it opens: `visits.nonce` is unique, so the
//!   first verification anywhere wins and every replay is refused, whatever Redis is doing.
//! - A redemption takes one use, records itself and stores its idempotent response in one
//!   commit: a per-card, per-benefit, per-period counter is upserted only while it is
//!   below the quota (`ON CONFLICT … DO UPDATE … WHERE used < quota`), so concurrent
//!   redemptions on any number of instances succeed exactly `min(quota, attempts)` times.

use std::collections::HashMap;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use entity::{benefit, card, quota_counter, redemption, visit};
use sea_orm::ExprTrait;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, IntoActiveModel,
    JoinType, QueryFilter, QueryOrder, QuerySelect, Statement,
};
use uuid::Uuid;

use super::dto::{QrView, RedemptionView, RevocationEntry, RevocationFeed, VerifyView};
use super::idempotency::Claim;
use super::quota;
use super::scan::Scan;
use crate::audit::{self, Actor, Change, ledger};
use crate::auth::sessions::SessionInfo;
use crate::cards::dto::{CardStatus, CardView, classification_of};
use crate::cards::qr::{self, QrError};
use crate::cards::service::live_card_of;
use crate::catalog::dto::BenefitView;
use crate::catalog::eligibility::eligible;
use crate::catalog::period;
use crate::catalog::service::offered_by;
use crate::crypto::Keyring;
use crate::db;
use crate::error::{ApiError, ErrorCode, FieldError, Text};
use crate::pagination::{Page, PageParams};
use crate::state::AppState;
use crate::validate;

pub const VISIT_TTL: Duration = Duration::minutes(5);

/// How long after a redemption its partner may void it (SPEC §3; configurable).
pub fn void_window(settings: &crate::config::Settings) -> Duration {
    Duration::seconds(settings.void_window_secs)
}

fn card_problem(status: CardStatus) -> Option<ApiError> {
    match status {
        CardStatus::Active => None,
        CardStatus::Suspended => Some(ApiError::new(ErrorCode::CardSuspended)),
        CardStatus::Revoked => Some(ApiError::new(ErrorCode::CardRevoked)),
        CardStatus::Expired => Some(ApiError::new(ErrorCode::CardExpired)),
    }
}

fn staff_partner(staff: &SessionInfo) -> Result<Uuid, ApiError> {
    staff.partner_id.ok_or_else(|| ApiError::new(ErrorCode::Forbidden))
}

/// A fresh QR token for the talent's active card.
pub async fn mint_qr(state: &AppState, user_id: Uuid) -> Result<QrView, ApiError> {
    let now = state.clock.now();
    let card = live_card_of(&state.db, user_id).await?.ok_or_else(|| ApiError::new(ErrorCode::NoCard))?;
    if let Some(problem) = card_problem(CardStatus::of(&card, now)?) {
        return Err(problem);
    }
    let keys = state.qr_keys.get(&state.db, &state.keyring, false).await?;
    let key = keys.current().ok_or_else(|| ApiError::internal(anyhow::anyhow!("no QR signing key")))?;
    let signing = key.signing.as_ref().ok_or_else(|| ApiError::internal(anyhow::anyhow!("signing key unreadable")))?;
    let token = qr::mint(key.kid, signing, card.id, now);
    let window = qr::window_of(now);
    Ok(QrView { token, expires_at: qr::window_end(window + 1), refresh_in: Ord::max((qr::window_end(window) - now).num_seconds(), 1) })
}

/// Checks a scanned token, consumes it, and opens a visit at the staff member's partner
/// (which must be active: the token is not consumed otherwise).
pub async fn verify(state: &AppState, staff: &SessionInfo, ip: Option<&str>, scanned: &str) -> Result<VerifyView, ApiError> {
    let partner_id = staff_partner(staff)?;
    let offered = offered_by(state, partner_id).await?;
    let now = state.clock.now();
    let keys = state.qr_keys.get(&state.db, &state.keyring, false).await?;
    let checked = match qr::check(scanned, &keys, now) {
        // A key rotated on another instance moments ago: look once more.
        Err(QrError::Invalid) => qr::check(scanned, &*state.qr_keys.get(&state.db, &state.keyring, true).await?, now),
        other => other,
    };
    let token = checked.map_err(|e| match e {
        QrError::Invalid => ApiError::new(ErrorCode::QrInvalid),
        QrError::Expired => ApiError::new(ErrorCode::QrExpired),
    })?;
    // To the microsecond: what the database stores, and what the audit tag covers.
    let at = now.trunc_subsecs(6);
    let mut visit = visit::Model {
        id: Uuid::now_v7(),
        card_id: token.card,
        partner_id,
        staff_id: staff.user_id,
        nonce: qr::nonce_key(&token),
        created_at: at,
        expires_at: at + VISIT_TTL,
        ip: ip.map(str::to_owned),
        tag: String::new(),
    };
    visit.tag = ledger::visit_tag(&state.keyring, &visit);
    let visit_id = visit.id;
    let Scan { card, opened, used } = state.scans.run(visit).await?.ok_or_else(|| ApiError::new(ErrorCode::QrInvalid))?;
    if let Some(problem) = card_problem(CardStatus::of(&card, now)?) {
        return Err(problem);
    }
    if !opened {
        return Err(ApiError::new(ErrorCode::QrReplayed));
    }
    let (tier, category) = classification_of(&card)?;
    let offered: Vec<BenefitView> = offered.iter().filter(|b| eligible(b, tier, category, now)).cloned().collect();
    Ok(VerifyView { visit_id, card: CardView::of(&card, now)?, benefits: quota::remaining(offered, &used, now) })
}

/// A redemption that passed every check, ready to be written.
struct Checked {
    row: redemption::Model,
    card_no: String,
    benefit_title: String,
    quota: Option<i32>,
}

/// Takes one use and records the redemption, storing its response under the idempotency
/// key in the same commit.
///
/// On PostgreSQL: one read, then one statement that does all three writes (atomic on its
/// own, and the one round trip that waits for the disk). The checks read committed state,
/// exactly as they would inside a READ COMMITTED transaction. SQLite: one transaction.
pub async fn redeem(
    state: &AppState,
    staff: &SessionInfo,
    ip: Option<&str>,
    claim: &Claim,
    visit_id: Uuid,
    benefit_id: Uuid,
) -> Result<RedemptionView, ApiError> {
    let partner_id = staff_partner(staff)?;
    // Stored with microseconds: the response shows what a later read shows.
    let now = state.clock.now().trunc_subsecs(6);
    let offered = offered_by(state, partner_id).await?;
    if state.db.get_database_backend() == DbBackend::Postgres {
        let checked = check(&state.db, &state.keyring, staff, ip, partner_id, &offered, visit_id, benefit_id, now).await?;
        let view = RedemptionView::of(&checked.row, &checked.card_no, &checked.benefit_title);
        return match record_in_one_statement(&state.db, &checked, claim, &serde_json::to_string(&view)?).await? {
            Recorded::Redeemed => Ok(view),
            Recorded::QuotaExhausted => Err(ApiError::new(ErrorCode::QuotaExhausted)),
            Recorded::ClaimLost => Err(ApiError::new(ErrorCode::IdempotencyInFlight)),
        };
    }
    let txn = db::begin_write(&state.db).await?;
    let checked = check(&txn, &state.keyring, staff, ip, partner_id, &offered, visit_id, benefit_id, now).await?;
    if let Some(quota) = checked.quota {
        let r = &checked.row;
        // One statement takes a use: the first of the period creates the counter at 1, the
        // others add one only while below the quota.
        let counter = quota_counter::ActiveModel {
            card_id: Set(r.card_id),
            benefit_id: Set(r.benefit_id),
            period_key: Set(r.period_key.clone()),
            used: Set(1),
        };
        let used = Expr::col((quota_counter::Entity, quota_counter::Column::Used));
        let taken = quota_counter::Entity::insert(counter)
            .on_conflict(
                OnConflict::columns([quota_counter::Column::CardId, quota_counter::Column::BenefitId, quota_counter::Column::PeriodKey])
                    .value(quota_counter::Column::Used, used.clone().add(1))
                    .action_and_where(used.lt(quota))
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        if quota < 1 || taken != 1 {
            return Err(ApiError::new(ErrorCode::QuotaExhausted));
        }
    }
    let view = RedemptionView::of(&checked.row, &checked.card_no, &checked.benefit_title);
    checked.row.into_active_model().reset_all().insert(&txn).await?;
    if !super::idempotency::complete(&txn, claim, 201, &serde_json::to_string(&view)?).await? {
        // Taken over by a retry meanwhile: this request changes nothing (the transaction
        // rolls back as it is dropped).
        return Err(ApiError::new(ErrorCode::IdempotencyInFlight));
    }
    txn.commit().await?;
    Ok(view)
}

/// The visit (this partner's, still open), the benefit (offered by this partner, usable by
/// the card) and the card (active). The row to write comes back tagged for the audit trail.
#[expect(clippy::too_many_arguments, reason = "one redemption's inputs; a struct would only rename them")]
async fn check<C: ConnectionTrait>(
    db: &C,
    keys: &Keyring,
    staff: &SessionInfo,
    ip: Option<&str>,
    partner_id: Uuid,
    offered: &[BenefitView],
    visit_id: Uuid,
    benefit_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Checked, ApiError> {
    let (visit, card) = visit_and_card(db, visit_id).await?.ok_or_else(ApiError::not_found)?;
    if visit.partner_id != partner_id {
        return Err(ApiError::new(ErrorCode::Forbidden));
    }
    if visit.expires_at <= now {
        return Err(ApiError::new(ErrorCode::VisitExpired));
    }
    let Some(benefit) = offered.iter().find(|b| b.id == benefit_id) else {
        return Err(not_offered(db, partner_id, benefit_id).await?);
    };
    if let Some(problem) = card_problem(CardStatus::of(&card, now)?) {
        return Err(problem);
    }
    let (tier, category) = classification_of(&card)?;
    if !eligible(benefit, tier, category, now) {
        return Err(ApiError::new(ErrorCode::BenefitUnavailable));
    }
    let mut row = redemption::Model {
        id: Uuid::now_v7(),
        card_id: card.id,
        benefit_id: benefit.id,
        partner_id,
        staff_id: staff.user_id,
        visit_id: visit.id,
        period_key: period::window(benefit.period, now).key,
        tier: card.tier,
        day: crate::clock::day_key(crate::clock::beijing_date(now)),
        status: "completed".into(),
        created_at: now,
        voided_at: None,
        voided_by: None,
        void_reason: None,
        ip: ip.map(str::to_owned),
        tag: String::new(),
    };
    row.tag = ledger::redemption_tag(keys, &row);
    Ok(Checked { row, card_no: card.card_no, benefit_title: benefit.title.clone(), quota: benefit.quota })
}

enum Recorded {
    Redeemed,
    QuotaExhausted,
    /// The idempotency claim was taken over by a retry: nothing was written.
    ClaimLost,
}

/// Stores the response under the claimed key, takes the use (when the benefit has a
/// quota) and inserts the redemption: all or nothing, and only while the claim holds the
/// key. Storing comes first and the rest depends on it, so its row lock fences the key: a
/// takeover either came before (nothing is written) or waits until this commits (and then
/// finds the key done). When the quota is spent, `zhuge_abort` undoes the statement, the
/// stored response included, and says so with SQLSTATE `ZH001`.
async fn record_in_one_statement(db: &DatabaseConnection, c: &Checked, claim: &Claim, response: &str) -> Result<Recorded, ApiError> {
    const SQL: &str = r#"
WITH stored AS (
    UPDATE idempotency_keys SET status = 'done', response_status = 201, response_body = $13
    WHERE staff_id = $7 AND key = $14 AND status = 'in_flight' AND locked_until = $15
    RETURNING 1
), counted AS (
    INSERT INTO quota_counters (card_id, benefit_id, period_key, used)
    SELECT $1, $2, $3, 1 WHERE $4::integer IS NOT NULL AND $4::integer > 0 AND EXISTS (SELECT 1 FROM stored)
    ON CONFLICT (card_id, benefit_id, period_key)
    DO UPDATE SET used = quota_counters.used + 1 WHERE quota_counters.used < $4::integer
    RETURNING 1
), redeemed AS (
    INSERT INTO redemptions (id, card_id, benefit_id, partner_id, staff_id, visit_id, period_key, tier, day, status, created_at, ip, tag)
    SELECT $5, $1, $2, $6, $7, $8, $3, $9, $10, $11, $12, $16, $17
    WHERE EXISTS (SELECT 1 FROM stored) AND ($4::integer IS NULL OR EXISTS (SELECT 1 FROM counted))
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM stored) AS held,
    CASE WHEN EXISTS (SELECT 1 FROM stored) AND NOT EXISTS (SELECT 1 FROM redeemed)
        THEN zhuge_abort('quota_exhausted') ELSE true END AS redeemed"#;
    let r = &c.row;
    let values = [
        r.card_id.into(),
        r.benefit_id.into(),
        r.period_key.clone().into(),
        c.quota.into(),
        r.id.into(),
        r.partner_id.into(),
        r.staff_id.into(),
        r.visit_id.into(),
        r.tier.clone().into(),
        r.day.clone().into(),
        r.status.clone().into(),
        r.created_at.into(),
        response.to_owned().into(),
        claim.key.clone().into(),
        claim.fence.into(),
        r.ip.clone().into(),
        r.tag.clone().into(),
    ];
    let row = match db.query_one_raw(Statement::from_sql_and_values(DbBackend::Postgres, SQL, values)).await {
        Ok(Some(row)) => row,
        Ok(None) => return Err(ApiError::internal(anyhow::anyhow!("the redemption statement returned no row"))),
        Err(e) if db::sqlstate(&e).as_deref() == Some("ZH001") => return Ok(Recorded::QuotaExhausted),
        Err(e) => return Err(e.into()),
    };
    Ok(if row.try_get::<bool>("", "held")? { Recorded::Redeemed } else { Recorded::ClaimLost })
}

/// A visit with its card, in one query.
async fn visit_and_card<C: ConnectionTrait>(db: &C, visit_id: Uuid) -> Result<Option<(visit::Model, card::Model)>, sea_orm::DbErr> {
    let to_card = visit::Entity::belongs_to(card::Entity).from(visit::Column::CardId).to(card::Column::Id).into();
    let found = visit::Entity::find_by_id(visit_id).select_also(card::Entity).join(JoinType::InnerJoin, to_card).one(db).await?;
    Ok(found.and_then(|(v, c)| Some((v, c?))))
}

/// Why a benefit is not among the partner's active ones: unknown, another partner's, or
/// inactive.
async fn not_offered<C: ConnectionTrait>(db: &C, partner_id: Uuid, benefit_id: Uuid) -> Result<ApiError, ApiError> {
    Ok(match benefit::Entity::find_by_id(benefit_id).one(db).await? {
        None => ApiError::not_found(),
        Some(b) if b.partner_id != partner_id => ApiError::new(ErrorCode::Forbidden),
        Some(_) => ApiError::new(ErrorCode::BenefitUnavailable),
    })
}

/// Voids a redemption of the staff member's own partner, once, within the window; the use
/// returns to the quota.
pub async fn void(state: &AppState, staff: &SessionInfo, meta: &Actor, id: Uuid, reason: &str) -> Result<RedemptionView, ApiError> {
    let mut errors = Vec::new();
    validate::required("reason", reason, 500, &mut errors);
    validate::check(errors)?;
    let partner_id = staff_partner(staff)?;
    // An inactive partner's desk is closed for voids too.
    offered_by(state, partner_id).await?;
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let r = redemption::Entity::find_by_id(id).one(&txn).await?.ok_or_else(ApiError::not_found)?;
    if r.partner_id != partner_id {
        return Err(ApiError::new(ErrorCode::Forbidden));
    }
    if r.status == "completed" && now - r.created_at > void_window(&state.settings) {
        return Err(ApiError::new(ErrorCode::VoidWindowPassed));
    }
    let voided = redemption::Entity::update_many()
        .col_expr(redemption::Column::Status, Expr::value("voided"))
        .col_expr(redemption::Column::VoidedAt, Expr::value(Some(now)))
        .col_expr(redemption::Column::VoidedBy, Expr::value(Some(staff.user_id)))
        .col_expr(redemption::Column::VoidReason, Expr::value(Some(reason.trim().to_owned())))
        .filter(redemption::Column::Id.eq(id))
        .filter(redemption::Column::Status.eq("completed"))
        .exec(&txn)
        .await?;
    if voided.rows_affected != 1 {
        return Err(ApiError::new(ErrorCode::AlreadyVoided));
    }
    quota_counter::Entity::update_many()
        .col_expr(quota_counter::Column::Used, Expr::col(quota_counter::Column::Used).sub(1))
        .filter(quota_counter::Column::CardId.eq(r.card_id))
        .filter(quota_counter::Column::BenefitId.eq(r.benefit_id))
        .filter(quota_counter::Column::PeriodKey.eq(r.period_key.as_str()))
        .filter(quota_counter::Column::Used.gt(0))
        .exec(&txn)
        .await?;
    let change = Change {
        action: "redemption.void",
        target_type: "redemption",
        target_id: id.to_string(),
        before: Some(serde_json::json!({"status": "completed"})),
        after: Some(serde_json::json!({"status": "voided", "reason": reason.trim()})),
    };
    audit::record(&txn, &state.keyring, meta, change, now).await?;
    let card_no = card::Entity::find_by_id(r.card_id)
        .one(&txn)
        .await?
        .map(|c| c.card_no)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("redemption {id} names card {} that does not exist", r.card_id)))?;
    let title = benefit::Entity::find_by_id(r.benefit_id).one(&txn).await?.map(|b| b.title).unwrap_or_default();
    txn.commit().await?;
    let after = redemption::Entity::find_by_id(id).one(&state.db).await?.ok_or_else(ApiError::not_found)?;
    Ok(RedemptionView::of(&after, &card_no, &title))
}

/// The card numbers and benefit titles a page of redemptions shows: two queries a page.
async fn page_of<P: serde::Serialize>(
    state: &AppState,
    rows: Vec<redemption::Model>,
    limit: u64,
    position: impl Fn(&redemption::Model) -> P,
) -> Result<Page<RedemptionView>, ApiError> {
    let ids = |of: fn(&redemption::Model) -> Uuid| {
        let mut ids: Vec<Uuid> = rows.iter().map(of).collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let (card_ids, benefit_ids) = (ids(|r| r.card_id), ids(|r| r.benefit_id));
    let numbers: HashMap<Uuid, String> = card::Entity::find()
        .filter(card::Column::Id.is_in(card_ids))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|c| (c.id, c.card_no))
        .collect();
    let titles: HashMap<Uuid, String> = benefit::Entity::find()
        .filter(benefit::Column::Id.is_in(benefit_ids))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|b| (b.id, b.title))
        .collect();
    let text = |m: &HashMap<Uuid, String>, id: Uuid| m.get(&id).cloned().unwrap_or_default();
    Ok(Page::from_rows(rows, limit, position, |r| RedemptionView::of(&r, &text(&numbers, r.card_id), &text(&titles, r.benefit_id))))
}

/// Where a page of redemptions stopped: newest first by time, then id.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Position {
    at: DateTime<Utc>,
    id: Uuid,
}

impl Position {
    fn of(r: &redemption::Model) -> Self {
        Self { at: r.created_at, id: r.id }
    }

    /// Rows after this position in the order `created_at DESC, id DESC`.
    fn after(&self) -> sea_orm::Condition {
        use sea_orm::Condition;
        Condition::any()
            .add(redemption::Column::CreatedAt.lt(self.at))
            .add(Condition::all().add(redemption::Column::CreatedAt.eq(self.at)).add(redemption::Column::Id.lt(self.id)))
    }
}

/// Whose redemptions a merchant list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffScope {
    /// Everyone's at the partner.
    Partner,
    /// One staff member's.
    One(Uuid),
}

/// A merchant's redemption list, checked: the partner's, or one staff member's (staff who
/// are not managers may name only themselves), between two Beijing dates.
#[derive(Debug)]
pub struct PartnerRedemptions {
    pub benefit: Option<Uuid>,
    pub staff: StaffScope,
    /// `[start, end)` instants of the Beijing dates asked for.
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl PartnerRedemptions {
    pub fn parse(staff: &SessionInfo, filter: &super::dto::RedemptionFilter) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        // Exactly what the documented pattern allows: `mine` or a hyphenated UUID.
        let scope = match filter.staff.as_deref() {
            None => StaffScope::Partner,
            Some("mine") => StaffScope::One(staff.user_id),
            Some(id) => match Uuid::try_parse(id).ok().filter(|_| id.len() == 36) {
                Some(id) => StaffScope::One(id),
                None => {
                    errors.push(FieldError::new(
                        "staff",
                        "invalid",
                        Text::new("staff 须为 mine 或员工 ID", "staff is mine or a staff member's id"),
                    ));
                    StaffScope::Partner
                }
            },
        };
        if let (Some(from), Some(to)) = (filter.from, filter.to)
            && from > to
        {
            errors.push(FieldError::new("from", "range", Text::new("开始日期不能晚于结束日期", "from must not be after to")));
        }
        validate::check(errors)?;
        if let StaffScope::One(id) = scope
            && id != staff.user_id
            && staff.role != crate::auth::Role::MerchantManager
        {
            return Err(ApiError::new(ErrorCode::Forbidden)
                .detail(Text::new("只有店长可以查看其他员工的核销", "Only a manager sees another staff member's redemptions")));
        }
        Ok(Self {
            benefit: filter.benefit_id,
            staff: scope,
            start: filter.from.map(crate::clock::beijing_midnight),
            end: filter.to.and_then(|d| d.succ_opt()).map(crate::clock::beijing_midnight),
        })
    }
}

/// Newest first, a page at a time along `(partner_id[, staff_id], created_at)`.
pub async fn for_partner(
    state: &AppState,
    staff: &SessionInfo,
    list: &PartnerRedemptions,
    page: &PageParams,
) -> Result<Page<RedemptionView>, ApiError> {
    let partner_id = staff_partner(staff)?;
    let (limit, after) = page.parse::<Position>()?;
    let rows = list.query(partner_id, after.as_ref()).limit(limit + 1).all(&state.db).await?;
    page_of(state, rows, limit, Position::of).await
}

impl PartnerRedemptions {
    /// The list's query after `after`, newest first (a test checks its plan).
    pub fn query(&self, partner_id: Uuid, after: Option<&Position>) -> sea_orm::Select<redemption::Entity> {
        let mut q = redemption::Entity::find().filter(redemption::Column::PartnerId.eq(partner_id));
        if let StaffScope::One(id) = self.staff {
            q = q.filter(redemption::Column::StaffId.eq(id));
        }
        if let Some(b) = self.benefit {
            q = q.filter(redemption::Column::BenefitId.eq(b));
        }
        if let Some(start) = self.start {
            q = q.filter(redemption::Column::CreatedAt.gte(start));
        }
        if let Some(end) = self.end {
            q = q.filter(redemption::Column::CreatedAt.lt(end));
        }
        if let Some(after) = after {
            q = q.filter(after.after());
        }
        q.order_by_desc(redemption::Column::CreatedAt).order_by_desc(redemption::Column::Id)
    }
}

/// The talent's own redemptions, over all their cards, newest first.
pub async fn for_talent(state: &AppState, user_id: Uuid, page: &PageParams) -> Result<Page<RedemptionView>, ApiError> {
    let (limit, before) = page.parse::<Uuid>()?;
    let cards: Vec<Uuid> =
        card::Entity::find().filter(card::Column::UserId.eq(user_id)).all(&state.db).await?.into_iter().map(|c| c.id).collect();
    let mut q = redemption::Entity::find().filter(redemption::Column::CardId.is_in(cards));
    if let Some(before) = before {
        q = q.filter(redemption::Column::Id.lt(before));
    }
    let rows = q.order_by_desc(redemption::Column::Id).limit(limit + 1).all(&state.db).await?;
    // This list pages by id (its index is `(card_id, id)`).
    page_of(state, rows, limit, |r| r.id).await
}

/// Every benefit the talent's card may use now, with what is left of it.
pub async fn my_benefits(state: &AppState, user_id: Uuid, page: &PageParams) -> Result<Page<super::dto::BenefitUse>, ApiError> {
    let now = state.clock.now();
    let card = live_card_of(&state.db, user_id).await?.ok_or_else(|| ApiError::new(ErrorCode::NoCard))?;
    let (tier, category) = classification_of(&card)?;
    let query = crate::catalog::dto::BenefitQuery { tier: Some(tier), category: Some(category), partner_category: None };
    let listed = crate::catalog::service::public_benefits(state, None, &query, page).await?;
    let usable: Vec<BenefitView> = listed.items.into_iter().filter(|b| eligible(b, tier, category, now)).collect();
    Ok(Page { items: quota::uses(&state.db, card.id, usable, now).await?, next_cursor: listed.next_cursor })
}

/// The revocation feed's default page: small enough that a client polling a large city's
/// feed gets a quick answer (500 entries made each page 7× slower at city scale); a client
/// catching up follows `more` or asks for up to [`REVOCATIONS_MAX`].
pub const REVOCATIONS_PAGE: u64 = 100;
pub const REVOCATIONS_MAX: u64 = 1000;

pub async fn revocations(state: &AppState, since: i64, limit: u64) -> Result<RevocationFeed, ApiError> {
    let limit = limit.clamp(1, REVOCATIONS_MAX);
    // The three columns it sends, not whole cards (their ciphertexts are most of a row).
    let rows: Vec<(Uuid, String, i64)> = card::Entity::find()
        .select_only()
        .columns([card::Column::Id, card::Column::Status, card::Column::StateVersion])
        .filter(card::Column::StateVersion.gt(since))
        .order_by_asc(card::Column::StateVersion)
        .limit(limit + 1)
        .into_tuple()
        .all(&state.db)
        .await?;
    let more = rows.len() as u64 > limit;
    let items: Vec<RevocationEntry> = rows
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(|(card_ref, status, version)| RevocationEntry { card_ref, status, version })
        .collect();
    let next_since = items.last().map_or(since, |e| e.version);
    Ok(RevocationFeed { items, next_since, more })
}

/// Today's and this month's redemptions (Beijing calendar) at the staff member's partner,
/// by benefit: one report of the month by day and benefit, from the statistics rollup.
pub async fn merchant_stats(state: &AppState, staff: &SessionInfo) -> Result<super::dto::MerchantStats, ApiError> {
    use super::stats::{Dimension, Report};
    use std::collections::BTreeMap;
    let partner = staff_partner(staff)?;
    let today = crate::clock::beijing_date(state.clock.now());
    let first_of_month = chrono::Datelike::with_day(&today, 1).unwrap_or(today);
    let report = Report { from: first_of_month, to: today, by: vec![Dimension::Day, Dimension::Benefit], partner: Some(partner) };
    // At most 31 days × the partner's benefits.
    let rows = report.page(&state.db, None, None, 100_000).await?;
    let today_key = crate::clock::day_key(today);
    let (mut day, mut month) = (BTreeMap::new(), BTreeMap::new());
    for r in rows {
        let Some(benefit) = r.benefit_id else { continue };
        *month.entry(benefit).or_insert(0) += r.count;
        if r.day.as_deref() == Some(today_key.as_str()) {
            *day.entry(benefit).or_insert(0) += r.count;
        }
    }
    let counts = |m: BTreeMap<Uuid, i64>| m.into_iter().map(|(benefit_id, count)| super::dto::BenefitCount { benefit_id, count }).collect();
    Ok(super::dto::MerchantStats { today: counts(day), this_month: counts(month) })
}

/// Rotates the QR signing key (audited).
pub async fn rotate_keys(state: &AppState, actor: &Actor) -> Result<String, ApiError> {
    let now = state.clock.now();
    let kid = crate::cards::keys::rotate(&state.db, &state.keyring, now).await?;
    state.qr_keys.get(&state.db, &state.keyring, true).await?;
    let txn = db::begin_write(&state.db).await?;
    audit::record(
        &txn,
        &state.keyring,
        actor,
        Change { action: "keys.rotate", target_type: "signing_key", target_id: kid.clone(), before: None, after: None },
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(kid)
}
