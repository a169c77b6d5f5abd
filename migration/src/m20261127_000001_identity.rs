//! Partners (merchant accounts belong to one), users, sessions with their refresh tokens,
//! and the hash-chained audit log.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Partners {
    Table,
    Id,
    Name,
    Category,
    District,
    Address,
    Lat,
    Lng,
    Phone,
    OpeningHours,
    Description,
    Status,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Role,
    Status,
    Username,
    PasswordHash,
    MustChangePassword,
    PartnerId,
    WechatOpenid,
    WechatUnionid,
    WechatSessionKeyEnc,
    PhoneEnc,
    PhoneHash,
    FailedLogins,
    LockedUntil,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    UserId,
    CreatedAt,
    ExpiresAt,
    RefreshedAt,
    RevokedAt,
    RevokeReason,
    Ip,
    UserAgent,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    TokenHash,
    SessionId,
    CreatedAt,
    RotatedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Seq,
    Id,
    ActorId,
    ActorRole,
    Action,
    TargetType,
    TargetId,
    Before,
    After,
    Ip,
    RequestId,
    CreatedAt,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditHead {
    Table,
    Id,
    Seq,
    Hash,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Partners::Table)
                .col(pk_uuid(Partners::Id))
                .col(string_len(Partners::Name, 100))
                .col(string_len(Partners::Category, 32))
                .col(string_len(Partners::District, 16))
                .col(string_len(Partners::Address, 200))
                .col(double(Partners::Lat))
                .col(double(Partners::Lng))
                .col(string_len(Partners::Phone, 32))
                .col(string_len(Partners::OpeningHours, 100))
                .col(text(Partners::Description))
                .col(string_len(Partners::Status, 16))
                .col(timestamp_with_time_zone(Partners::CreatedAt))
                .col(timestamp_with_time_zone(Partners::UpdatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Users::Table)
                .col(pk_uuid(Users::Id))
                .col(string_len(Users::Role, 32))
                .col(string_len(Users::Status, 16))
                .col(string_len_null(Users::Username, 64).unique_key())
                .col(string_null(Users::PasswordHash))
                .col(boolean(Users::MustChangePassword).default(false))
                .col(uuid_null(Users::PartnerId))
                .col(string_len_null(Users::WechatOpenid, 128).unique_key())
                .col(string_len_null(Users::WechatUnionid, 128))
                .col(text_null(Users::WechatSessionKeyEnc))
                .col(text_null(Users::PhoneEnc))
                .col(string_len_null(Users::PhoneHash, 64))
                .col(integer(Users::FailedLogins).default(0))
                .col(timestamp_with_time_zone_null(Users::LockedUntil))
                .col(timestamp_with_time_zone(Users::CreatedAt))
                .col(timestamp_with_time_zone(Users::UpdatedAt))
                .foreign_key(
                    ForeignKey::create().name("fk_users_partner").from(Users::Table, Users::PartnerId).to(Partners::Table, Partners::Id),
                )
                .to_owned(),
        )
        .await?;
        index(m, "idx_users_partner", Users::Table, vec![Users::PartnerId.into_iden(), Users::Id.into_iden()]).await?;
        index(m, "idx_users_role", Users::Table, vec![Users::Role.into_iden(), Users::Id.into_iden()]).await?;
        index(m, "idx_users_phone_hash", Users::Table, vec![Users::PhoneHash.into_iden()]).await?;
        index(m, "idx_users_unionid", Users::Table, vec![Users::WechatUnionid.into_iden()]).await?;

        m.create_table(
            Table::create()
                .table(Sessions::Table)
                .col(pk_uuid(Sessions::Id))
                .col(uuid(Sessions::UserId))
                .col(timestamp_with_time_zone(Sessions::CreatedAt))
                .col(timestamp_with_time_zone(Sessions::ExpiresAt))
                .col(timestamp_with_time_zone(Sessions::RefreshedAt))
                .col(timestamp_with_time_zone_null(Sessions::RevokedAt))
                .col(string_len_null(Sessions::RevokeReason, 64))
                .col(string_len_null(Sessions::Ip, 64))
                .col(string_len_null(Sessions::UserAgent, 256))
                .foreign_key(
                    ForeignKey::create().name("fk_sessions_user").from(Sessions::Table, Sessions::UserId).to(Users::Table, Users::Id),
                )
                .to_owned(),
        )
        .await?;
        index(m, "idx_sessions_user", Sessions::Table, vec![Sessions::UserId.into_iden()]).await?;

        m.create_table(
            Table::create()
                .table(RefreshTokens::Table)
                .col(string_len(RefreshTokens::TokenHash, 64).primary_key())
                .col(uuid(RefreshTokens::SessionId))
                .col(timestamp_with_time_zone(RefreshTokens::CreatedAt))
                .col(timestamp_with_time_zone_null(RefreshTokens::RotatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_refresh_tokens_session")
                        .from(RefreshTokens::Table, RefreshTokens::SessionId)
                        .to(Sessions::Table, Sessions::Id),
                )
                .to_owned(),
        )
        .await?;
        index(m, "idx_refresh_tokens_session", RefreshTokens::Table, vec![RefreshTokens::SessionId.into_iden()]).await?;

        m.create_table(
            Table::create()
                .table(AuditLog::Table)
                .col(big_integer(AuditLog::Seq).primary_key())
                .col(uuid_uniq(AuditLog::Id))
                .col(uuid_null(AuditLog::ActorId))
                .col(string_len(AuditLog::ActorRole, 32))
                .col(string_len(AuditLog::Action, 64))
                .col(string_len(AuditLog::TargetType, 32))
                .col(string_len(AuditLog::TargetId, 64))
                .col(json_binary_null(AuditLog::Before))
                .col(json_binary_null(AuditLog::After))
                .col(string_len_null(AuditLog::Ip, 64))
                .col(string_len_null(AuditLog::RequestId, 64))
                .col(timestamp_with_time_zone(AuditLog::CreatedAt))
                .col(string_len(AuditLog::PrevHash, 64))
                .col(string_len(AuditLog::Hash, 64))
                .to_owned(),
        )
        .await?;
        index(
            m,
            "idx_audit_target",
            AuditLog::Table,
            vec![AuditLog::TargetType.into_iden(), AuditLog::TargetId.into_iden(), AuditLog::Seq.into_iden()],
        )
        .await?;
        index(m, "idx_audit_actor", AuditLog::Table, vec![AuditLog::ActorId.into_iden(), AuditLog::Seq.into_iden()]).await?;
        index(m, "idx_audit_action", AuditLog::Table, vec![AuditLog::Action.into_iden(), AuditLog::Seq.into_iden()]).await?;

        // One row: the chain's head. Writers lock it, which serialises appends.
        m.create_table(
            Table::create()
                .table(AuditHead::Table)
                .col(integer(AuditHead::Id).primary_key())
                .col(big_integer(AuditHead::Seq))
                .col(string_len(AuditHead::Hash, 64))
                .to_owned(),
        )
        .await?;
        m.exec_stmt(
            Query::insert()
                .into_table(AuditHead::Table)
                .columns([AuditHead::Id, AuditHead::Seq, AuditHead::Hash])
                .values_panic([1.into(), 0i64.into(), "0".repeat(64).into()])
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
