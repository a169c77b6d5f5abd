//! Admin card search by national ID number (its blind index). The unique index on
//! `id_hash` is partial (live cards only), so it cannot serve a search over every card.

use sea_orm_migration::prelude::*;

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Cards {
    Table,
    IdHash,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        index(m, "idx_cards_id_hash", Cards::Table, vec![Cards::IdHash.into_iden()]).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("idx_cards_id_hash").table(Cards::Table).to_owned()).await
    }
}
