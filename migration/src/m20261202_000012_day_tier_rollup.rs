//! A coarse statistics rollup (issue 15): completed redemptions by Beijing day and tier
//! only. A year of the city grouped by day or tier is at most 366 × 5 rows here, where the
//! fine rollup (`redemption_daily`, day × partner × benefit × tier) holds about 0.7 rows
//! per redemption.
//!
//! It has its own watermark (`redemptions_day_tier`), so instances of the previous version
//! that keep folding the fine rollup during a rolling upgrade cannot put the two out of
//! step. It starts as a copy of the fine rollup at the fine watermark, taken with that
//! watermark row locked (PostgreSQL runs a migration in one transaction; a fold locks the
//! same row), so the copy and its watermark agree.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RedemptionDayTier {
    Table,
    Day,
    Tier,
    Count,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RedemptionDayTier::Table)
                .col(string_len(RedemptionDayTier::Day, 10))
                .col(string_len(RedemptionDayTier::Tier, 1))
                .col(big_integer(RedemptionDayTier::Count))
                .primary_key(Index::create().col(RedemptionDayTier::Day).col(RedemptionDayTier::Tier))
                .to_owned(),
        )
        .await?;
        let conn = m.get_connection();
        let lock = if conn.get_database_backend() == sea_orm::DbBackend::Postgres { " FOR UPDATE" } else { "" };
        conn.execute_unprepared(&format!("SELECT folded_until FROM stats_watermarks WHERE name = 'redemptions'{lock}")).await?;
        conn.execute_unprepared(
            "INSERT INTO redemption_day_tier (day, tier, count) \
             SELECT day, tier, SUM(count) FROM redemption_daily GROUP BY day, tier HAVING SUM(count) <> 0",
        )
        .await?;
        conn.execute_unprepared(
            "INSERT INTO stats_watermarks (name, folded_until) \
             SELECT 'redemptions_day_tier', folded_until FROM stats_watermarks WHERE name = 'redemptions'",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection().execute_unprepared("DELETE FROM stats_watermarks WHERE name = 'redemptions_day_tier'").await?;
        m.drop_table(Table::drop().table(RedemptionDayTier::Table).to_owned()).await
    }
}
