use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub role: String,
    pub status: String,
    #[sea_orm(unique)]
    pub username: Option<String>,
    pub password_hash: Option<String>,
    pub must_change_password: bool,
    pub partner_id: Option<Uuid>,
    #[sea_orm(unique)]
    pub wechat_openid: Option<String>,
    pub wechat_unionid: Option<String>,
    /// AEAD ciphertext; the WeChat session key never leaves the server.
    #[sea_orm(column_type = "Text", nullable)]
    pub wechat_session_key_enc: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub phone_enc: Option<String>,
    /// Keyed hash of the phone number, for lookups.
    pub phone_hash: Option<String>,
    pub failed_logins: i32,
    pub locked_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
