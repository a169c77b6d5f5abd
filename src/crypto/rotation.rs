//! Master-key rotation: re-encrypts every sealed column under the current master key and
//! recomputes the blind indexes that go with them.
//!
//! The operator first restarts every instance with the new key as `ZHUGE_MASTER_KEY` and
//! the old one in `ZHUGE_MASTER_KEYS_PREVIOUS`: from then on instances write under the new
//! key, and read, find (blind indexes under every key) and verify (access tokens) under
//! both. Then `zhuge-card rotate-master-key` walks each table in primary-key order, in
//! short transactions of `batch_size` rows, rewriting the rows whose ciphertext names an
//! earlier key. Each update is conditional on the old ciphertext still being there, so a
//! row that an instance changes meanwhile is left as the instance wrote it (under the new
//! key). A stopped run loses nothing: a later one skips what is already current. When it
//! reports nothing stale, the old key can leave `ZHUGE_MASTER_KEYS_PREVIOUS`.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, QueryResult, Value};
use uuid::Uuid;

use super::{CryptoError, Keyring};
use crate::db;

/// One encrypted column, and the blind index computed from its clear text, if any.
struct Sealed {
    column: &'static str,
    context: &'static str,
    binary: bool,
    /// (hash column, blind-index kind)
    index: Option<(&'static str, &'static str)>,
}

#[derive(Clone, Copy)]
enum IdKind {
    Uuid,
    Text,
}

struct Table {
    name: &'static str,
    id: &'static str,
    id_kind: IdKind,
    columns: &'static [Sealed],
}

const fn text(column: &'static str, context: &'static str, index: Option<(&'static str, &'static str)>) -> Sealed {
    Sealed { column, context, binary: false, index }
}

/// Every column that holds a ciphertext. A test checks that the database has no other
/// `*_enc` column.
const TABLES: &[Table] = &[
    Table {
        name: "users",
        id: "id",
        id_kind: IdKind::Uuid,
        columns: &[
            text("phone_enc", crate::auth::service::PHONE_CONTEXT, Some(("phone_hash", "phone"))),
            text("wechat_session_key_enc", crate::auth::service::SESSION_KEY_CONTEXT, None),
        ],
    },
    Table {
        name: "applications",
        id: "id",
        id_kind: IdKind::Uuid,
        columns: &[
            text("real_name_enc", crate::applications::service::NAME_CONTEXT, None),
            text("id_number_enc", crate::applications::service::ID_CONTEXT, Some(("id_hash", "id_number"))),
        ],
    },
    Table {
        name: "cards",
        id: "id",
        id_kind: IdKind::Uuid,
        columns: &[
            text("holder_name_enc", crate::cards::service::NAME_CONTEXT, Some(("name_hash", "name"))),
            text("id_number_enc", crate::cards::service::ID_CONTEXT, Some(("id_hash", "id_number"))),
        ],
    },
    Table {
        name: "documents",
        id: "id",
        id_kind: IdKind::Uuid,
        columns: &[
            text("filename_enc", crate::applications::documents::FILENAME_CONTEXT, None),
            Sealed { column: "content_enc", context: crate::applications::documents::CONTENT_CONTEXT, binary: true, index: None },
        ],
    },
    Table {
        name: "signing_keys",
        id: "kid",
        id_kind: IdKind::Text,
        columns: &[text("private_key_enc", crate::cards::keys::PRIVATE_CONTEXT, None)],
    },
];

/// The sealed columns, as `table.column` (for the test that no column is forgotten).
pub fn sealed_columns() -> Vec<String> {
    TABLES.iter().flat_map(|t| t.columns.iter().map(move |c| format!("{}.{}", t.name, c.column))).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("{table} row {id}, column {column}: {source} (is its key in ZHUGE_MASTER_KEYS_PREVIOUS?)")]
    Decrypt { table: &'static str, id: String, column: &'static str, source: CryptoError },
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct TableReport {
    pub table: &'static str,
    pub rows_rewritten: u64,
    /// Rows still under an earlier key when the run ended.
    pub rows_stale: u64,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    pub tables: Vec<TableReport>,
    pub batches: u64,
    /// Whether every table was walked to its end (false when `max_batches` stopped it).
    pub complete: bool,
}

impl Report {
    pub fn stale(&self) -> u64 {
        self.tables.iter().map(|t| t.rows_stale).sum()
    }

    pub fn rewritten(&self) -> u64 {
        self.tables.iter().map(|t| t.rows_rewritten).sum()
    }
}

/// A row's id, whichever type the table uses.
fn id_of(row: &QueryResult, table: &Table) -> Result<Value, DbErr> {
    Ok(match table.id_kind {
        IdKind::Uuid => Value::from(row.try_get::<Uuid>("", table.id)?),
        IdKind::Text => Value::from(row.try_get::<String>("", table.id)?),
    })
}

/// A sealed cell as read: text or bytes.
enum Cell {
    Text(String),
    Bytes(Vec<u8>),
}

impl Cell {
    fn read(row: &QueryResult, col: &Sealed) -> Result<Option<Cell>, DbErr> {
        Ok(if col.binary {
            row.try_get::<Option<Vec<u8>>>("", col.column)?.map(Cell::Bytes)
        } else {
            row.try_get::<Option<String>>("", col.column)?.map(Cell::Text)
        })
    }

