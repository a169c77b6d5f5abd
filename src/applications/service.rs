//! Applications: submission with identity checks, withdrawal, and review — approval issues
//! the card in the same transaction; both outcomes notify the talent through the outbox.

use chrono::{DateTime, Utc};
use entity::{application, card, document, user};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::json;
use uuid::Uuid;

use super::dto::{ApplicationFilter, ApplicationPii, ApplicationStatus, ApplicationView, Approve, NewApplication};
use super::id_number::{self, IdNumberError};
use crate::audit::{self, Actor, Change};
use crate::cards::service::{self as cards, NewCard};
use crate::classification::Category;
use crate::crypto::{Keyring, mask};
use crate::db;
use crate::error::{ApiError, ErrorCode, FieldError, Text};
use crate::outbox;
use crate::pagination::{Page, PageParams};
use crate::state::AppState;
use crate::validate;

pub const NAME_CONTEXT: &str = "applications.real_name";
pub const ID_CONTEXT: &str = "applications.id_number";
const MAX_DOCUMENTS: usize = 10;

fn view(a: &application::Model, keyring: &Keyring) -> Result<ApplicationView, ApiError> {
    Ok(ApplicationView {
        id: a.id,
        real_name: mask::name(&keyring.decrypt(NAME_CONTEXT, &a.real_name_enc)?),
        id_number: mask::id_number(&keyring.decrypt(ID_CONTEXT, &a.id_number_enc)?),
        employer: a.employer.clone(),
        category: crate::error::stored("applications.category", &a.category, Category::parse)?,
        claimed_tier: crate::classification::tier_from_db("applications.claimed_tier", &a.claimed_tier)?,
        education: a.education.clone(),
        title: a.title.clone(),
        document_ids: serde_json::from_str(&a.document_ids)
            .map_err(|_| ApiError::unknown_stored("applications.document_ids", &a.document_ids))?,
        status: crate::error::stored("applications.status", &a.status, ApplicationStatus::parse)?,
        reason: a.reason.clone(),
        card_id: a.card_id,
        created_at: a.created_at,
        decided_at: a.decided_at,
    })
}

fn check_name(name: &str, errors: &mut Vec<FieldError>) {
    let n = name.trim().chars().count();
    let ok = name.trim().chars().all(|c| c.is_alphabetic() || c == '·' || c == ' ');
    if !(2..=30).contains(&n) || !ok {
        errors.push(FieldError::new("real_name", "invalid", Text::new("姓名须为 2–30 个字", "2–30 letters")));
    }
}

pub async fn submit(state: &AppState, user_id: Uuid, input: NewApplication) -> Result<ApplicationView, ApiError> {
    let now = state.clock.now();
    let mut errors = Vec::new();
    check_name(&input.real_name, &mut errors);
    let id_number = match id_number::parse(&input.id_number, crate::clock::beijing_date(now)) {
        Ok(id) => Some(id),
        Err(e) => {
            let (code, zh, en) = match e {
                IdNumberError::Format => ("invalid", "身份证号须为 18 位", "must be 18 characters: 17 digits and a digit or X"),
                IdNumberError::BirthDate => ("birth_date", "身份证号中的出生日期无效", "the birth date in it is not possible"),
                IdNumberError::CheckDigit => ("check_digit", "身份证号校验位错误", "the check character is wrong"),
            };
            errors.push(FieldError::new("id_number", code, Text::new(zh, en)));
            None
        }
    };
    validate::required("employer", &input.employer, 100, &mut errors);
    validate::required("education", &input.education, 50, &mut errors);
    validate::required("title", &input.title, 50, &mut errors);
    if input.document_ids.len() > MAX_DOCUMENTS {
        errors.push(FieldError::new("document_ids", "too_many", Text::new("最多 10 个附件", "at most 10 documents")));
    }
    let mut ids = input.document_ids.clone();
    ids.sort();
    ids.dedup();
    if !ids.is_empty() {
        let owned = document::Entity::find()
            .filter(document::Column::Id.is_in(ids.clone()))
            .filter(document::Column::OwnerId.eq(user_id))
            .count(&state.db)
            .await?;
        if owned != ids.len() as u64 {
            errors.push(FieldError::new("document_ids", "unknown", Text::new("附件不存在", "a document does not exist")));
        }
    }
    validate::check(errors)?;
    let id_number = id_number.unwrap_or_default();
    let id_hash = state.keyring.blind_index("id_number", &id_number);

    let txn = db::begin_write(&state.db).await?;
    if cards::live_card_of(&txn, user_id).await?.is_some() {
        return Err(ApiError::new(ErrorCode::CardExists));
    }
    let held = card::Entity::find()
        .filter(card::Column::IdHash.is_in(state.keyring.blind_indexes("id_number", &id_number)))
        .filter(card::Column::Status.ne("revoked"))
        .count(&txn)
        .await?;
    if held > 0 {
        return Err(ApiError::new(ErrorCode::IdNumberHasCard));
    }
    let created = application::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        real_name_enc: Set(state.keyring.encrypt(NAME_CONTEXT, input.real_name.trim())),
        id_number_enc: Set(state.keyring.encrypt(ID_CONTEXT, &id_number)),
        id_hash: Set(id_hash),
        employer: Set(input.employer.trim().into()),
        category: Set(input.category.as_str().into()),
        claimed_tier: Set(input.claimed_tier.letter().to_string()),
        education: Set(input.education.trim().into()),
        title: Set(input.title.trim().into()),
        document_ids: Set(serde_json::to_string(&ids)?),
        status: Set(ApplicationStatus::Submitted.as_str().into()),
        reason: Set(None),
        reviewer_id: Set(None),
        decided_at: Set(None),
        card_id: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| if db::is_unique_violation(&e) { ApiError::new(ErrorCode::ApplicationOpen) } else { e.into() })?;
    txn.commit().await?;
    view(&created, &state.keyring)
}

