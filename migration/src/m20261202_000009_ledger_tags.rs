//! Redemptions and visits join the audit trail (SPEC §7) without taking the audit chain's
//! lock on the hot path: each row carries the client address and a keyed tag over what it
//! records, and the audit chain anchors digests of them in time windows later (see the
//! service's `audit::ledger`). Rows written before this migration keep an empty tag: the
//! first anchors, a minute after the service starts, cover them by their content.
//!
//! On PostgreSQL, `zhuge_abort` lets a single statement undo all it did and say why with a
//! SQLSTATE of our own (`ZH001`): the redemption statement uses it when the quota is spent.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Redemptions {
    Table,
    Ip,
    Tag,
    CreatedAt,
    Id,
}

#[derive(DeriveIden)]
enum Visits {
    Table,
    Ip,
    Tag,
    CreatedAt,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for col in [string_len_null(Redemptions::Ip, 64), string_len(Redemptions::Tag, 64).default("").to_owned()] {
            m.alter_table(Table::alter().table(Redemptions::Table).add_column(col).to_owned()).await?;
        }
        for col in [string_len_null(Visits::Ip, 64), string_len(Visits::Tag, 64).default("").to_owned()] {
            m.alter_table(Table::alter().table(Visits::Table).add_column(col).to_owned()).await?;
        }
        // Anchoring and verification read each source in (created_at, id) order.
        index(m, "idx_redemptions_created", Redemptions::Table, vec![Redemptions::CreatedAt.into_iden(), Redemptions::Id.into_iden()])
            .await?;
        index(m, "idx_visits_created_id", Visits::Table, vec![Visits::CreatedAt.into_iden(), Visits::Id.into_iden()]).await?;
        if m.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            m.get_connection()
                .execute_unprepared(
                    "CREATE OR REPLACE FUNCTION zhuge_abort(reason text) RETURNS boolean LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'ZH001', MESSAGE = reason; END $$",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            m.get_connection().execute_unprepared("DROP FUNCTION IF EXISTS zhuge_abort(text)").await?;
        }
        m.drop_index(Index::drop().name("idx_visits_created_id").table(Visits::Table).to_owned()).await?;
        m.drop_index(Index::drop().name("idx_redemptions_created").table(Redemptions::Table).to_owned()).await?;
        for col in [Visits::Tag, Visits::Ip] {
            m.alter_table(Table::alter().table(Visits::Table).drop_column(col).to_owned()).await?;
        }
        for col in [Redemptions::Tag, Redemptions::Ip] {
            m.alter_table(Table::alter().table(Redemptions::Table).drop_column(col).to_owned()).await?;
        }
        Ok(())
    }
}
