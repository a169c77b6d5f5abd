use chrono::{DateTime, Utc};
use entity::redemption;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::cards::dto::CardView;
use crate::catalog::dto::BenefitView;

#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyRequest {
    /// The scanned QR text (`ZG:…`).
    pub qr: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BenefitUse {
    pub benefit: BenefitView,
    /// Uses left in the current period; `null` when unlimited.
    pub remaining: Option<i32>,
    /// When the period resets (Beijing calendar); `null` for lifetime and unlimited.
    pub resets_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyView {
    /// Pass to `POST /merchant/redemptions` within 5 minutes.
    pub visit_id: Uuid,
    pub card: CardView,
    /// This partner's benefits the card is eligible for now.
    pub benefits: Vec<BenefitUse>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct RedeemRequest {
    pub visit_id: Uuid,
    pub benefit_id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedemptionView {
    pub id: Uuid,
    #[schema(example = "ZG202600001230")]
    pub card_no: String,
    pub benefit_id: Uuid,
    /// The benefit's title now (so a list needs no lookup of its own).
    #[schema(example = "专家号优先")]
    pub benefit_title: String,
    pub partner_id: Uuid,
    pub staff_id: Uuid,
    /// `completed` or `voided`.
    #[schema(example = "completed")]
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub voided_at: Option<DateTime<Utc>>,
    pub void_reason: Option<String>,
}

impl RedemptionView {
    pub fn of(r: &redemption::Model, card_no: &str, benefit_title: &str) -> Self {
        Self {
            id: r.id,
            card_no: card_no.to_owned(),
            benefit_id: r.benefit_id,
            benefit_title: benefit_title.to_owned(),
            partner_id: r.partner_id,
            staff_id: r.staff_id,
            status: r.status.clone(),
            created_at: r.created_at,
            voided_at: r.voided_at,
            void_reason: r.void_reason.clone(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct VoidRequest {
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub reason: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RedemptionFilter {
    pub benefit_id: Option<Uuid>,
    /// `mine`, or a staff member's id: only the redemptions that staff member made. Staff
    /// who are not managers may name only themselves.
    #[param(example = "mine", pattern = "^(mine|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")]
    pub staff: Option<String>,
    /// First Beijing date, inclusive.
    pub from: Option<chrono::NaiveDate>,
    /// Last Beijing date, inclusive; not before `from`.
    pub to: Option<chrono::NaiveDate>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BenefitCount {
    pub benefit_id: Uuid,
    pub count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MerchantStats {
    /// Completed redemptions today (Beijing), by benefit.
    pub today: Vec<BenefitCount>,
    /// Completed redemptions this calendar month (Beijing), by benefit.
    pub this_month: Vec<BenefitCount>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QrView {
    /// The text to show as a QR code.
    pub token: String,
    /// When verification stops accepting it.
    pub expires_at: DateTime<Utc>,
    /// Seconds until a fresh token should be fetched.
    pub refresh_in: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevocationEntry {
    /// The card reference carried in QR tokens.
    pub card_ref: Uuid,
    /// `suspended`, `revoked` or `active` (resumed).
    pub status: String,
    pub version: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevocationFeed {
    pub items: Vec<RevocationEntry>,
    /// Pass as `since` next time.
    pub next_since: i64,
    /// `true` while more entries follow `next_since`.
    pub more: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevocationQuery {
    /// The last `version` seen (0 for everything).
    pub since: Option<i64>,
    /// 1–1000, default 100; follow `more` for the rest.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// One group of completed redemptions. Only the dimensions grouped by are present.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatGroup {
    /// Beijing date.
    #[schema(example = "2026-11-27")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub benefit_id: Option<Uuid>,
    #[schema(example = "B")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    pub count: i64,
}

/// A page of statistics.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsPage {
    pub from: chrono::NaiveDate,
    pub to: chrono::NaiveDate,
    /// The dimensions the rows are grouped by, in this order.
    pub by: Vec<super::stats::Dimension>,
    pub rows: Vec<StatGroup>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// First Beijing date (default: 30 days before `to`).
    pub from: Option<chrono::NaiveDate>,
    /// Last Beijing date (default: today). At most 366 days in all.
    pub to: Option<chrono::NaiveDate>,
    /// Comma-separated dimensions to group by, from `day`, `partner`, `benefit`, `tier`
    /// (default all four); rows come in that order.
    #[param(value_type = Option<Vec<super::stats::Dimension>>, style = Form, explode = false)]
    pub by: Option<String>,
    /// Only this partner's redemptions.
    pub partner_id: Option<Uuid>,
    /// Rows per page, 1–1000 (default 500). CSV has every row, streamed.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}