pub async fn list_mine(state: &AppState, user_id: Uuid, page: &PageParams) -> Result<Page<ApplicationView>, ApiError> {
    let (limit, after) = page.parse::<Uuid>()?;
    let mut q = application::Entity::find().filter(application::Column::UserId.eq(user_id));
    if let Some(after) = after {
        q = q.filter(application::Column::Id.gt(after));
    }
    let rows = q.order_by_asc(application::Column::Id).limit(limit + 1).all(&state.db).await?;
    let page = Page::from_rows(rows, limit, |a| a.id, |a| view(&a, &state.keyring));
    Ok(Page { items: page.items.into_iter().collect::<Result<_, _>>()?, next_cursor: page.next_cursor })
}

/// Moves a submitted application to `to` in one conditional update; `false` when it had
/// been decided (or withdrawn) already.
async fn decide<C: sea_orm::ConnectionTrait>(
    txn: &C,
    id: Uuid,
    to: ApplicationStatus,
    reviewer: Option<Uuid>,
    reason: Option<String>,
    card_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let done = application::Entity::update_many()
        .col_expr(application::Column::Status, Expr::value(to.as_str()))
        .col_expr(application::Column::ReviewerId, Expr::value(reviewer))
        .col_expr(application::Column::Reason, Expr::value(reason))
        .col_expr(application::Column::CardId, Expr::value(card_id))
        .col_expr(application::Column::DecidedAt, Expr::value(Some(now)))
        .col_expr(application::Column::UpdatedAt, Expr::value(now))
        .filter(application::Column::Id.eq(id))
        .filter(application::Column::Status.eq(ApplicationStatus::Submitted.as_str()))
        .exec(txn)
        .await?;
    Ok(done.rows_affected == 1)
}

pub async fn withdraw(state: &AppState, user_id: Uuid, id: Uuid) -> Result<ApplicationView, ApiError> {
    let now = state.clock.now();
    let app = application::Entity::find_by_id(id).one(&state.db).await?.filter(|a| a.user_id == user_id).ok_or_else(ApiError::not_found)?;
    let txn = db::begin_write(&state.db).await?;
    if !decide(&txn, app.id, ApplicationStatus::Withdrawn, None, None, None, now).await? {
        return Err(ApiError::new(ErrorCode::ApplicationDecided));
    }
    txn.commit().await?;
    get(state, id).await
}

async fn get(state: &AppState, id: Uuid) -> Result<ApplicationView, ApiError> {
    let app = application::Entity::find_by_id(id).one(&state.db).await?.ok_or_else(ApiError::not_found)?;
    view(&app, &state.keyring)
}

pub async fn admin_get(state: &AppState, id: Uuid) -> Result<ApplicationView, ApiError> {
    get(state, id).await
}

/// The applicant's name and ID number in full, for a reviewer; the reveal itself is
/// recorded in the audit log, in the same transaction (no record, no reveal).
pub async fn pii(state: &AppState, actor: &Actor, id: Uuid) -> Result<ApplicationPii, ApiError> {
    let app = application::Entity::find_by_id(id).one(&state.db).await?.ok_or_else(ApiError::not_found)?;
    let revealed = ApplicationPii {
        application_id: id,
        real_name: state.keyring.decrypt(NAME_CONTEXT, &app.real_name_enc)?,
        id_number: state.keyring.decrypt(ID_CONTEXT, &app.id_number_enc)?,
    };
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let change =
        Change { action: "application.pii_view", target_type: "application", target_id: id.to_string(), before: None, after: None };
    audit::record(&txn, &state.keyring, actor, change, now).await?;
    txn.commit().await?;
    Ok(revealed)
}

