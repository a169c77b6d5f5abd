use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "quota_counters")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub card_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub benefit_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub period_key: String,
    pub used: i32,
}

impl ActiveModelBehavior for ActiveModel {}
