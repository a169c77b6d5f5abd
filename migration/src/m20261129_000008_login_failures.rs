//! Failed password sign-ins per account name and client address, in the database so that
//! losing the cache unlocks nothing. Replaces `users.failed_logins` and
//! `users.locked_until`, which locked an account for everyone (those columns stay, unused,
//! until a later migration drops them).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LoginFailures {
    Table,
    Username,
    Address,
    Failures,
    WindowStart,
    LockedUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(LoginFailures::Table)
                .col(string_len(LoginFailures::Username, 64))
                .col(string_len(LoginFailures::Address, 64))
                .col(integer(LoginFailures::Failures))
                .col(timestamp_with_time_zone(LoginFailures::WindowStart))
                .col(timestamp_with_time_zone_null(LoginFailures::LockedUntil))
                .primary_key(Index::create().col(LoginFailures::Username).col(LoginFailures::Address))
                .to_owned(),
        )
        .await?;
        // Housekeeping deletes old rows by the start of their window.
        index(m, "idx_login_failures_window", LoginFailures::Table, vec![LoginFailures::WindowStart.into_iden()]).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(LoginFailures::Table).to_owned()).await
    }
}