    fn value(&self) -> Value {
        match self {
            Cell::Text(s) => Value::from(s.clone()),
            Cell::Bytes(b) => Value::from(b.clone()),
        }
    }
}

/// Rewrites what one row holds under an earlier key; `Ok(None)` when nothing is stale.
/// A column to set: its name, the value it must still hold (if it is a ciphertext), and its new value.
type Change = (&'static str, Option<Value>, Value);

fn rewrite(keyring: &Keyring, table: &Table, row: &QueryResult) -> Result<Option<Vec<Change>>, RotationError> {
    let id = || id_of(row, table).map(|v| v.to_string()).unwrap_or_default();
    let mut changes = Vec::new();
    for col in table.columns {
        let Some(cell) = Cell::read(row, col)? else { continue };
        let decrypt_err = |source| RotationError::Decrypt { table: table.name, id: id(), column: col.column, source };
        match &cell {
            Cell::Text(stored) if keyring.is_stale(stored) => {
                let clear = keyring.decrypt(col.context, stored).map_err(decrypt_err)?;
                changes.push((col.column, Some(cell.value()), Value::from(keyring.encrypt(col.context, &clear))));
                if let Some((hash_column, kind)) = col.index {
                    // No old value to compare: the hash changes with its ciphertext.
                    changes.push((hash_column, None, Value::from(keyring.blind_index(kind, &clear))));
                }
            }
            Cell::Bytes(stored) if keyring.is_stale_bytes(stored) => {
                let clear = keyring.decrypt_bytes(col.context, stored).map_err(decrypt_err)?;
                changes.push((col.column, Some(cell.value()), Value::from(keyring.encrypt_bytes(col.context, &clear))));
            }
            _ => {}
        }
    }
    Ok((!changes.is_empty()).then_some(changes))
}

/// The next `limit` rows of `table` after `after`, in primary-key order.
async fn next_batch(db: &DatabaseConnection, table: &Table, after: Option<&Value>, limit: u64) -> Result<Vec<QueryResult>, DbErr> {
    let mut select = Query::select();
    select.from(Alias::new(table.name)).column(Alias::new(table.id));
    for col in table.columns {
        select.column(Alias::new(col.column));
    }
    if let Some(last) = after {
        select.and_where(Expr::col(Alias::new(table.id)).gt(last.clone()));
    }
    select.order_by(Alias::new(table.id), Order::Asc).limit(limit);
    db.query_all_raw(db.get_database_backend().build(&select)).await
}

/// Walks every table once. `max_batches` stops early (the rest is left for a later run).
pub async fn rotate(
    db: &DatabaseConnection,
    keyring: &Keyring,
    batch_size: u64,
    max_batches: Option<u64>,
) -> Result<Report, RotationError> {
    let backend = db.get_database_backend();
    let mut report = Report { complete: true, ..Report::default() };
    for table in TABLES {
        let mut done = TableReport { table: table.name, ..TableReport::default() };
        let mut after: Option<Value> = None;
        while report.complete {
            if max_batches.is_some_and(|max| report.batches >= max) {
                report.complete = false;
                break;
            }
            let rows = next_batch(db, table, after.as_ref(), batch_size).await?;
            let Some(last) = rows.last() else { break };
            after = Some(id_of(last, table)?);
            report.batches += 1;

            let txn = db::begin_write(db).await?;
            for row in &rows {
                let Some(changes) = rewrite(keyring, table, row)? else { continue };
                let mut update = Query::update();
                update.table(Alias::new(table.name)).and_where(Expr::col(Alias::new(table.id)).eq(id_of(row, table)?));
                for (column, old, new) in changes {
                    update.value(Alias::new(column), new);
                    if let Some(old) = old {
                        // Only if no instance changed the row since it was read.
                        update.and_where(Expr::col(Alias::new(column)).eq(old));
                    }
                }
                done.rows_rewritten += txn.execute_raw(backend.build(&update)).await?.rows_affected();
            }
            txn.commit().await?;
        }
        done.rows_stale = count_stale(db, keyring, table, batch_size).await?;
        report.tables.push(done);
    }
    Ok(report)
}

/// Rows of `table` that still hold a ciphertext under an earlier key.
async fn count_stale(db: &DatabaseConnection, keyring: &Keyring, table: &Table, batch_size: u64) -> Result<u64, DbErr> {
    let (mut stale, mut after): (u64, Option<Value>) = (0, None);
    loop {
        let rows = next_batch(db, table, after.as_ref(), batch_size).await?;
        let Some(last) = rows.last() else { return Ok(stale) };
        after = Some(id_of(last, table)?);
        for row in &rows {
            let mut row_stale = false;
            for col in table.columns {
                row_stale |= match Cell::read(row, col)? {
                    Some(Cell::Text(s)) => keyring.is_stale(&s),
                    Some(Cell::Bytes(b)) => keyring.is_stale_bytes(&b),
                    None => false,
                };
            }
            stale += u64::from(row_stale);
        }
    }
}
