use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "documents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_id: Uuid,
    /// Only rows from before documents moved into the database: their clear filename,
    /// until `migrate` encrypts it into `filename_enc`. Empty otherwise.
    #[sea_orm(column_name = "filename")]
    pub legacy_filename: String,
    /// The client's filename, encrypted.
    pub filename_enc: Option<String>,
    /// The content, encrypted (`Keyring::encrypt_bytes`). `None` only for a row whose
    /// bytes an earlier version left on disk and `migrate` has not yet imported.
    pub content_enc: Option<Vec<u8>>,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
