//! Catalogue rules: partner and benefit validation, admin writes (audited, announced to
//! every instance's list cache), and the public queries.

use std::sync::Arc;

use entity::{benefit, partner, visit};
use sea_orm::ExprTrait;
use sea_orm::sea_query::{Expr, Func, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, Select,
};
use serde_json::json;
use uuid::Uuid;

use super::dto::{
    AdminPartnerQuery, BenefitInput, BenefitQuery, BenefitView, District, PartnerCategory, PartnerInput, PartnerQuery, PartnerView, Status,
};
use crate::audit::{self, Actor, Change};
use crate::catalog::period::Period;
use crate::classification::{self, Tier};
use crate::db;
use crate::error::{ApiError, ErrorCode, FieldError, Text};
use crate::pagination::{Page, PageParams};
use crate::state::AppState;
use crate::validate;

const MAX_DESCRIPTION: usize = 2000;
const MAX_QUOTA: i32 = 10_000;

fn text_field(field: &'static str, value: Option<&String>, required: bool, max: usize, errors: &mut Vec<FieldError>) {
    match value {
        Some(v) if required => validate::required(field, v, max, errors),
        Some(v) if v.chars().count() > max => {
            errors.push(FieldError::new(field, "too_long", Text::new(format!("最多 {max} 个字符"), format!("at most {max} characters"))));
        }
        Some(_) => {}
        None if required => errors.push(FieldError::new(field, "required", Text::new("必填", "required"))),
        None => {}
    }
}

fn required<T>(field: &'static str, value: Option<T>, errors: &mut Vec<FieldError>) {
    if value.is_none() {
        errors.push(FieldError::new(field, "required", Text::new("必填", "required")));
    }
}

fn check_partner(input: &PartnerInput, creating: bool) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    text_field("name", input.name.as_ref(), creating || input.name.is_some(), 100, &mut errors);
    text_field("address", input.address.as_ref(), creating || input.address.is_some(), 200, &mut errors);
    text_field("phone", input.phone.as_ref(), false, 32, &mut errors);
    text_field("opening_hours", input.opening_hours.as_ref(), false, 100, &mut errors);
    text_field("description", input.description.as_ref(), false, MAX_DESCRIPTION, &mut errors);
    if creating {
        required("category", input.category, &mut errors);
        required("district", input.district, &mut errors);
        required("lat", input.lat, &mut errors);
        required("lng", input.lng, &mut errors);
    }
    if input.lat.is_some_and(|lat| !(-90.0..=90.0).contains(&lat) || !lat.is_finite()) {
        errors.push(FieldError::new("lat", "out_of_range", Text::new("纬度须在 -90 到 90 之间", "latitude must be within -90..90")));
    }
    if input.lng.is_some_and(|lng| !(-180.0..=180.0).contains(&lng) || !lng.is_finite()) {
        errors.push(FieldError::new("lng", "out_of_range", Text::new("经度须在 -180 到 180 之间", "longitude must be within -180..180")));
    }
    validate::check(errors)
}

