//! QR signing keys, visits opened by a verified scan, redemptions with their per-period
//! counters, and idempotency keys for redemption requests.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    PrivateKeyEnc,
    PublicKey,
    CreatedAt,
    RetiredAt,
}

#[derive(DeriveIden)]
enum Visits {
    Table,
    Id,
    CardId,
    PartnerId,
    StaffId,
    Nonce,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Redemptions {
    Table,
    Id,
    CardId,
    BenefitId,
    PartnerId,
    StaffId,
    VisitId,
    PeriodKey,
    Tier,
    Day,
    Status,
    CreatedAt,
    VoidedAt,
    VoidedBy,
    VoidReason,
}

#[derive(DeriveIden)]
enum QuotaCounters {
    Table,
    CardId,
    BenefitId,
    PeriodKey,
    Used,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    StaffId,
    Key,
    RequestHash,
    Status,
    ResponseStatus,
    ResponseBody,
    LockedUntil,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(SigningKeys::Table)
                .col(string_len(SigningKeys::Kid, 16).primary_key())
                .col(text(SigningKeys::PrivateKeyEnc))
                .col(string_len(SigningKeys::PublicKey, 64))
                .col(timestamp_with_time_zone(SigningKeys::CreatedAt))
                .col(timestamp_with_time_zone_null(SigningKeys::RetiredAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Visits::Table)
                .col(pk_uuid(Visits::Id))
                .col(uuid(Visits::CardId))
                .col(uuid(Visits::PartnerId))
                .col(uuid(Visits::StaffId))
                // The QR token's key id and nonce: unique, so a token opens one visit ever.
                .col(string_len_uniq(Visits::Nonce, 64))
                .col(timestamp_with_time_zone(Visits::CreatedAt))
                .col(timestamp_with_time_zone(Visits::ExpiresAt))
                .to_owned(),
        )
        .await?;
        index(m, "idx_visits_created", Visits::Table, vec![Visits::CreatedAt.into_iden()]).await?;

        m.create_table(
            Table::create()
                .table(Redemptions::Table)
                .col(pk_uuid(Redemptions::Id))
                .col(uuid(Redemptions::CardId))
                .col(uuid(Redemptions::BenefitId))
                .col(uuid(Redemptions::PartnerId))
                .col(uuid(Redemptions::StaffId))
                .col(uuid(Redemptions::VisitId))
                .col(string_len(Redemptions::PeriodKey, 16))
                // The card's tier then, and the Beijing date: what statistics group by.
                .col(string_len(Redemptions::Tier, 1))
                .col(string_len(Redemptions::Day, 10))
                .col(string_len(Redemptions::Status, 16))
                .col(timestamp_with_time_zone(Redemptions::CreatedAt))
                .col(timestamp_with_time_zone_null(Redemptions::VoidedAt))
                .col(uuid_null(Redemptions::VoidedBy))
                .col(string_len_null(Redemptions::VoidReason, 500))
                .to_owned(),
        )
        .await?;
        index(m, "idx_redemptions_card", Redemptions::Table, vec![Redemptions::CardId.into_iden(), Redemptions::Id.into_iden()]).await?;
        index(m, "idx_redemptions_partner", Redemptions::Table, vec![Redemptions::PartnerId.into_iden(), Redemptions::Id.into_iden()])
            .await?;
        index(
            m,
            "idx_redemptions_benefit",
            Redemptions::Table,
            vec![Redemptions::BenefitId.into_iden(), Redemptions::CreatedAt.into_iden()],
        )
        .await?;
        index(m, "idx_redemptions_day", Redemptions::Table, vec![Redemptions::Day.into_iden()]).await?;

        m.create_table(
            Table::create()
                .table(QuotaCounters::Table)
                .col(uuid(QuotaCounters::CardId))
                .col(uuid(QuotaCounters::BenefitId))
                .col(string_len(QuotaCounters::PeriodKey, 16))
                .col(integer(QuotaCounters::Used))
                .primary_key(Index::create().col(QuotaCounters::CardId).col(QuotaCounters::BenefitId).col(QuotaCounters::PeriodKey))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(IdempotencyKeys::Table)
                .col(uuid(IdempotencyKeys::StaffId))
                .col(string_len(IdempotencyKeys::Key, 255))
                .col(string_len(IdempotencyKeys::RequestHash, 64))
                .col(string_len(IdempotencyKeys::Status, 16))
                .col(integer_null(IdempotencyKeys::ResponseStatus))
                .col(text_null(IdempotencyKeys::ResponseBody))
                .col(timestamp_with_time_zone(IdempotencyKeys::LockedUntil))
                .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                .primary_key(Index::create().col(IdempotencyKeys::StaffId).col(IdempotencyKeys::Key))
                .to_owned(),
        )
        .await?;
        index(m, "idx_idempotency_created", IdempotencyKeys::Table, vec![IdempotencyKeys::CreatedAt.into_iden()]).await?;
        Ok(())
    }
}
