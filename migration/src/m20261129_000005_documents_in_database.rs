//! Uploaded documents move into the database, encrypted: their content (`content_enc`)
//! and the client's filename (`filename_enc`), which often holds a name or an ID number.
//! Both are nullable only for rows an earlier version wrote, whose bytes sit on the
//! instance's disk until `zhuge-card migrate` imports them (it needs the master key, which
//! a migration does not have); `filename` keeps only those rows' old clear name, and is
//! emptied by the import.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Documents {
    Table,
    ContentEnc,
    FilenameEnc,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE.
        m.alter_table(Table::alter().table(Documents::Table).add_column(blob_null(Documents::ContentEnc)).to_owned()).await?;
        m.alter_table(Table::alter().table(Documents::Table).add_column(text_null(Documents::FilenameEnc)).to_owned()).await?;
        // `serve` looks for rows still to import at every start: only those, not the table.
        m.get_connection()
            .execute_unprepared("CREATE INDEX idx_documents_not_imported ON documents (id) WHERE content_enc IS NULL")
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection().execute_unprepared("DROP INDEX idx_documents_not_imported").await?;
        m.alter_table(Table::alter().table(Documents::Table).drop_column(Documents::FilenameEnc).to_owned()).await?;
        m.alter_table(Table::alter().table(Documents::Table).drop_column(Documents::ContentEnc).to_owned()).await
    }
}
