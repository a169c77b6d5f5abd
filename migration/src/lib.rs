//! Database migrations, applied by `zhuge-card migrate` and at `serve` start. Every
//! migration runs on SQLite and PostgreSQL. Files are named `mYYYYMMDD_HHMMSS_what.rs`.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_identity;
mod m20261127_000002_catalogue;
mod m20261127_000003_cards;
mod m20261127_000004_redemption;
mod m20261129_000005_documents_in_database;
mod m20261129_000006_card_id_search;
mod m20261129_000007_state_checks;
mod m20261129_000008_login_failures;
mod m20261202_000009_ledger_tags;
mod m20261202_000010_statistics_rollup;
mod m20261202_000011_redemption_staff_index;
mod m20261202_000012_day_tier_rollup;
mod m20261203_000013_card_search_keyset;
mod m20261203_000014_partner_rollups;
mod m20261203_000015_covering_rollup_indexes;
mod m20261208_000016_partner_year_rollup;

pub use m20261129_000007_state_checks::STATE_CHECKS;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_identity::Migration),
            Box::new(m20261127_000002_catalogue::Migration),
            Box::new(m20261127_000003_cards::Migration),
            Box::new(m20261127_000004_redemption::Migration),
            Box::new(m20261129_000005_documents_in_database::Migration),
            Box::new(m20261129_000006_card_id_search::Migration),
            Box::new(m20261129_000007_state_checks::Migration),
            Box::new(m20261129_000008_login_failures::Migration),
            Box::new(m20261202_000009_ledger_tags::Migration),
            Box::new(m20261202_000010_statistics_rollup::Migration),
            Box::new(m20261202_000011_redemption_staff_index::Migration),
            Box::new(m20261202_000012_day_tier_rollup::Migration),
            Box::new(m20261203_000013_card_search_keyset::Migration),
            Box::new(m20261203_000014_partner_rollups::Migration),
            Box::new(m20261203_000015_covering_rollup_indexes::Migration),
            Box::new(m20261208_000016_partner_year_rollup::Migration),
        ]
    }
}

/// Creates a plain (non-unique) index; every migration's indexes go through here.
pub(crate) async fn index(m: &SchemaManager<'_>, name: &str, table: impl IntoIden, cols: Vec<DynIden>) -> Result<(), DbErr> {
    let mut stmt = Index::create();
    stmt.name(name).table(table);
    for c in cols {
        stmt.col(c);
    }
    m.create_index(stmt.to_owned()).await
}