/// Checks a benefit as it will be after `input` is applied to `current` (if any).
fn check_benefit(input: &BenefitInput, current: Option<&BenefitView>) -> Result<(), ApiError> {
    let creating = current.is_none();
    let mut errors = Vec::new();
    text_field("title", input.title.as_ref(), creating || input.title.is_some(), 100, &mut errors);
    text_field("description", input.description.as_ref(), false, MAX_DESCRIPTION, &mut errors);
    let tiers = input.tiers.as_ref().or(current.map(|c| &c.tiers));
    match tiers {
        None => errors.push(FieldError::new("tiers", "required", Text::new("必填", "required"))),
        Some(t) if t.is_empty() => {
            errors.push(FieldError::new("tiers", "empty", Text::new("至少选择一个层次", "choose at least one tier")))
        }
        Some(_) => {}
    }
    let period = input.period.or(current.map(|c| c.period));
    let quota = if input.period == Some(Period::Unlimited) { input.quota } else { input.quota.or(current.and_then(|c| c.quota)) };
    match (period, quota) {
        (None, _) => errors.push(FieldError::new("period", "required", Text::new("必填", "required"))),
        (Some(Period::Unlimited), Some(_)) => {
            errors.push(FieldError::new(
                "quota",
                "not_allowed",
                Text::new("不限次数的权益不能设置次数", "an unlimited benefit has no quota"),
            ));
        }
        (Some(Period::Unlimited), None) => {}
        (Some(_), None) => {
            errors.push(FieldError::new("quota", "required", Text::new("须设置每期次数", "a quota is required with this period")))
        }
        (Some(_), Some(q)) if !(1..=MAX_QUOTA).contains(&q) => {
            errors.push(FieldError::new(
                "quota",
                "out_of_range",
                Text::new(format!("次数须在 1 到 {MAX_QUOTA} 之间"), format!("quota must be 1..{MAX_QUOTA}")),
            ));
        }
        (Some(_), Some(_)) => {}
    }
    let from = input.valid_from.or(current.map(|c| c.valid_from));
    let until = input.valid_until.unwrap_or(current.and_then(|c| c.valid_until));
    if let (Some(from), Some(until)) = (from, until)
        && until <= from
    {
        errors.push(FieldError::new("valid_until", "before_start", Text::new("结束时间须晚于开始时间", "must be after valid_from")));
    }
    validate::check(errors)
}

async fn announce(state: &AppState) {
    super::cache::bump(&state.cache, &state.catalog_cache).await;
}

async fn find_partner<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<partner::Model, ApiError> {
    partner::Entity::find_by_id(id).one(db).await?.ok_or_else(ApiError::not_found)
}

pub async fn create_partner(state: &AppState, actor: &Actor, input: PartnerInput) -> Result<PartnerView, ApiError> {
    check_partner(&input, true)?;
    let now = state.clock.now();
    let model = partner::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(input.name.unwrap_or_default().trim().to_owned()),
        category: Set(input.category.unwrap_or(PartnerCategory::Other).as_str().into()),
        district: Set(input.district.unwrap_or(District::Wancheng).as_str().into()),
        address: Set(input.address.unwrap_or_default().trim().to_owned()),
        lat: Set(input.lat.unwrap_or_default()),
        lng: Set(input.lng.unwrap_or_default()),
        phone: Set(input.phone.unwrap_or_default()),
        opening_hours: Set(input.opening_hours.unwrap_or_default()),
        description: Set(input.description.unwrap_or_default()),
        status: Set(input.status.unwrap_or(Status::Active).as_str().into()),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let txn = db::begin_write(&state.db).await?;
    let created = model.insert(&txn).await?;
    let view = PartnerView::try_from(&created)?;
    let change = Change {
        action: "partner.create",
        target_type: "partner",
        target_id: created.id.to_string(),
        before: None,
        after: Some(json!(view)),
    };
    audit::record(&txn, &state.keyring, actor, change, now).await?;
    txn.commit().await?;
    announce(state).await;
    Ok(view)
}

