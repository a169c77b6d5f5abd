//! Admin card search by name or ID number pages by card id (keyset). With an index on the
//! blind index alone, PostgreSQL had to fetch every card of a common name and sort them
//! before the first page (a name like 王伟 is hundreds of cards at a tenth of the city);
//! `(name_hash, id)` and `(id_hash, id)` hand over a page in order.

use sea_orm_migration::prelude::*;

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Cards {
    Table,
    Id,
    NameHash,
    IdHash,
}

/// (old index, new index, blind index column)
const INDEXES: [(&str, &str, Cards); 2] =
    [("idx_cards_name_hash", "idx_cards_name_hash_id", Cards::NameHash), ("idx_cards_id_hash", "idx_cards_id_hash_id", Cards::IdHash)];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (old, new, column) in INDEXES {
            index(m, new, Cards::Table, vec![column.into_iden(), Cards::Id.into_iden()]).await?;
            m.drop_index(Index::drop().name(old).table(Cards::Table).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (old, new, column) in INDEXES {
            index(m, old, Cards::Table, vec![column.into_iden()]).await?;
            m.drop_index(Index::drop().name(new).table(Cards::Table).to_owned()).await?;
        }
        Ok(())
    }
}
