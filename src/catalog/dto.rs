//! Wire types of the catalogue.

use crate::error::{ApiError, stored};
use chrono::{DateTime, Utc};
use entity::{benefit, partner};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::catalog::period::Period;
use crate::classification::{self, Category, Tier};

// `$s` is a `tt`, not a `literal`: a `literal` fragment reaches the derives wrapped in
// an invisible group, which serde reads but utoipa's attribute parser skips, so the
// OpenAPI document listed the Rust variant names instead of the wire values.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $s:tt),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        pub enum $name {
            $(#[serde(rename = $s)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }

            pub fn parse(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }
    };
}

string_enum!(
    /// What kind of place a partner is.
    PartnerCategory {
        Hospital = "hospital",
        School = "school",
        Apartment = "apartment",
        Scenic = "scenic",
        Transport = "transport",
        Finance = "finance",
        Culture = "culture",
        Sport = "sport",
        ElderlyCare = "elderly_care",
        ServiceCenter = "service_center",
        Other = "other",
    }
);

string_enum!(
    /// Nanyang's districts and counties.
    District {
        Wancheng = "宛城区",
        Wolong = "卧龙区",
        Nanzhao = "南召县",
        Fangcheng = "方城县",
        Xixia = "西峡县",
        Zhenping = "镇平县",
        Neixiang = "内乡县",
        Xichuan = "淅川县",
        Sheqi = "社旗县",
        Tanghe = "唐河县",
        Xinye = "新野县",
        Tongbai = "桐柏县",
        Dengzhou = "邓州市",
    }
);

string_enum!(
    /// Whether a partner or benefit is offered.
    Status {
        Active = "active",
        Inactive = "inactive",
    }
);

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartnerView {
    pub id: Uuid,
    #[schema(example = "南阳市中心医院")]
    pub name: String,
    pub category: PartnerCategory,
    pub district: District,
    pub address: String,
    #[schema(example = 32.99)]
    pub lat: f64,
    #[schema(example = 112.53)]
    pub lng: f64,
    pub phone: String,
    pub opening_hours: String,
    pub description: String,
    pub status: Status,
    /// Metres from the `near` point; only with `near=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<u32>,
}

impl TryFrom<&partner::Model> for PartnerView {
    type Error = ApiError;

