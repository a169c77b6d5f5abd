use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "applications")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub real_name_enc: String,
    #[sea_orm(column_type = "Text")]
    pub id_number_enc: String,
    /// Keyed hash of the ID number.
    pub id_hash: String,
    pub employer: String,
    pub category: String,
    pub claimed_tier: String,
    pub education: String,
    pub title: String,
    /// JSON array of document ids.
    #[sea_orm(column_type = "Text")]
    pub document_ids: String,
    pub status: String,
    pub reason: Option<String>,
    pub reviewer_id: Option<Uuid>,
    pub decided_at: Option<DateTimeUtc>,
    pub card_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
