//! Connecting to the database and applying the migrations.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend, DbErr};

use crate::config::Settings;

pub async fn connect(settings: &Settings) -> Result<DatabaseConnection, DbErr> {
    let url = settings.database_url();
    if url.starts_with("sqlite:") && settings.database_url.is_none() {
        std::fs::create_dir_all(&settings.data_dir)
            .map_err(|e| DbErr::Custom(format!("cannot create data dir {}: {e}", settings.data_dir.display())))?;
    }
    connect_url_with(&url, settings.db_max_connections, settings.statement_timeout()).await
}

/// The pool for expensive reports (see [`Settings::db_report_connections`]): on
/// PostgreSQL a separate small pool with its own statement timeout, opened lazily; on
/// SQLite, which has no statement timeout, `db` itself.
pub fn report_pool(settings: &Settings, db: &DatabaseConnection) -> DatabaseConnection {
    use sea_orm::sqlx::ConnectOptions as _;
    use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    if db.get_database_backend() != DbBackend::Postgres {
        return db.clone();
    }
    let Ok(options) = settings.database_url().parse::<PgConnectOptions>() else { return db.clone() };
    let options = with_session_settings(options.disable_statement_logging(), Some(settings.report_timeout()));
    let pool = PgPoolOptions::new()
        .max_connections(settings.db_report_connections.max(1))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .idle_timeout(IDLE_TIMEOUT)
        .connect_lazy_with(options);
    sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool)
}

/// PostgreSQL session settings that bound what one statement, or a transaction left open
/// between statements, can hold: the server cancels it, whatever the client is doing
/// (a client that went away included).
///
/// And no JIT compilation: the service's statements are short, but a plan over a
/// parameter the planner cannot see (a report's unfolded tail since a watermark) is
/// estimated high enough to be compiled, which at 2 million redemptions cost 27 ms of a
/// query that ran 26 ms, on every request.
fn with_session_settings(
    options: sea_orm::sqlx::postgres::PgConnectOptions,
    timeout: Option<Duration>,
) -> sea_orm::sqlx::postgres::PgConnectOptions {
    let options = options.options([("jit", "off")]);
    match timeout.filter(|t| !t.is_zero()) {
        Some(t) => {
            let ms = t.as_millis().to_string();
            // A transaction idle for longer than any statement may run is abandoned.
            let idle = (t.as_millis().saturating_mul(2)).max(1000).to_string();
            options.options([("statement_timeout", ms.as_str()), ("idle_in_transaction_session_timeout", idle.as_str())])
        }
        None => options,
    }
}

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A pool without statement timeout (migrations, tools).
pub async fn connect_url(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    connect_url_with(url, max_connections, None).await
}

/// A pool whose PostgreSQL statements are cancelled after `statement_timeout`.
pub async fn connect_url_with(url: &str, max_connections: u32, statement_timeout: Option<Duration>) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.connect_timeout(Duration::from_secs(5)).acquire_timeout(ACQUIRE_TIMEOUT).idle_timeout(IDLE_TIMEOUT).sqlx_logging(false);
    if url.starts_with("sqlite:") {
        // WAL lets readers proceed during a write; writers queue on the busy timeout.
        opts.max_connections(max_connections.clamp(1, 8)).map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    } else {
        opts.max_connections(max_connections)
            .min_connections(1)
            .map_sqlx_postgres_opts(move |o| with_session_settings(o, statement_timeout));
    }
    Database::connect(opts).await
}

/// PostgreSQL pools for one HTTP worker thread: `(regular, relaxed)`, or `None` on SQLite,
/// whose shared pool is used everywhere (its driver runs on threads of its own anyway).
///
/// actix runs a runtime per worker, and a pooled connection's socket belongs to the runtime
/// that opened it: with one shared pool most queries would be woken on another thread (two
/// context switches each). So each worker gets its own lazily filled pools.
///
/// The relaxed pool's commits do not wait for the WAL flush (`synchronous_commit=off`). It
/// is only for writes that matter only if a later ordinary commit follows them, such as an
/// idempotency claim before its redemption: PostgreSQL flushes the WAL in order, so that
/// later commit makes them durable too, and if the server dies before it, nothing a client
/// saw succeed is lost.
pub fn pools_for_this_thread(
    url: &str,
    max_connections: u32,
    statement_timeout: Option<Duration>,
) -> Option<(DatabaseConnection, DatabaseConnection)> {
    use sea_orm::sqlx::ConnectOptions as _;
    use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    let options = with_session_settings(url.parse::<PgConnectOptions>().ok()?.disable_statement_logging(), statement_timeout);
    let pool = |options: PgConnectOptions, size: u32| {
        let pool = PgPoolOptions::new()
            .max_connections(size.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(IDLE_TIMEOUT)
            .connect_lazy_with(options);
        sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool)
    };
    let relaxed = options.clone().options([("synchronous_commit", "off")]);
    Some((pool(options, max_connections), pool(relaxed, max_connections.div_ceil(2))))
}

/// Applies pending migrations, on PostgreSQL through a connection of their own without
/// the statement timeout (an index on a large table may take minutes to build).
pub async fn migrate_for(settings: &Settings, db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return migrate(db).await;
    }
    let own = connect_url(&settings.database_url(), 2).await?;
    let result = migrate(&own).await;
    drop(own.close().await);
    result
}

/// Applies pending migrations. On PostgreSQL an advisory lock makes instances that start
/// together (or a migration job racing a rollout) take turns.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Migrator::up(db, None).await;
    }
    // Advisory locks belong to a connection: hold one connection for the lock.
    let mut lock = db.get_postgres_connection_pool().acquire().await.map_err(|e| DbErr::Custom(format!("acquire: {e}")))?;
    const KEY: i64 = 0x7a68_7567_655f_6d67; // "zhuge_mg"
    sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(KEY)
        .execute(&mut *lock)
        .await
        .map_err(|e| DbErr::Custom(format!("lock: {e}")))?;
    let result = Migrator::up(db, None).await;
    let unlocked = sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)").bind(KEY).execute(&mut *lock).await;
    if let Err(e) = unlocked {
        // Closing the connection releases the lock.
        tracing::warn!(error = %e, "migration lock release failed; closing its connection");
        drop(lock.detach());
    }
    result
}

pub fn backend_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Postgres => "postgres",
        DbBackend::Sqlite => "sqlite",
        _ => "other",
    }
}

/// Begins a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`), so that concurrent writers queue instead of failing when a read
/// inside the transaction would have to be upgraded to a write.
pub async fn begin_write(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// Whether an error is a unique-constraint violation (on either backend).
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

/// The SQLSTATE of a database error, if the database reported one.
pub fn sqlstate(e: &DbErr) -> Option<String> {
    use sea_orm::{RuntimeErr, SqlxError};
    match e {
        DbErr::Conn(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match &**e {
                SqlxError::Database(db) => db.code().map(|c| c.into_owned()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether an error says the database is too busy rather than broken: no pooled connection
/// in time, or a statement cancelled by its timeout (SQLSTATE 57014).
pub fn is_overload(e: &DbErr) -> bool {
    use sea_orm::{ConnAcquireErr, RuntimeErr};
    match e {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => true,
        DbErr::Conn(RuntimeErr::SqlxError(x)) | DbErr::Exec(RuntimeErr::SqlxError(x)) | DbErr::Query(RuntimeErr::SqlxError(x))
            if matches!(x.as_ref(), sea_orm::sqlx::Error::PoolTimedOut) =>
        {
            true
        }
        _ => sqlstate(e).as_deref() == Some("57014"),
    }
}