pub async fn update_partner(state: &AppState, actor: &Actor, id: Uuid, input: PartnerInput) -> Result<PartnerView, ApiError> {
    check_partner(&input, false)?;
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let before = find_partner(&txn, id).await?;
    let mut m = before.clone().into_active_model();
    if let Some(v) = input.name {
        m.name = Set(v.trim().to_owned());
    }
    if let Some(v) = input.category {
        m.category = Set(v.as_str().into());
    }
    if let Some(v) = input.district {
        m.district = Set(v.as_str().into());
    }
    if let Some(v) = input.address {
        m.address = Set(v.trim().to_owned());
    }
    if let Some(v) = input.lat {
        m.lat = Set(v);
    }
    if let Some(v) = input.lng {
        m.lng = Set(v);
    }
    if let Some(v) = input.phone {
        m.phone = Set(v);
    }
    if let Some(v) = input.opening_hours {
        m.opening_hours = Set(v);
    }
    if let Some(v) = input.description {
        m.description = Set(v);
    }
    if let Some(v) = input.status {
        m.status = Set(v.as_str().into());
    }
    m.updated_at = Set(now);
    let after = m.update(&txn).await?;
    if partner_is_active(&before) && !partner_is_active(&after) {
        // Its desks close now: visits opened by scans there can no longer redeem.
        visit::Entity::update_many()
            .col_expr(visit::Column::ExpiresAt, Expr::value(now))
            .filter(visit::Column::PartnerId.eq(id))
            .filter(visit::Column::ExpiresAt.gt(now))
            .exec(&txn)
            .await?;
    }
    let view = PartnerView::try_from(&after)?;
    let change = Change {
        action: "partner.update",
        target_type: "partner",
        target_id: id.to_string(),
        before: Some(json!(PartnerView::try_from(&before)?)),
        after: Some(json!(view)),
    };
    audit::record(&txn, &state.keyring, actor, change, now).await?;
    txn.commit().await?;
    announce(state).await;
    Ok(view)
}

pub async fn admin_partner(state: &AppState, id: Uuid) -> Result<PartnerView, ApiError> {
    PartnerView::try_from(&find_partner(&state.db, id).await?)
}

pub async fn admin_partners(state: &AppState, q: &AdminPartnerQuery, page: &PageParams) -> Result<Page<PartnerView>, ApiError> {
    let (limit, after) = page.parse::<Uuid>()?;
    let mut select = partner::Entity::find();
    if let Some(s) = q.status {
        select = select.filter(partner::Column::Status.eq(s.as_str()));
    }
    if let Some(c) = q.category {
        select = select.filter(partner::Column::Category.eq(c.as_str()));
    }
    if let Some(d) = q.district {
        select = select.filter(partner::Column::District.eq(d.as_str()));
    }
    if let Some(after) = after {
        select = select.filter(partner::Column::Id.gt(after));
    }
    let rows = select.order_by_asc(partner::Column::Id).limit(limit + 1).all(&state.db).await?;
    Page::try_from_rows(rows, limit, |p| p.id, |p| PartnerView::try_from(&p))
}

