use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Talent,
    MerchantStaff,
    MerchantManager,
    Reviewer,
    Operator,
    SuperAdmin,
}

impl Role {
    pub const ADMINS: [Role; 3] = [Role::Reviewer, Role::Operator, Role::SuperAdmin];
    pub const ALL: [Role; 6] = [Role::Talent, Role::MerchantStaff, Role::MerchantManager, Role::Reviewer, Role::Operator, Role::SuperAdmin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Talent => "talent",
            Role::MerchantStaff => "merchant_staff",
            Role::MerchantManager => "merchant_manager",
            Role::Reviewer => "reviewer",
            Role::Operator => "operator",
            Role::SuperAdmin => "super_admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn is_admin(self) -> bool {
        Self::ADMINS.contains(&self)
    }

    pub fn is_merchant(self) -> bool {
        matches!(self, Role::MerchantStaff | Role::MerchantManager)
    }

    /// How long a session of this role lives without signing in again.
    pub fn session_lifetime(self) -> chrono::Duration {
        match self {
            Role::Talent => chrono::Duration::days(30),
            Role::MerchantStaff | Role::MerchantManager => chrono::Duration::days(7),
            Role::Reviewer | Role::Operator | Role::SuperAdmin => chrono::Duration::hours(12),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
