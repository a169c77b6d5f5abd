//! Benefits, and the indexes the public catalogue and admin lists read partners through.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Partners {
    Table,
    Id,
    Status,
    Category,
    District,
}

#[derive(DeriveIden)]
enum Benefits {
    Table,
    Id,
    PartnerId,
    Title,
    Description,
    Tiers,
    Categories,
    Quota,
    Period,
    ValidFrom,
    ValidUntil,
    Status,
    OfflineOk,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Benefits::Table)
                .col(pk_uuid(Benefits::Id))
                .col(uuid(Benefits::PartnerId))
                .col(string_len(Benefits::Title, 100))
                .col(text(Benefits::Description))
                // Tier letters in order ("ABE") and comma-separated categories ("" = all).
                .col(string_len(Benefits::Tiers, 8))
                .col(string_len(Benefits::Categories, 128))
                .col(integer_null(Benefits::Quota))
                .col(string_len(Benefits::Period, 16))
                .col(timestamp_with_time_zone(Benefits::ValidFrom))
                .col(timestamp_with_time_zone_null(Benefits::ValidUntil))
                .col(string_len(Benefits::Status, 16))
                .col(boolean(Benefits::OfflineOk))
                .col(timestamp_with_time_zone(Benefits::CreatedAt))
                .col(timestamp_with_time_zone(Benefits::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_benefits_partner")
                        .from(Benefits::Table, Benefits::PartnerId)
                        .to(Partners::Table, Partners::Id),
                )
                .to_owned(),
        )
        .await?;
        index(
            m,
            "idx_benefits_partner",
            Benefits::Table,
            vec![Benefits::PartnerId.into_iden(), Benefits::Status.into_iden(), Benefits::Id.into_iden()],
        )
        .await?;
        index(m, "idx_benefits_status", Benefits::Table, vec![Benefits::Status.into_iden(), Benefits::Id.into_iden()]).await?;
        index(m, "idx_partners_status", Partners::Table, vec![Partners::Status.into_iden(), Partners::Id.into_iden()]).await?;
        index(
            m,
            "idx_partners_category",
            Partners::Table,
            vec![Partners::Status.into_iden(), Partners::Category.into_iden(), Partners::Id.into_iden()],
        )
        .await?;
        index(
            m,
            "idx_partners_district",
            Partners::Table,
            vec![Partners::Status.into_iden(), Partners::District.into_iden(), Partners::Id.into_iden()],
        )
        .await?;
        Ok(())
    }
}
