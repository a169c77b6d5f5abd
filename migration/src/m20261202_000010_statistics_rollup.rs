//! Statistics from a rollup instead of scans of every redemption (issue 15).
//!
//! - `redemption_daily`: completed redemptions by Beijing day, partner, benefit and tier,
//!   folded in the background up to the watermark in `stats_watermarks` (never written by
//!   a redemption itself: one shared counter row per partner and day would serialise that
//!   partner's redemptions).
//! - Indexes for the parts not yet folded (`created_at`, voids by `voided_at`), and
//!   `(partner_id, created_at)` for a merchant's own figures. `(day)` served only the old
//!   full scan and goes: every index is paid for by every redemption.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RedemptionDaily {
    Table,
    Day,
    PartnerId,
    BenefitId,
    Tier,
    Count,
}

#[derive(DeriveIden)]
enum StatsWatermarks {
    Table,
    Name,
    FoldedUntil,
}

#[derive(DeriveIden)]
enum Redemptions {
    Table,
    PartnerId,
    CreatedAt,
    Day,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RedemptionDaily::Table)
                .col(string_len(RedemptionDaily::Day, 10))
                .col(uuid(RedemptionDaily::PartnerId))
                .col(uuid(RedemptionDaily::BenefitId))
                .col(string_len(RedemptionDaily::Tier, 1))
                .col(big_integer(RedemptionDaily::Count))
                .primary_key(
                    Index::create()
                        .col(RedemptionDaily::Day)
                        .col(RedemptionDaily::PartnerId)
                        .col(RedemptionDaily::BenefitId)
                        .col(RedemptionDaily::Tier),
                )
                .to_owned(),
        )
        .await?;
        index(
            m,
            "idx_redemption_daily_partner",
            RedemptionDaily::Table,
            vec![RedemptionDaily::PartnerId.into_iden(), RedemptionDaily::Day.into_iden()],
        )
        .await?;
        m.create_table(
            Table::create()
                .table(StatsWatermarks::Table)
                .col(string_len(StatsWatermarks::Name, 32).primary_key())
                .col(timestamp_with_time_zone(StatsWatermarks::FoldedUntil))
                .to_owned(),
        )
        .await?;
        index(
            m,
            "idx_redemptions_partner_created",
            Redemptions::Table,
            vec![Redemptions::PartnerId.into_iden(), Redemptions::CreatedAt.into_iden()],
        )
        .await?;
        // The fold's range scans by `created_at` use `idx_redemptions_created` (created_at, id)
        // of the ledger-tags migration before this one.
        let conn = m.get_connection();
        conn.execute_unprepared("CREATE INDEX idx_redemptions_voided ON redemptions (voided_at) WHERE voided_at IS NOT NULL").await?;
        m.drop_index(Index::drop().name("idx_redemptions_day").table(Redemptions::Table).to_owned()).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        index(m, "idx_redemptions_day", Redemptions::Table, vec![Redemptions::Day.into_iden()]).await?;
        for name in ["idx_redemptions_voided", "idx_redemptions_partner_created"] {
            m.drop_index(Index::drop().name(name).table(Redemptions::Table).to_owned()).await?;
        }
        m.drop_table(Table::drop().table(StatsWatermarks::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(RedemptionDaily::Table).to_owned()).await?;
        Ok(())
    }
}