pub async fn create_benefit(state: &AppState, actor: &Actor, partner_id: Uuid, input: BenefitInput) -> Result<BenefitView, ApiError> {
    find_partner(&state.db, partner_id).await?;
    check_benefit(&input, None)?;
    let now = state.clock.now();
    let model = benefit::ActiveModel {
        id: Set(Uuid::now_v7()),
        partner_id: Set(partner_id),
        title: Set(input.title.unwrap_or_default().trim().to_owned()),
        description: Set(input.description.unwrap_or_default()),
        tiers: Set(classification::tiers_to_db(&input.tiers.unwrap_or_default())),
        categories: Set(classification::categories_to_db(&input.categories.unwrap_or_default())),
        quota: Set(input.quota),
        period: Set(input.period.unwrap_or(Period::Unlimited).as_str().into()),
        valid_from: Set(input.valid_from.unwrap_or(now)),
        valid_until: Set(input.valid_until.flatten()),
        status: Set(input.status.unwrap_or(Status::Active).as_str().into()),
        offline_ok: Set(input.offline_ok.unwrap_or(false)),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let txn = db::begin_write(&state.db).await?;
    let created = model.insert(&txn).await?;
    let view = BenefitView::try_from(&created)?;
    let change = Change {
        action: "benefit.create",
        target_type: "benefit",
        target_id: created.id.to_string(),
        before: None,
        after: Some(json!(view)),
    };
    audit::record(&txn, &state.keyring, actor, change, now).await?;
    txn.commit().await?;
    announce(state).await;
    Ok(view)
}

async fn find_benefit<C: ConnectionTrait>(db: &C, partner_id: Uuid, id: Uuid) -> Result<benefit::Model, ApiError> {
    benefit::Entity::find_by_id(id).one(db).await?.filter(|b| b.partner_id == partner_id).ok_or_else(ApiError::not_found)
}

pub async fn update_benefit(
    state: &AppState,
    actor: &Actor,
    partner_id: Uuid,
    id: Uuid,
    input: BenefitInput,
) -> Result<BenefitView, ApiError> {
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let before = find_benefit(&txn, partner_id, id).await?;
    let before_view = BenefitView::try_from(&before)?;
    check_benefit(&input, Some(&before_view))?;
    let mut m = before.into_active_model();
    if let Some(v) = input.title {
        m.title = Set(v.trim().to_owned());
    }
    if let Some(v) = input.description {
        m.description = Set(v);
    }
    if let Some(v) = input.tiers {
        m.tiers = Set(classification::tiers_to_db(&v));
    }
    if let Some(v) = input.categories {
        m.categories = Set(classification::categories_to_db(&v));
    }
    if let Some(p) = input.period {
        m.period = Set(p.as_str().into());
        if p == Period::Unlimited {
            m.quota = Set(None);
        }
    }
    if input.quota.is_some() {
        m.quota = Set(input.quota);
    }
    if let Some(v) = input.valid_from {
        m.valid_from = Set(v);
    }
    if let Some(v) = input.valid_until {
        m.valid_until = Set(v);
    }
    if let Some(v) = input.status {
        m.status = Set(v.as_str().into());
    }
    if let Some(v) = input.offline_ok {
        m.offline_ok = Set(v);
    }
    m.updated_at = Set(now);
    let after = m.update(&txn).await?;
    let view = BenefitView::try_from(&after)?;
    let change = Change {
        action: "benefit.update",
        target_type: "benefit",
        target_id: id.to_string(),
        before: Some(json!(before_view)),
        after: Some(json!(view)),
    };
    audit::record(&txn, &state.keyring, actor, change, now).await?;
    txn.commit().await?;
    announce(state).await;
    Ok(view)
}

pub async fn admin_benefit(state: &AppState, partner_id: Uuid, id: Uuid) -> Result<BenefitView, ApiError> {
    BenefitView::try_from(&find_benefit(&state.db, partner_id, id).await?)
}

pub async fn admin_benefits(state: &AppState, partner_id: Uuid, page: &PageParams) -> Result<Page<BenefitView>, ApiError> {
    let (limit, after) = page.parse::<Uuid>()?;
    find_partner(&state.db, partner_id).await?;
    let mut select = benefit::Entity::find().filter(benefit::Column::PartnerId.eq(partner_id));
    if let Some(after) = after {
        select = select.filter(benefit::Column::Id.gt(after));
    }
    let rows = select.order_by_asc(benefit::Column::Id).limit(limit + 1).all(&state.db).await?;
    Page::try_from_rows(rows, limit, |b| b.id, |b| BenefitView::try_from(&b))
}

// ---- public catalogue ------------------------------------------------------------------

/// A `near=lat,lng` point.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub lat: f64,
    pub lng: f64,
}

pub fn parse_near(near: &str) -> Result<Point, ApiError> {
    let bad = || ApiError::validation(vec![FieldError::new("near", "invalid", Text::new("near 须为 纬度,经度", "near must be lat,lng"))]);
    let (lat, lng) = near.split_once(',').ok_or_else(bad)?;
    let (lat, lng): (f64, f64) = (lat.trim().parse().map_err(|_| bad())?, lng.trim().parse().map_err(|_| bad())?);
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lng) {
        return Err(bad());
    }
    Ok(Point { lat, lng })
}

/// Great-circle distance in metres (haversine).
pub fn distance_m(a: Point, b: Point) -> f64 {
    const R: f64 = 6_371_008.8;
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlng = (b.lng - a.lng).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlng / 2.0).sin().powi(2);
    2.0 * R * h.sqrt().asin()
}

