//! Every stored state, tier, category, period and role accepts only the values the code
//! knows: CHECK constraints on PostgreSQL, and on SQLite (which cannot add a CHECK to an
//! existing table) triggers that abort the write. The allowed values are [`STATE_CHECKS`];
//! a test in the service crate pins them to the Rust enums, so the two cannot drift.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TIERS: &[&str] = &["A", "B", "C", "D", "E"];
const CATEGORIES: &[&str] = &["sci_tech", "enterprise", "youth", "skilled", "rural", "social", "civil"];
const ACTIVE_INACTIVE: &[&str] = &["active", "inactive"];

/// (table, column, allowed values).
pub const STATE_CHECKS: &[(&str, &str, &[&str])] = &[
    ("users", "role", &["talent", "merchant_staff", "merchant_manager", "reviewer", "operator", "super_admin"]),
    ("users", "status", &["active", "disabled"]),
    ("applications", "status", &["submitted", "approved", "rejected", "withdrawn"]),
    ("applications", "claimed_tier", TIERS),
    ("applications", "category", CATEGORIES),
    ("cards", "status", &["active", "suspended", "revoked"]),
    ("cards", "tier", TIERS),
    ("cards", "category", CATEGORIES),
    ("partners", "status", ACTIVE_INACTIVE),
    (
        "partners",
        "category",
        &[
            "hospital",
            "school",
            "apartment",
            "scenic",
            "transport",
            "finance",
            "culture",
            "sport",
            "elderly_care",
            "service_center",
            "other",
        ],
    ),
    (
        "partners",
        "district",
        &["宛城区", "卧龙区", "南召县", "方城县", "西峡县", "镇平县", "内乡县", "淅川县", "社旗县", "唐河县", "新野县", "桐柏县", "邓州市"],
    ),
    ("benefits", "status", ACTIVE_INACTIVE),
    ("benefits", "period", &["day", "week", "month", "quarter", "year", "lifetime", "unlimited"]),
    ("redemptions", "status", &["completed", "voided"]),
];

fn list(values: &[&str]) -> String {
    values.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let conn = m.get_connection();
        let postgres = m.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres;
        for (table, column, values) in STATE_CHECKS {
            let allowed = list(values);
            let name = format!("chk_{table}_{column}");
            if postgres {
                conn.execute_unprepared(&format!("ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({column} IN ({allowed}))")).await?;
            } else {
                for (when, of) in [("INSERT", String::new()), ("UPDATE", format!(" OF {column}"))] {
                    conn.execute_unprepared(&format!(
                        "CREATE TRIGGER {name}_{} BEFORE {when}{of} ON {table} WHEN NEW.{column} NOT IN ({allowed}) \
                         BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {name}'); END",
                        when.to_lowercase()
                    ))
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let conn = m.get_connection();
        let postgres = m.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres;
        for (table, column, _) in STATE_CHECKS {
            let name = format!("chk_{table}_{column}");
            if postgres {
                conn.execute_unprepared(&format!("ALTER TABLE {table} DROP CONSTRAINT {name}")).await?;
            } else {
                conn.execute_unprepared(&format!("DROP TRIGGER {name}_insert")).await?;
                conn.execute_unprepared(&format!("DROP TRIGGER {name}_update")).await?;
            }
        }
        Ok(())
    }
}
