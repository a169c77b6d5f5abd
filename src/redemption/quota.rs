//! Remaining uses: the benefit's quota minus the uses counted in the current period.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::quota_counter;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::dto::BenefitUse;
use crate::catalog::dto::BenefitView;
use crate::catalog::period;

/// Reads the card's counters for the benefits, then as [`remaining`].
pub async fn uses<C: ConnectionTrait>(
    db: &C,
    card_id: Uuid,
    benefits: Vec<BenefitView>,
    now: DateTime<Utc>,
) -> Result<Vec<BenefitUse>, DbErr> {
    let ids: Vec<Uuid> = benefits.iter().filter(|b| b.quota.is_some()).map(|b| b.id).collect();
    let used: HashMap<(Uuid, String), i32> = if ids.is_empty() {
        HashMap::new()
    } else {
        quota_counter::Entity::find()
            .filter(quota_counter::Column::CardId.eq(card_id))
            .filter(quota_counter::Column::BenefitId.is_in(ids))
            .all(db)
            .await?
            .into_iter()
            .map(|c| ((c.benefit_id, c.period_key), c.used))
            .collect()
    };
    Ok(remaining(benefits, &used, now))
}

/// Each benefit with its remaining uses in the current period, given the uses counted by
/// (benefit, period key).
pub fn remaining(benefits: Vec<BenefitView>, used: &HashMap<(Uuid, String), i32>, now: DateTime<Utc>) -> Vec<BenefitUse> {
    benefits
        .into_iter()
        .map(|b| {
            let window = period::window(b.period, now);
            let remaining = b.quota.map(|q| (q - used.get(&(b.id, window.key.clone())).copied().unwrap_or(0)).max(0));
            BenefitUse { resets_at: if b.quota.is_some() { window.resets_at } else { None }, remaining, benefit: b }
        })
        .collect()
}
