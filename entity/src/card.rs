use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cards")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub card_no: String,
    pub user_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub holder_name_enc: String,
    /// The holder's name as shown to others (`张*明`).
    pub holder_masked: String,
    pub name_hash: String,
    #[sea_orm(column_type = "Text")]
    pub id_number_enc: String,
    pub id_hash: String,
    pub tier: String,
    pub category: String,
    /// `active`, `suspended` or `revoked`; `expired` is derived from `valid_until`.
    pub status: String,
    pub valid_from: DateTimeUtc,
    pub valid_until: DateTimeUtc,
    /// Position in the feed of state changes offline merchant apps follow.
    pub state_version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
