use chrono::{DateTime, Utc};
use entity::user;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Role;

pub use crate::auth::account::AccountStatus;

/// An account as admins see it. No password hash, no WeChat data.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub id: Uuid,
    pub username: Option<String>,
    pub role: Role,
    #[schema(example = "active")]
    pub status: String,
    pub partner_id: Option<Uuid>,
    pub must_change_password: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<&user::Model> for AccountView {
    type Error = crate::error::ApiError;

    fn try_from(u: &user::Model) -> Result<Self, Self::Error> {
        Ok(Self {
            id: u.id,
            username: u.username.clone(),
            role: crate::error::stored("users.role", &u.role, Role::parse)?,
            status: u.status.clone(),
            partner_id: u.partner_id,
            must_change_password: u.must_change_password,
            created_at: u.created_at,
            updated_at: u.updated_at,
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateAccount {
    /// 3–64 characters: letters, digits, `.`, `_`, `-`; stored lower-case, surrounding spaces dropped.
    #[schema(example = "reviewer.wang", pattern = r"^\s*[A-Za-z0-9._-]{3,64}\s*$")]
    pub username: String,
    /// The initial password; the account must change it at first sign-in. 10–128 characters with
    /// at least two of letters, digits and symbols.
    #[schema(min_length = 10, max_length = 128)]
    pub password: String,
    pub role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateAccount {
    pub role: Option<Role>,
    pub status: Option<AccountStatus>,
}

/// `PATCH /admin/talents/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TalentStatusChange {
    pub status: AccountStatus,
    /// Why; recorded on the card's event and in the audit log.
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub reason: String,
}

#[derive(Deserialize, ToSchema)]
pub struct ResetPassword {
    /// A new initial password; the account must change it at next sign-in. 10–128 characters
    /// with at least two of letters, digits and symbols.
    #[schema(min_length = 10, max_length = 128)]
    pub password: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccountFilter {
    pub role: Option<Role>,
    pub status: Option<AccountStatus>,
}
