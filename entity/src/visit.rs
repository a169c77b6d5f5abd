use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "visits")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub card_id: Uuid,
    pub partner_id: Uuid,
    pub staff_id: Uuid,
    #[sea_orm(unique)]
    pub nonce: String,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    /// The client address the staff member acted from.
    pub ip: Option<String>,
    /// Keyed tag over what the row records (see the service's `audit::ledger`).
    pub tag: String,
}

impl ActiveModelBehavior for ActiveModel {}
