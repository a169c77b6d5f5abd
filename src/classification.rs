//! How the city classifies talents (SPEC §3): a tier (层次) and a category (类别) per card.
//! Benefits are granted by tier and, optionally, by category.

use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// 层次: `A` 国内外顶尖人才 … `E` 优秀青年人才/高技能人才.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
pub enum Tier {
    A,
    B,
    C,
    D,
    E,
}

impl Tier {
    pub const ALL: [Tier; 5] = [Tier::A, Tier::B, Tier::C, Tier::D, Tier::E];

    pub fn letter(self) -> char {
        match self {
            Tier::A => 'A',
            Tier::B => 'B',
            Tier::C => 'C',
            Tier::D => 'D',
            Tier::E => 'E',
        }
    }

    pub fn from_letter(c: char) -> Option<Tier> {
        Self::ALL.into_iter().find(|t| t.letter() == c)
    }
}

/// 类别: the city's seven talent programmes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    SciTech,
    Enterprise,
    Youth,
    Skilled,
    Rural,
    Social,
    Civil,
}

impl Category {
    pub const ALL: [Category; 7] =
        [Category::SciTech, Category::Enterprise, Category::Youth, Category::Skilled, Category::Rural, Category::Social, Category::Civil];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::SciTech => "sci_tech",
            Category::Enterprise => "enterprise",
            Category::Youth => "youth",
            Category::Skilled => "skilled",
            Category::Rural => "rural",
            Category::Social => "social",
            Category::Civil => "civil",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Tiers as stored: their letters in order, e.g. `"ABE"`.
pub fn tiers_to_db(tiers: &[Tier]) -> String {
    let mut t = tiers.to_vec();
    t.sort();
    t.dedup();
    t.into_iter().map(Tier::letter).collect()
}

pub fn tiers_from_db(s: &str) -> Result<Vec<Tier>, ApiError> {
    s.chars().map(|c| Tier::from_letter(c).ok_or_else(|| ApiError::unknown_stored("benefits.tiers", s))).collect()
}

/// A card's or application's tier letter.
pub fn tier_from_db(column: &'static str, s: &str) -> Result<Tier, ApiError> {
    let mut letters = s.chars();
    match (letters.next().and_then(Tier::from_letter), letters.next()) {
        (Some(t), None) => Ok(t),
        _ => Err(ApiError::unknown_stored(column, s)),
    }
}

/// Categories as stored: comma-separated, empty for "all".
pub fn categories_to_db(categories: &[Category]) -> String {
    let mut c = categories.to_vec();
    c.sort();
    c.dedup();
    c.into_iter().map(Category::as_str).collect::<Vec<_>>().join(",")
}

/// An unknown piece is an error, never dropped: dropping it could empty the list, and an
/// empty list means every category.
pub fn categories_from_db(s: &str) -> Result<Vec<Category>, ApiError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',').map(|c| crate::error::stored("benefits.categories", c, Category::parse)).collect()
}
