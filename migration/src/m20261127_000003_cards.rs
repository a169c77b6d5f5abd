//! Applications, supporting documents, cards with their event history, card-number
//! sequences, and the outbox of notifications.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Documents {
    Table,
    Id,
    OwnerId,
    Filename,
    ContentType,
    Size,
    Sha256,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Applications {
    Table,
    Id,
    UserId,
    RealNameEnc,
    IdNumberEnc,
    IdHash,
    Employer,
    Category,
    ClaimedTier,
    Education,
    Title,
    DocumentIds,
    Status,
    Reason,
    ReviewerId,
    DecidedAt,
    CardId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Cards {
    Table,
    Id,
    CardNo,
    UserId,
    HolderNameEnc,
    HolderMasked,
    NameHash,
    IdNumberEnc,
    IdHash,
    Tier,
    Category,
    Status,
    ValidFrom,
    ValidUntil,
    StateVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CardEvents {
    Table,
    Id,
    CardId,
    Kind,
    ActorId,
    Reason,
    Details,
    CreatedAt,
}

#[derive(DeriveIden)]
enum CardSequences {
    Table,
    Year,
    Last,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    Kind,
    Payload,
    Status,
    Attempts,
    NextAttemptAt,
    LockedUntil,
    LastError,
    CreatedAt,
    SentAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let fk = |name: &str, from: (DynIden, DynIden), to: (DynIden, DynIden)| {
            ForeignKey::create().name(name).from(from.0, from.1).to(to.0, to.1).to_owned()
        };
        m.create_table(
            Table::create()
                .table(Documents::Table)
                .col(pk_uuid(Documents::Id))
                .col(uuid(Documents::OwnerId))
                .col(string_len(Documents::Filename, 200))
                .col(string_len(Documents::ContentType, 64))
                .col(big_integer(Documents::Size))
                .col(string_len(Documents::Sha256, 64))
                .col(timestamp_with_time_zone(Documents::CreatedAt))
                .foreign_key(&mut fk(
                    "fk_documents_owner",
                    (Documents::Table.into_iden(), Documents::OwnerId.into_iden()),
                    (Users::Table.into_iden(), Users::Id.into_iden()),
                ))
                .to_owned(),
        )
        .await?;
        index(m, "idx_documents_owner", Documents::Table, vec![Documents::OwnerId.into_iden(), Documents::Id.into_iden()]).await?;

        m.create_table(
            Table::create()
                .table(Cards::Table)
                .col(pk_uuid(Cards::Id))
                .col(string_len_uniq(Cards::CardNo, 16))
                .col(uuid(Cards::UserId))
                .col(text(Cards::HolderNameEnc))
                .col(string_len(Cards::HolderMasked, 64))
                .col(string_len(Cards::NameHash, 64))
                .col(text(Cards::IdNumberEnc))
                .col(string_len(Cards::IdHash, 64))
                .col(string_len(Cards::Tier, 1))
                .col(string_len(Cards::Category, 16))
                .col(string_len(Cards::Status, 16))
                .col(timestamp_with_time_zone(Cards::ValidFrom))
                .col(timestamp_with_time_zone(Cards::ValidUntil))
                .col(big_integer(Cards::StateVersion).default(0))
                .col(timestamp_with_time_zone(Cards::CreatedAt))
                .col(timestamp_with_time_zone(Cards::UpdatedAt))
                .foreign_key(&mut fk(
                    "fk_cards_user",
                    (Cards::Table.into_iden(), Cards::UserId.into_iden()),
                    (Users::Table.into_iden(), Users::Id.into_iden()),
                ))
                .to_owned(),
        )
        .await?;
        index(m, "idx_cards_status", Cards::Table, vec![Cards::Status.into_iden(), Cards::Id.into_iden()]).await?;
        index(m, "idx_cards_tier", Cards::Table, vec![Cards::Tier.into_iden(), Cards::Id.into_iden()]).await?;
        index(m, "idx_cards_name_hash", Cards::Table, vec![Cards::NameHash.into_iden()]).await?;
        index(m, "idx_cards_user", Cards::Table, vec![Cards::UserId.into_iden()]).await?;
        index(m, "idx_cards_state_version", Cards::Table, vec![Cards::StateVersion.into_iden()]).await?;

        m.create_table(
            Table::create()
                .table(Applications::Table)
                .col(pk_uuid(Applications::Id))
                .col(uuid(Applications::UserId))
                .col(text(Applications::RealNameEnc))
                .col(text(Applications::IdNumberEnc))
                .col(string_len(Applications::IdHash, 64))
                .col(string_len(Applications::Employer, 100))
                .col(string_len(Applications::Category, 16))
                .col(string_len(Applications::ClaimedTier, 1))
                .col(string_len(Applications::Education, 50))
                .col(string_len(Applications::Title, 50))
                .col(text(Applications::DocumentIds))
                .col(string_len(Applications::Status, 16))
                .col(string_len_null(Applications::Reason, 500))
                .col(uuid_null(Applications::ReviewerId))
                .col(timestamp_with_time_zone_null(Applications::DecidedAt))
                .col(uuid_null(Applications::CardId))
                .col(timestamp_with_time_zone(Applications::CreatedAt))
                .col(timestamp_with_time_zone(Applications::UpdatedAt))
                .foreign_key(&mut fk(
                    "fk_applications_user",
                    (Applications::Table.into_iden(), Applications::UserId.into_iden()),
                    (Users::Table.into_iden(), Users::Id.into_iden()),
                ))
                .to_owned(),
        )
        .await?;
        index(m, "idx_applications_user", Applications::Table, vec![Applications::UserId.into_iden(), Applications::Id.into_iden()])
            .await?;
        index(m, "idx_applications_status", Applications::Table, vec![Applications::Status.into_iden(), Applications::Id.into_iden()])
            .await?;
        index(m, "idx_applications_id_hash", Applications::Table, vec![Applications::IdHash.into_iden()]).await?;

        // The rules "one open application per talent" and "one card that is not revoked per
        // person" are partial unique indexes: the database enforces them under concurrency.
        let conn = m.get_connection();
        conn.execute_unprepared("CREATE UNIQUE INDEX uq_applications_open ON applications (user_id) WHERE status = 'submitted'").await?;
        conn.execute_unprepared("CREATE UNIQUE INDEX uq_cards_live_person ON cards (id_hash) WHERE status <> 'revoked'").await?;
        conn.execute_unprepared("CREATE UNIQUE INDEX uq_cards_live_user ON cards (user_id) WHERE status <> 'revoked'").await?;

        m.create_table(
            Table::create()
                .table(CardEvents::Table)
                .col(pk_uuid(CardEvents::Id))
                .col(uuid(CardEvents::CardId))
                .col(string_len(CardEvents::Kind, 32))
                .col(uuid_null(CardEvents::ActorId))
                .col(string_len(CardEvents::Reason, 500))
                .col(json_binary_null(CardEvents::Details))
                .col(timestamp_with_time_zone(CardEvents::CreatedAt))
                .foreign_key(&mut fk(
                    "fk_card_events_card",
                    (CardEvents::Table.into_iden(), CardEvents::CardId.into_iden()),
                    (Cards::Table.into_iden(), Cards::Id.into_iden()),
                ))
                .to_owned(),
        )
        .await?;
        index(m, "idx_card_events_card", CardEvents::Table, vec![CardEvents::CardId.into_iden(), CardEvents::Id.into_iden()]).await?;

        m.create_table(
            Table::create()
                .table(CardSequences::Table)
                .col(integer(CardSequences::Year).primary_key())
                .col(big_integer(CardSequences::Last))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Outbox::Table)
                .col(pk_uuid(Outbox::Id))
                .col(string_len(Outbox::Kind, 32))
                .col(json_binary(Outbox::Payload))
                .col(string_len(Outbox::Status, 16))
                .col(integer(Outbox::Attempts).default(0))
                .col(timestamp_with_time_zone(Outbox::NextAttemptAt))
                .col(timestamp_with_time_zone_null(Outbox::LockedUntil))
                .col(string_len_null(Outbox::LastError, 200))
                .col(timestamp_with_time_zone(Outbox::CreatedAt))
                .col(timestamp_with_time_zone_null(Outbox::SentAt))
                .to_owned(),
        )
        .await?;
        index(m, "idx_outbox_due", Outbox::Table, vec![Outbox::Status.into_iden(), Outbox::NextAttemptAt.into_iden()]).await?;
        Ok(())
    }
}
