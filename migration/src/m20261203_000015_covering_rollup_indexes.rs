//! The partner rollups are read by index alone (issue 15). A year by partner reads a
//! stretch of partners' months from `redemption_partner_month` and a few days of every
//! partner from `redemption_partner_day`; with `count` in the index, PostgreSQL answers
//! both with index-only scans instead of visiting the table (at a tenth of the city, the
//! statement of a 500-partner page went from 7.2 to 3.4 ms). `(day, partner_id, count)`
//! replaces `(day, partner_id)`; `(partner_id, day, count)` stands beside the month
//! rollup's key, which `ON CONFLICT` needs.

use sea_orm_migration::prelude::*;

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Rollup {
    Day,
    PartnerId,
    Count,
}

const PARTNER_DAY: &str = "redemption_partner_day";
const PARTNER_MONTH: &str = "redemption_partner_month";
const OLD_DAY_INDEX: &str = "idx_redemption_partner_day_day";
const DAY_INDEX: &str = "idx_redemption_partner_day_covering";
const MONTH_INDEX: &str = "idx_redemption_partner_month_covering";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use Rollup::*;
        index(m, DAY_INDEX, Alias::new(PARTNER_DAY), vec![Day.into_iden(), PartnerId.into_iden(), Count.into_iden()]).await?;
        m.drop_index(Index::drop().name(OLD_DAY_INDEX).table(Alias::new(PARTNER_DAY)).to_owned()).await?;
        index(m, MONTH_INDEX, Alias::new(PARTNER_MONTH), vec![PartnerId.into_iden(), Day.into_iden(), Count.into_iden()]).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use Rollup::*;
        m.drop_index(Index::drop().name(MONTH_INDEX).table(Alias::new(PARTNER_MONTH)).to_owned()).await?;
        index(m, OLD_DAY_INDEX, Alias::new(PARTNER_DAY), vec![Day.into_iden(), PartnerId.into_iden()]).await?;
        m.drop_index(Index::drop().name(DAY_INDEX).table(Alias::new(PARTNER_DAY)).to_owned()).await
    }
}
