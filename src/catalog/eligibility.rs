//! The one rule that decides whether a card may use a benefit.

use chrono::{DateTime, Utc};

use super::dto::{BenefitView, Status};
use crate::classification::{Category, Tier};

/// A card of `tier` and `category` may use `benefit` at `at` when the benefit is active,
/// lists the tier, lists the category (or no categories at all), and `at` is inside its
/// validity window. The partner's own status is the caller's to check.
pub fn eligible(benefit: &BenefitView, tier: Tier, category: Category, at: DateTime<Utc>) -> bool {
    benefit.status == Status::Active
        && benefit.tiers.contains(&tier)
        && (benefit.categories.is_empty() || benefit.categories.contains(&category))
        && benefit.valid_from <= at
        && benefit.valid_until.is_none_or(|until| at < until)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::period::Period;

    fn benefit() -> BenefitView {
        BenefitView {
            id: uuid::Uuid::nil(),
            partner_id: uuid::Uuid::nil(),
            title: "t".into(),
            description: String::new(),
            tiers: vec![Tier::A, Tier::B],
            categories: vec![],
            quota: Some(1),
            period: Period::Year,
            valid_from: DateTime::parse_from_rfc3339("2026-01-01T00:00:00+08:00").map(|d| d.to_utc()).unwrap_or_default(),
            valid_until: DateTime::parse_from_rfc3339("2027-01-01T00:00:00+08:00").map(|d| d.to_utc()).ok(),
            status: Status::Active,
            offline_ok: false,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).map(|d| d.to_utc()).unwrap_or_default()
    }

    #[test]
    fn tier_category_status_and_window() {
        let b = benefit();
        let inside = at("2026-06-01T00:00:00+08:00");
        assert!(eligible(&b, Tier::A, Category::Youth, inside));
        assert!(!eligible(&b, Tier::C, Category::Youth, inside));
        assert!(!eligible(&BenefitView { categories: vec![Category::SciTech], ..b.clone() }, Tier::A, Category::Youth, inside));
        assert!(eligible(&BenefitView { categories: vec![Category::Youth], ..b.clone() }, Tier::A, Category::Youth, inside));
        assert!(!eligible(&BenefitView { status: Status::Inactive, ..b.clone() }, Tier::A, Category::Youth, inside));
        assert!(!eligible(&b, Tier::A, Category::Youth, at("2025-12-31T23:59:59+08:00")));
        assert!(eligible(&b, Tier::A, Category::Youth, at("2026-01-01T00:00:00+08:00")));
        assert!(!eligible(&b, Tier::A, Category::Youth, at("2027-01-01T00:00:00+08:00")));
        assert!(eligible(&BenefitView { valid_until: None, ..b }, Tier::A, Category::Youth, at("2099-01-01T00:00:00Z")));
    }
}
