//! What one verification reads and writes: the card, the visit that consumes the token's
//! nonce, and the card's quota counters at the partner. Verification is the hottest path in
//! the service (every scan at every desk), so on PostgreSQL all of it is one statement and
//! one round trip; SQLite, in process, takes three cheap steps.
//!
//! The visit is opened only for a card that is active at `now`, the same rule as
//! [`CardStatus::of`]; `visits.nonce` is unique, so a token opens at most one visit on any
//! number of instances.

use std::collections::HashMap;

use entity::{benefit, card, quota_counter, visit};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbBackend, EntityTrait, FromQueryResult, IntoActiveModel, QueryFilter, QuerySelect,
    QueryTrait, Statement,
};
use uuid::Uuid;

use crate::cards::dto::CardStatus;
use crate::db;
use crate::error::ApiError;

pub struct Scan {
    pub card: card::Model,
    /// Whether the visit was opened: `false` when the card is not active or the nonce was
    /// consumed before.
    pub opened: bool,
    /// Uses counted, by benefit and period key, for the partner's benefits.
    pub used: HashMap<(Uuid, String), i32>,
}

/// Runs the scan; `None` when there is no such card.
pub async fn run(db: &DatabaseConnection, v: &visit::Model) -> Result<Option<Scan>, ApiError> {
    match db.get_database_backend() {
        DbBackend::Postgres => in_one_statement(db, v).await,
        _ => step_by_step(db, v).await,
    }
}

const SCAN_SQL: &str = r#"
WITH c AS (SELECT * FROM cards WHERE id = $1),
v AS (
    INSERT INTO visits (id, card_id, partner_id, staff_id, nonce, created_at, expires_at, ip, tag)
    SELECT $2, c.id, $3, $4, $5, $6, $7, $8, $9 FROM c WHERE c.status = 'active' AND c.valid_until > $6
    ON CONFLICT (nonce) DO NOTHING
    RETURNING id
)
SELECT c.*,
    EXISTS (SELECT 1 FROM v) AS opened,
    (SELECT coalesce(json_agg(json_build_array(q.benefit_id, q.period_key, q.used)), '[]'::json)
       FROM quota_counters q
      WHERE q.card_id = c.id AND q.benefit_id IN (SELECT b.id FROM benefits b WHERE b.partner_id = $3)) AS used
FROM c"#;

async fn in_one_statement(db: &DatabaseConnection, v: &visit::Model) -> Result<Option<Scan>, ApiError> {
    use sea_orm::ConnectionTrait;
    let values = [
        v.card_id.into(),
        v.id.into(),
        v.partner_id.into(),
        v.staff_id.into(),
        v.nonce.clone().into(),
        v.created_at.into(),
        v.expires_at.into(),
        v.ip.clone().into(),
        v.tag.clone().into(),
    ];
    let Some(row) = db.query_one_raw(Statement::from_sql_and_values(DbBackend::Postgres, SCAN_SQL, values)).await? else {
        return Ok(None);
    };
    let card = card::Model::from_query_result(&row, "")?;
    let opened: bool = row.try_get("", "opened")?;
    let used: serde_json::Value = row.try_get("", "used")?;
    let used = used
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let id = Uuid::parse_str(entry.get(0)?.as_str()?).ok()?;
            let key = entry.get(1)?.as_str()?.to_owned();
            let count = i32::try_from(entry.get(2)?.as_i64()?).ok()?;
            Some(((id, key), count))
        })
        .collect();
    Ok(Some(Scan { card, opened, used }))
}

async fn step_by_step(db: &DatabaseConnection, v: &visit::Model) -> Result<Option<Scan>, ApiError> {
    let Some(card) = card::Entity::find_by_id(v.card_id).one(db).await? else {
        return Ok(None);
    };
    let opened = CardStatus::of(&card, v.created_at)? == CardStatus::Active
        && match v.clone().into_active_model().reset_all().insert(db).await {
            Ok(_) => true,
            Err(e) if db::is_unique_violation(&e) => false,
            Err(e) => return Err(e.into()),
        };
    let partner_benefits =
        benefit::Entity::find().select_only().column(benefit::Column::Id).filter(benefit::Column::PartnerId.eq(v.partner_id));
    let used = quota_counter::Entity::find()
        .filter(quota_counter::Column::CardId.eq(v.card_id))
        .filter(quota_counter::Column::BenefitId.in_subquery(partner_benefits.into_query()))
        .all(db)
        .await?
        .into_iter()
        .map(|c| ((c.benefit_id, c.period_key), c.used))
        .collect();
    Ok(Some(Scan { card, opened, used }))
}