pub async fn admin_list(state: &AppState, filter: &ApplicationFilter, page: &PageParams) -> Result<Page<ApplicationView>, ApiError> {
    let (limit, after) = page.parse::<Uuid>()?;
    let mut q = application::Entity::find();
    if let Some(s) = filter.status {
        q = q.filter(application::Column::Status.eq(s.as_str()));
    }
    if let Some(after) = after {
        q = q.filter(application::Column::Id.gt(after));
    }
    let rows = q.order_by_asc(application::Column::Id).limit(limit + 1).all(&state.db).await?;
    let page = Page::from_rows(rows, limit, |a| a.id, |a| view(&a, &state.keyring));
    Ok(Page { items: page.items.into_iter().collect::<Result<_, _>>()?, next_cursor: page.next_cursor })
}

/// How many applications are in `status`: one `COUNT` along `idx_applications_status`.
pub async fn count(state: &AppState, status: ApplicationStatus) -> Result<u64, ApiError> {
    Ok(application::Entity::find().filter(application::Column::Status.eq(status.as_str())).count(&state.db).await?)
}

async fn notify<C: sea_orm::ConnectionTrait>(
    txn: &C,
    user_id: Uuid,
    message: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let openid = user::Entity::find_by_id(user_id).one(txn).await?.and_then(|u| u.wechat_openid);
    if let Some(openid) = openid {
        let mut payload = message;
        payload["touser"] = json!(openid);
        outbox::enqueue(txn, outbox::WECHAT_SUBSCRIBE, payload, now).await?;
    }
    Ok(())
}

/// Approves and issues the card, all in one transaction: two reviewers approving at once
/// get one card between them; the other is told the application was decided.
pub async fn approve(state: &AppState, actor: &Actor, id: Uuid, body: &Approve) -> Result<ApplicationView, ApiError> {
    let mut errors = Vec::new();
    cards::check_valid_years(body.valid_years, &mut errors);
    validate::check(errors)?;
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let app = application::Entity::find_by_id(id).one(&txn).await?.ok_or_else(ApiError::not_found)?;
    if app.status != ApplicationStatus::Submitted.as_str() {
        return Err(ApiError::new(ErrorCode::ApplicationDecided));
    }
    let real_name = state.keyring.decrypt(NAME_CONTEXT, &app.real_name_enc)?;
    let id_number = state.keyring.decrypt(ID_CONTEXT, &app.id_number_enc)?;
    let new = NewCard {
        user_id: app.user_id,
        real_name: &real_name,
        id_number: &id_number,
        tier: body.tier,
        category: body.category,
        valid_years: cards::valid_years(&state.settings, body.tier, body.valid_years),
    };
    let card = cards::issue(&txn, &state.keyring, actor, new, now).await?;
    if !decide(&txn, id, ApplicationStatus::Approved, actor.user_id, None, Some(card.id), now).await? {
        return Err(ApiError::new(ErrorCode::ApplicationDecided));
    }
    let change = Change {
        action: "application.approve",
        target_type: "application",
        target_id: id.to_string(),
        before: Some(json!({"status": "submitted"})),
        after: Some(json!({"status": "approved", "card_id": card.id, "tier": body.tier, "category": body.category})),
    };
    audit::record(&txn, &state.keyring, actor, change, now).await?;
    let message = json!({
        "template": "card_issued",
        "page": "pages/card/index",
        "data": {"thing1": {"value": "诸葛英才卡已发放"}, "character_string2": {"value": card.card_no}, "time3": {"value": now.with_timezone(&crate::clock::BEIJING).format("%Y-%m-%d %H:%M").to_string()}}
    });
    notify(&txn, app.user_id, message, now).await?;
    txn.commit().await?;
    get(state, id).await
}

pub async fn reject(state: &AppState, actor: &Actor, id: Uuid, reason: &str) -> Result<ApplicationView, ApiError> {
    let mut errors = Vec::new();
    validate::required("reason", reason, 500, &mut errors);
    validate::check(errors)?;
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let app = application::Entity::find_by_id(id).one(&txn).await?.ok_or_else(ApiError::not_found)?;
    if !decide(&txn, id, ApplicationStatus::Rejected, actor.user_id, Some(reason.trim().into()), None, now).await? {
        return Err(ApiError::new(ErrorCode::ApplicationDecided));
    }
    let change = Change {
        action: "application.reject",
        target_type: "application",
        target_id: id.to_string(),
        before: Some(json!({"status": "submitted"})),
        after: Some(json!({"status": "rejected", "reason": reason.trim()})),
    };
    audit::record(&txn, &state.keyring, actor, change, now).await?;
    let short: String = reason.trim().chars().take(20).collect();
    let message = json!({
        "template": "application_rejected",
        "page": "pages/apply/index",
        "data": {"thing1": {"value": "英才卡申请未通过"}, "thing2": {"value": short}}
    });
    notify(&txn, app.user_id, message, now).await?;
    txn.commit().await?;
    get(state, id).await
}
