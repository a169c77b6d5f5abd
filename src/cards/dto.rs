use chrono::{DateTime, Utc};
use entity::{card, card_event};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::classification::{self, Category, Tier};
use crate::error::{ApiError, stored};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    Active,
    Suspended,
    Revoked,
    /// Derived: an active card past `valid_until`.
    Expired,
}

impl CardStatus {
    /// The card-active rule: a card is usable (`Active`) when its stored status is
    /// `active` and `valid_until` is still ahead. An unknown stored status is an error,
    /// never a usable card. (The PostgreSQL scan statement restates the rule in SQL; a
    /// test pins the two together.)
    pub fn of(card: &card::Model, now: DateTime<Utc>) -> Result<CardStatus, ApiError> {
        Ok(match card.status.as_str() {
            "active" if card.valid_until > now => CardStatus::Active,
            "active" => CardStatus::Expired,
            "suspended" => CardStatus::Suspended,
            "revoked" => CardStatus::Revoked,
            other => return Err(ApiError::unknown_stored("cards.status", other)),
        })
    }
}

impl CardStatus {
    /// [`CardStatus::of`] as a condition on the `cards` table: the cards that have this
    /// status at `now`. A test checks that the two agree for every status.
    pub fn condition(self, now: DateTime<Utc>) -> sea_orm::Condition {
        use sea_orm::ColumnTrait;
        let stored = |s: &str| sea_orm::Condition::all().add(card::Column::Status.eq(s));
        match self {
            CardStatus::Active => stored("active").add(card::Column::ValidUntil.gt(now)),
            CardStatus::Expired => stored("active").add(card::Column::ValidUntil.lte(now)),
            CardStatus::Suspended => stored("suspended"),
            CardStatus::Revoked => stored("revoked"),
        }
    }
}

/// A card's tier and category, as stored.
pub fn classification_of(card: &card::Model) -> Result<(Tier, Category), ApiError> {
    Ok((classification::tier_from_db("cards.tier", &card.tier)?, stored("cards.category", &card.category, Category::parse)?))
}

/// A card as merchants and admins see it: the holder's name masked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CardView {
    pub id: Uuid,
    #[schema(example = "ZG202600001230")]
    pub card_no: String,
    #[schema(example = "张*明")]
    pub holder: String,
    pub tier: Tier,
    pub category: Category,
    pub status: CardStatus,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
}

impl CardView {
    pub fn of(card: &card::Model, now: DateTime<Utc>) -> Result<Self, ApiError> {
        let (tier, category) = classification_of(card)?;
        Ok(Self {
            id: card.id,
            card_no: card.card_no.clone(),
            holder: card.holder_masked.clone(),
            tier,
            category,
            status: CardStatus::of(card, now)?,
            valid_from: card.valid_from,
            valid_until: card.valid_until,
        })
    }
}

/// The holder's own view of their card: name and ID number in full.
#[derive(Debug, Serialize, ToSchema)]
pub struct OwnCardView {
    #[serde(flatten)]
    pub card: CardView,
    /// The holder's full name (this view only).
    pub holder_name: String,
    /// The holder's full ID number (this view only).
    pub id_number: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardEventView {
    pub id: Uuid,
    /// `issued`, `suspended`, `resumed`, `revoked`, `renewed` or `changed`.
    pub kind: String,
    pub actor_id: Option<Uuid>,
    pub reason: String,
    pub details: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

impl From<&card_event::Model> for CardEventView {
    fn from(e: &card_event::Model) -> Self {
        Self {
            id: e.id,
            kind: e.kind.clone(),
            actor_id: e.actor_id,
            reason: e.reason.clone(),
            details: e.details.clone(),
            created_at: e.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardDetail {
    #[serde(flatten)]
    pub card: CardView,
    pub user_id: Uuid,
    /// Every state change, oldest first.
    pub events: Vec<CardEventView>,
}

/// The audited admin view of the holder's personal data.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardPii {
    pub card_id: Uuid,
    pub holder_name: String,
    pub id_number: String,
    /// The mobile number the holder bound through WeChat; `null` when none is bound.
    #[schema(example = "13812345678")]
    pub phone: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Reason {
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Renew {
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub reason: String,
    /// Years added to the later of now and the current expiry (1–10).
    #[schema(minimum = 1, maximum = 10)]
    pub valid_years: Option<i32>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangeCard {
    pub tier: Option<Tier>,
    pub category: Option<Category>,
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub reason: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CardSearch {
    /// Exact card number.
    pub card_no: Option<String>,
    /// Exact holder name (matched through its keyed hash, never in clear).
    pub name: Option<String>,
    /// Exact national ID number (matched through its keyed hash, never in clear).
    pub id_number: Option<String>,
    pub tier: Option<Tier>,
    pub status: Option<CardStatus>,
}
