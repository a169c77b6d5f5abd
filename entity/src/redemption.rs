use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "redemptions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub card_id: Uuid,
    pub benefit_id: Uuid,
    pub partner_id: Uuid,
    pub staff_id: Uuid,
    pub visit_id: Uuid,
    pub period_key: String,
    /// The card's tier at redemption time.
    pub tier: String,
    /// The Beijing calendar date, `YYYY-MM-DD`.
    pub day: String,
    /// `completed` or `voided`.
    pub status: String,
    pub created_at: DateTimeUtc,
    pub voided_at: Option<DateTimeUtc>,
    pub voided_by: Option<Uuid>,
    pub void_reason: Option<String>,
    /// The client address the staff member acted from.
    pub ip: Option<String>,
    /// Keyed tag over what the row records (see the service's `audit::ledger`).
    pub tag: String,
}

impl ActiveModelBehavior for ActiveModel {}
