//! A merchant's list of one staff member's redemptions ("today at this desk"):
//! `(partner_id, staff_id, created_at)` serves its filter, date range and newest-first
//! order; the partner's whole list uses `(partner_id, created_at)` of the migration before.

use sea_orm_migration::prelude::*;

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Redemptions {
    Table,
    PartnerId,
    StaffId,
    CreatedAt,
}

const NAME: &str = "idx_redemptions_partner_staff_created";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        index(
            m,
            NAME,
            Redemptions::Table,
            vec![Redemptions::PartnerId.into_iden(), Redemptions::StaffId.into_iden(), Redemptions::CreatedAt.into_iden()],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name(NAME).table(Redemptions::Table).to_owned()).await
    }
}