    fn try_from(p: &partner::Model) -> Result<Self, ApiError> {
        Ok(Self {
            id: p.id,
            name: p.name.clone(),
            category: stored("partners.category", &p.category, PartnerCategory::parse)?,
            district: stored("partners.district", &p.district, District::parse)?,
            address: p.address.clone(),
            lat: p.lat,
            lng: p.lng,
            phone: p.phone.clone(),
            opening_hours: p.opening_hours.clone(),
            description: p.description.clone(),
            status: stored("partners.status", &p.status, Status::parse)?,
            distance_m: None,
        })
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BenefitView {
    pub id: Uuid,
    pub partner_id: Uuid,
    #[schema(example = "就医绿色通道")]
    pub title: String,
    pub description: String,
    pub tiers: Vec<Tier>,
    /// Empty: every category.
    pub categories: Vec<Category>,
    /// Uses per period; `null` when unlimited.
    pub quota: Option<i32>,
    pub period: Period,
    pub valid_from: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    pub status: Status,
    pub offline_ok: bool,
}

impl TryFrom<&benefit::Model> for BenefitView {
    type Error = ApiError;

    fn try_from(b: &benefit::Model) -> Result<Self, ApiError> {
        Ok(Self {
            id: b.id,
            partner_id: b.partner_id,
            title: b.title.clone(),
            description: b.description.clone(),
            tiers: classification::tiers_from_db(&b.tiers)?,
            categories: classification::categories_from_db(&b.categories)?,
            quota: b.quota,
            period: stored("benefits.period", &b.period, Period::parse)?,
            valid_from: b.valid_from,
            valid_until: b.valid_until,
            status: stored("benefits.status", &b.status, Status::parse)?,
            offline_ok: b.offline_ok,
        })
    }
}

/// A change to a partner (`PATCH`): every field optional, those given are checked as on
/// creation. The handler of `POST` reads this type too; [`NewPartner`] documents which
/// fields creation requires (`catalog::service` checks them).
#[derive(Debug, Deserialize, ToSchema)]
pub struct PartnerInput {
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: Option<String>,
    pub category: Option<PartnerCategory>,
    pub district: Option<District>,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub address: Option<String>,
    #[schema(minimum = -90, maximum = 90)]
    pub lat: Option<f64>,
    #[schema(minimum = -180, maximum = 180)]
    pub lng: Option<f64>,
    #[schema(max_length = 32)]
    pub phone: Option<String>,
    #[schema(max_length = 100)]
    pub opening_hours: Option<String>,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    pub status: Option<Status>,
}

/// A new partner (`POST /admin/partners`): [`PartnerInput`] with the fields creation
/// requires. It documents the request; the handler reads [`PartnerInput`].
#[derive(ToSchema)]
#[expect(dead_code, reason = "documents the POST body; the handler reads PartnerInput")]
pub struct NewPartner {
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    name: String,
    category: PartnerCategory,
    district: District,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    address: String,
    #[schema(minimum = -90, maximum = 90)]
    lat: f64,
    #[schema(minimum = -180, maximum = 180)]
    lng: f64,
    #[schema(max_length = 32)]
    phone: Option<String>,
    #[schema(max_length = 100)]
    opening_hours: Option<String>,
    #[schema(max_length = 2000)]
    description: Option<String>,
    status: Option<Status>,
}

/// A change to a benefit (`PATCH`): every field optional; the benefit as changed must
/// still be valid. [`NewBenefit`] documents which fields creation requires.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BenefitInput {
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub title: Option<String>,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[schema(min_items = 1)]
    pub tiers: Option<Vec<Tier>>,
    pub categories: Option<Vec<Category>>,
    /// Uses per period, 1–10000: required unless `period` is `unlimited`, and not allowed with it.
    #[schema(minimum = 1, maximum = 10000)]
    pub quota: Option<i32>,
    pub period: Option<Period>,
    pub valid_from: Option<DateTime<Utc>>,
    /// After `valid_from`. In a `PATCH`, `null` removes the end (valid until further
    /// notice) and an absent field leaves it as it is.
    #[serde(default, deserialize_with = "crate::validate::present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub valid_until: Option<Option<DateTime<Utc>>>,
    pub status: Option<Status>,
    pub offline_ok: Option<bool>,
}

/// A new benefit (`POST /admin/partners/{id}/benefits`): [`BenefitInput`] with the fields
/// creation requires. It documents the request; the handler reads [`BenefitInput`].
#[derive(ToSchema)]
#[expect(dead_code, reason = "documents the POST body; the handler reads BenefitInput")]
pub struct NewBenefit {
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    title: String,
    #[schema(max_length = 2000)]
    description: Option<String>,
    #[schema(min_items = 1)]
    tiers: Vec<Tier>,
    /// Empty or absent: every category.
    categories: Option<Vec<Category>>,
    /// Uses per period, 1–10000: required unless `period` is `unlimited`, and not allowed with it.
    #[schema(minimum = 1, maximum = 10000)]
    quota: Option<i32>,
    period: Period,
    /// Default: now.
    valid_from: Option<DateTime<Utc>>,
    /// After `valid_from`.
    valid_until: Option<DateTime<Utc>>,
    status: Option<Status>,
    offline_ok: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PartnerQuery {
    pub category: Option<PartnerCategory>,
    pub district: Option<District>,
    /// Text in the name, address or description (at most 50 characters).
    #[param(max_length = 50)]
    pub q: Option<String>,
    /// Only partners with at least one active benefit for this tier.
    pub tier: Option<Tier>,
    /// `lat,lng`: sort by distance from this point and report `distance_m`.
    #[param(example = "32.99,112.53")]
    pub near: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BenefitQuery {
    pub tier: Option<Tier>,
    pub category: Option<Category>,
    pub partner_category: Option<PartnerCategory>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminPartnerQuery {
    pub status: Option<Status>,
    pub category: Option<PartnerCategory>,
    pub district: Option<District>,
}