fn escape_like(q: &str) -> String {
    q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

fn tier_pattern(tier: Tier) -> String {
    format!("%{}%", tier.letter())
}

/// Active partners matching the filters (not yet ordered or paged).
fn public_partners(q: &PartnerQuery) -> Result<Select<partner::Entity>, ApiError> {
    let mut select = partner::Entity::find().filter(partner::Column::Status.eq(Status::Active.as_str()));
    if let Some(c) = q.category {
        select = select.filter(partner::Column::Category.eq(c.as_str()));
    }
    if let Some(d) = q.district {
        select = select.filter(partner::Column::District.eq(d.as_str()));
    }
    if let Some(text) = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        if text.chars().count() > 50 {
            return Err(ApiError::validation(vec![FieldError::new("q", "too_long", Text::new("最多 50 个字符", "at most 50 characters"))]));
        }
        let pattern = format!("%{}%", escape_like(&text.to_lowercase()));
        let like = |col: partner::Column| {
            Expr::expr(Func::lower(Expr::col(col))).like(sea_orm::sea_query::LikeExpr::new(pattern.clone()).escape('\\'))
        };
        select = select.filter(
            Condition::any().add(like(partner::Column::Name)).add(like(partner::Column::Address)).add(like(partner::Column::Description)),
        );
    }
    if let Some(tier) = q.tier {
        let mut sub = Query::select();
        sub.expr(Expr::val(1))
            .from(benefit::Entity)
            .and_where(Expr::col((benefit::Entity, benefit::Column::PartnerId)).equals((partner::Entity, partner::Column::Id)))
            .and_where(Expr::col((benefit::Entity, benefit::Column::Status)).eq(Status::Active.as_str()))
            .and_where(Expr::col((benefit::Entity, benefit::Column::Tiers)).like(tier_pattern(tier)));
        select = select.filter(Expr::exists(sub));
    }
    Ok(select)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct NearCursor {
    d: f64,
    id: Uuid,
}

pub async fn list_partners(state: &AppState, q: &PartnerQuery, page: &PageParams) -> Result<Page<PartnerView>, ApiError> {
    let near = q.near.as_deref().map(parse_near).transpose()?;
    let select = public_partners(q)?;
    let Some(point) = near else {
        let (limit, after) = page.parse::<Uuid>()?;
        let select = match after {
            Some(after) => select.filter(partner::Column::Id.gt(after)),
            None => select,
        };
        let rows = select.order_by_asc(partner::Column::Id).limit(limit + 1).all(&state.db).await?;
        return Page::try_from_rows(rows, limit, |p| p.id, |p| PartnerView::try_from(&p));
    };
    // By distance: rank every matching partner's position (a few columns each; Nanyang has
    // thousands of partners, not millions), then load the page.
    let (limit, after) = page.parse::<NearCursor>()?;
    let positions: Vec<(Uuid, f64, f64)> =
        select.select_only().columns([partner::Column::Id, partner::Column::Lat, partner::Column::Lng]).into_tuple().all(&state.db).await?;
    let mut ranked: Vec<(f64, Uuid)> = positions
        .into_iter()
        .map(|(id, lat, lng)| (distance_m(point, Point { lat, lng }), id))
        .filter(|(d, id)| after.as_ref().is_none_or(|c| (*d, *id) > (c.d, c.id)))
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    ranked.truncate(usize::try_from(limit + 1).unwrap_or(usize::MAX));
    let ids: Vec<Uuid> = ranked.iter().map(|(_, id)| *id).collect();
    let mut rows: std::collections::HashMap<Uuid, partner::Model> =
        partner::Entity::find().filter(partner::Column::Id.is_in(ids)).all(&state.db).await?.into_iter().map(|p| (p.id, p)).collect();
    let ordered: Vec<(f64, partner::Model)> = ranked.into_iter().filter_map(|(d, id)| rows.remove(&id).map(|p| (d, p))).collect();
    Page::try_from_rows(
        ordered,
        limit,
        |(d, p)| NearCursor { d: *d, id: p.id },
        |(d, p)| PartnerView::try_from(&p).map(|v| PartnerView { distance_m: Some(d.round() as u32), ..v }),
    )
}

pub async fn public_partner(state: &AppState, id: Uuid) -> Result<PartnerView, ApiError> {
    let p = find_partner(&state.db, id).await?;
    if !partner_is_active(&p) {
        return Err(ApiError::not_found());
    }
    PartnerView::try_from(&p)
}

fn active_partner_ids(category: Option<PartnerCategory>) -> sea_orm::sea_query::SelectStatement {
    let mut sub = Query::select();
    sub.column(partner::Column::Id).from(partner::Entity).and_where(Expr::col(partner::Column::Status).eq(Status::Active.as_str()));
    if let Some(c) = category {
        sub.and_where(Expr::col(partner::Column::Category).eq(c.as_str()));
    }
    sub
}

pub async fn public_benefits(
    state: &AppState,
    partner: Option<Uuid>,
    q: &BenefitQuery,
    page: &PageParams,
) -> Result<Page<BenefitView>, ApiError> {
    let (limit, after) = page.parse::<Uuid>()?;
    if let Some(id) = partner {
        public_partner(state, id).await?;
    }
    let mut select = benefit::Entity::find().filter(benefit::Column::Status.eq(Status::Active.as_str()));
    select = match partner {
        Some(id) => select.filter(benefit::Column::PartnerId.eq(id)),
        None => select.filter(benefit::Column::PartnerId.in_subquery(active_partner_ids(q.partner_category))),
    };
    if let Some(tier) = q.tier {
        select = select.filter(benefit::Column::Tiers.like(tier_pattern(tier)));
    }
    if let Some(c) = q.category {
        select = select.filter(
            Condition::any().add(benefit::Column::Categories.eq("")).add(benefit::Column::Categories.like(format!("%{}%", c.as_str()))),
        );
    }
    if let Some(after) = after {
        select = select.filter(benefit::Column::Id.gt(after));
    }
    let rows = select.order_by_asc(benefit::Column::Id).limit(limit + 1).all(&state.db).await?;
    Page::try_from_rows(rows, limit, |b| b.id, |b| BenefitView::try_from(&b))
}

/// Whether a partner takes part in the programme now: only an active partner is listed,
/// and only an active partner's staff may verify, redeem or void (SPEC §3). The one
/// definition of the rule; SQL that lists partners filters on the same value.
pub fn partner_is_active(p: &partner::Model) -> bool {
    p.status == Status::Active.as_str()
}

/// What a partner's desk may offer now: its active benefits, read from this instance's
/// memory while the catalogue version is unchanged (every scan at a desk needs them). An
/// inactive or unknown partner's desk is closed: its staff get 403 `partner_inactive` for
/// every verification, redemption and void, and its open visits are of no use.
pub async fn offered_by(state: &AppState, partner_id: Uuid) -> Result<Arc<[BenefitView]>, ApiError> {
    let read = async {
        let open = partner::Entity::find_by_id(partner_id).one(&state.db).await?.is_some_and(|p| partner_is_active(&p));
        Ok::<_, ApiError>(if open { Some(Arc::from(benefits_of(&state.db, partner_id).await?)) } else { None })
    };
    state
        .catalog_cache
        .benefits
        .through(&state.cache, &partner_id.to_string(), read)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::PartnerInactive))
}

/// The active benefits of a partner, for verification and the talent's own view.
pub async fn benefits_of<C: ConnectionTrait>(db: &C, partner_id: Uuid) -> Result<Vec<BenefitView>, ApiError> {
    let rows = benefit::Entity::find()
        .filter(benefit::Column::PartnerId.eq(partner_id))
        .filter(benefit::Column::Status.eq(Status::Active.as_str()))
        .order_by_asc(benefit::Column::Id)
        .all(db)
        .await?;
    rows.iter().map(BenefitView::try_from).collect()
}
