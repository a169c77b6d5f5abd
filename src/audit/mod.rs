//! The append-only audit trail (SPEC §7). Every admin and merchant write records who did
//! what to which target, from where, with the state before and after.
//!
//! Two parts, one trail:
//! - **The chain** (`audit_log`): admin writes, voids, key rotations. Each entry's hash is
//!   an HMAC, under a key derived from the master key, over its content and the previous
//!   entry's hash. Someone who can write to the database but does not hold the key can
//!   neither edit an entry nor re-chain the log after one. Appends lock the one-row
//!   `audit_head`, which keeps the chain linear; these writes are rare.
//! - **The ledgers** ([`ledger`]): redemptions and verifications (visits), the hot path,
//!   take no lock. Each row carries a keyed tag of its own, and the chain anchors digests of
//!   the rows in time windows a minute later; see [`ledger`] for what that detects.
//!
//! [`verify`] walks the chain (streaming, resumable from a checkpoint), recomputes every
//! anchored window and checks the tags of rows not anchored yet.

pub mod ledger;
pub mod routes;

use chrono::{DateTime, SubsecRound, Utc};
use entity::{audit_head, audit_log};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::crypto::Keyring;

/// Who acted, from the request.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: Option<Uuid>,
    pub role: String,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

impl Actor {
    /// The command line, acting outside any request.
    pub fn cli() -> Self {
        Self { user_id: None, role: "cli".into(), ip: None, request_id: None }
    }

    /// The service itself (anchoring, upgrades).
    pub fn system() -> Self {
        Self { user_id: None, role: "system".into(), ip: None, request_id: None }
    }
}

/// What was done.
pub struct Change<'a> {
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// The link before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Domain of the chain's tags (the ledgers use others).
const ENTRY: &str = "audit-entry";

/// Appends one entry. Call inside the transaction that makes the change, so that the
/// change and its record commit together.
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    keys: &Keyring,
    actor: &Actor,
    change: Change<'_>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let head = lock_head(conn).await?;
    append(conn, keys, &head, actor, change, now).await?;
    Ok(())
}

/// Takes the head's write lock (a row lock on PostgreSQL, the database write lock on
/// SQLite), which serialises appends, and returns the head as it stands.
async fn lock_head<C: ConnectionTrait>(conn: &C) -> Result<audit_head::Model, DbErr> {
    audit_head::Entity::update_many()
        .col_expr(audit_head::Column::Seq, Expr::col(audit_head::Column::Seq))
        .filter(audit_head::Column::Id.eq(1))
        .exec(conn)
        .await?;
    audit_head::Entity::find_by_id(1).one(conn).await?.ok_or_else(|| DbErr::RecordNotFound("audit_head".into()))
}

/// Appends after `head` (whose lock the caller holds) and moves the head; returns the new head.
async fn append<C: ConnectionTrait>(
    conn: &C,
    keys: &Keyring,
    head: &audit_head::Model,
    actor: &Actor,
    change: Change<'_>,
    now: DateTime<Utc>,
) -> Result<audit_head::Model, DbErr> {
    let mut entry = audit_log::Model {
        seq: head.seq + 1,
        id: Uuid::now_v7(),
        actor_id: actor.user_id,
        actor_role: actor.role.clone(),
        action: change.action.to_owned(),
        target_type: change.target_type.to_owned(),
        target_id: change.target_id,
        before: change.before,
        after: change.after,
        ip: actor.ip.clone(),
        request_id: actor.request_id.clone(),
        // Stored to the microsecond on both backends; hash what is stored.
        created_at: now.trunc_subsecs(6),
        prev_hash: head.hash.clone(),
        hash: String::new(),
    };
    entry.hash = entry_tag(keys, &entry);
    let next = audit_head::Model { id: 1, seq: entry.seq, hash: entry.hash.clone() };
    audit_log::Entity::insert(audit_log::ActiveModel {
        seq: Set(entry.seq),
        id: Set(entry.id),
        actor_id: Set(entry.actor_id),
        actor_role: Set(entry.actor_role),
        action: Set(entry.action),
        target_type: Set(entry.target_type),
        target_id: Set(entry.target_id),
        before: Set(entry.before),
        after: Set(entry.after),
        ip: Set(entry.ip),
        request_id: Set(entry.request_id),
        created_at: Set(entry.created_at),
        prev_hash: Set(entry.prev_hash),
        hash: Set(entry.hash),
    })
    .exec_without_returning(conn)
    .await?;
    set_head(conn, &next).await?;
    Ok(next)
}

async fn set_head<C: ConnectionTrait>(conn: &C, head: &audit_head::Model) -> Result<(), DbErr> {
    audit_head::Entity::update_many()
        .col_expr(audit_head::Column::Seq, Expr::value(head.seq))
        .col_expr(audit_head::Column::Hash, Expr::value(head.hash.clone()))
        .filter(audit_head::Column::Id.eq(1))
        .exec(conn)
        .await?;
    Ok(())
}

/// An entry's fields in a fixed, canonical form; its link (`prev_hash`) first.
fn entry_fields(e: &audit_log::Model) -> [String; 13] {
    [
        e.prev_hash.clone(),
        e.seq.to_string(),
        e.id.to_string(),
        e.actor_id.map(|a| a.to_string()).unwrap_or_default(),
        e.actor_role.clone(),
        e.action.clone(),
        e.target_type.clone(),
        e.target_id.clone(),
        e.before.as_ref().map(canonical).unwrap_or_default(),
        e.after.as_ref().map(canonical).unwrap_or_default(),
        e.ip.clone().unwrap_or_default(),
        e.request_id.clone().unwrap_or_default(),
        e.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    ]
}

/// An entry's hash: the HMAC of its fields under the current master key's audit key.
pub fn entry_tag(keys: &Keyring, e: &audit_log::Model) -> String {
    let fields = entry_fields(e);
    keys.audit_tag(ENTRY, &fields.each_ref().map(String::as_str))
}

/// Whether an entry's hash is its tag under a key of the ring.
fn entry_tag_matches(keys: &Keyring, e: &audit_log::Model) -> bool {
    let fields = entry_fields(e);
    keys.audit_tag_matches(ENTRY, &fields.each_ref().map(String::as_str), &e.hash)
}

/// The unkeyed SHA-256 that chained entries before this release; read only to take such
/// a chain over (see [`upgrade`]).
fn legacy_hash(e: &audit_log::Model) -> String {
    let mut hasher = Sha256::new();
    for f in entry_fields(e) {
        hasher.update((f.len() as u64).to_be_bytes());
        hasher.update(f.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// JSON with object keys sorted, so that the hash does not depend on how a database
/// orders keys (PostgreSQL's jsonb reorders them).
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys.into_iter().map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k]))).collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// A point of the chain a verification reached: the next one may start from it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ChainReport {
    Intact {
        /// Chain entries checked.
        entries: u64,
        /// Ledger rows checked (anchored windows and the not yet anchored tail).
        rows: u64,
        /// Where this run stopped; pass it back to continue or to re-check from there.
        checkpoint: Checkpoint,
        /// False when the run stopped at its budget before the end of the chain.
        complete: bool,
    },
    Broken(Break),
}

/// The first thing found that does not match.
#[derive(Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Break {
    /// The chain entry at fault (for a ledger row: the anchor whose window it breaks).
    pub seq: Option<i64>,
    /// A ledger row at fault: `redemptions` or `visits`, and its id.
    pub source: Option<String>,
    pub row_id: Option<Uuid>,
    /// What did not match, in words.
    pub reason: String,
}

impl Break {
    fn entry(seq: i64, reason: impl Into<String>) -> Self {
        Self { seq: Some(seq), source: None, row_id: None, reason: reason.into() }
    }
}

/// How far one verification goes.
pub struct Scope {
    /// Start after this point instead of at the first entry (it is trusted as given).
    pub from: Option<Checkpoint>,
    /// Stop after this many chain entries (the report says where, to continue).
    pub max_entries: u64,
    /// How long visits are kept (`ZHUGE_VISIT_RETENTION_DAYS`): older windows of them are
    /// not recomputed.
    pub visit_retention: chrono::Duration,
}

impl Default for Scope {
    fn default() -> Self {
        Self { from: None, max_entries: u64::MAX, visit_retention: chrono::Duration::days(730) }
    }
}

/// Verifies the whole trail from the first entry. See [`verify`].
pub async fn verify_chain<C: ConnectionTrait>(conn: &C, keys: &Keyring, now: DateTime<Utc>) -> Result<ChainReport, DbErr> {
    verify(conn, keys, Scope::default(), now).await
}

/// Recomputes the chain in order, streaming it in batches: every link, every tag, and for
/// each anchor its window of ledger rows; then the tags of the ledger rows that no anchor
/// covers yet. Reports the first break.
pub async fn verify<C: ConnectionTrait>(conn: &C, keys: &Keyring, scope: Scope, now: DateTime<Utc>) -> Result<ChainReport, DbErr> {
    const BATCH: u64 = 1000;
    let (mut prev_hash, mut expected_seq) = match &scope.from {
        Some(c) => (c.hash.clone(), c.seq.saturating_add(1)),
        None => (GENESIS.to_owned(), 1),
    };
    let (mut entries, mut rows) = (0u64, 0u64);
    let mut complete = true;
    'chain: loop {
        let batch = audit_log::Entity::find()
            .filter(audit_log::Column::Seq.gte(expected_seq))
            .order_by_asc(audit_log::Column::Seq)
            .limit(BATCH)
            .all(conn)
            .await?;
        if batch.is_empty() {
            break;
        }
        let voided = ledger::voided_targets(conn, &batch).await?;
        for e in &batch {
            if entries >= scope.max_entries {
                complete = false;
                break 'chain;
            }
            if e.seq != expected_seq {
                return Ok(ChainReport::Broken(Break::entry(expected_seq, "entry missing")));
            }
            if e.prev_hash != prev_hash {
                return Ok(ChainReport::Broken(Break::entry(e.seq, "link to the previous entry does not match")));
            }
            if !entry_tag_matches(keys, e) {
                return Ok(ChainReport::Broken(Break::entry(e.seq, "entry does not match its keyed hash")));
            }
            match ledger::check_entry(conn, e, &voided, scope.visit_retention, now).await? {
                Ok(checked) => rows += checked,
                Err(problem) => return Ok(ChainReport::Broken(problem)),
            }
            prev_hash = e.hash.clone();
            expected_seq += 1;
            entries += 1;
        }
    }
    if complete {
        // A deleted tail shows as a head that is ahead of the last entry.
        let head = audit_head::Entity::find_by_id(1).one(conn).await?;
        if head.is_some_and(|h| h.seq != expected_seq - 1 || h.hash != prev_hash) {
            return Ok(ChainReport::Broken(Break::entry(expected_seq, "chain ends before its head")));
        }
        match ledger::check_tail(conn, keys).await? {
            Ok(checked) => rows += checked,
            Err(problem) => return Ok(ChainReport::Broken(problem)),
        }
    }
    Ok(ChainReport::Intact { entries, rows, checkpoint: Checkpoint { seq: expected_seq - 1, hash: prev_hash }, complete })
}

#[derive(Debug, thiserror::Error)]
pub enum RekeyError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("the audit chain is broken at entry {0}: not re-keying it (check it with GET /admin/audit-log/verify)")]
    Broken(i64),
}

/// Rewrites every chain entry's hash under the current key (and the ledger tags that no
/// anchor covers yet), after checking each under the key it was written with: under a key
/// of the ring, or, with `legacy`, the unkeyed SHA-256 of earlier releases. Holds the
/// head's lock throughout, in one transaction, so appends wait and a failure changes
/// nothing. Returns the number of entries rewritten.
pub async fn rekey<C: ConnectionTrait>(txn: &C, keys: &Keyring, legacy: bool) -> Result<u64, RekeyError> {
    const BATCH: u64 = 1000;
    let head = lock_head(txn).await?;
    let mut prev_old = GENESIS.to_owned();
    let mut prev_new = GENESIS.to_owned();
    let (mut next, mut rewritten) = (1i64, 0u64);
    loop {
        let batch = audit_log::Entity::find()
            .filter(audit_log::Column::Seq.gte(next))
            .filter(audit_log::Column::Seq.lte(head.seq))
            .order_by_asc(audit_log::Column::Seq)
            .limit(BATCH)
            .all(txn)
            .await?;
        if batch.is_empty() {
            break;
        }
        for mut e in batch {
            let genuine =
                e.seq == next && e.prev_hash == prev_old && (entry_tag_matches(keys, &e) || (legacy && legacy_hash(&e) == e.hash));
            if !genuine {
                return Err(RekeyError::Broken(next));
            }
            prev_old = e.hash.clone();
            e.prev_hash = prev_new;
            let tag = entry_tag(keys, &e);
            if tag != prev_old {
                audit_log::Entity::update_many()
                    .col_expr(audit_log::Column::PrevHash, Expr::value(e.prev_hash.clone()))
                    .col_expr(audit_log::Column::Hash, Expr::value(tag.clone()))
                    .filter(audit_log::Column::Seq.eq(e.seq))
                    .exec(txn)
                    .await?;
                rewritten += 1;
            }
            prev_new = tag;
            next += 1;
        }
    }
    if next - 1 != head.seq || prev_old != head.hash {
        return Err(RekeyError::Broken(next));
    }
    set_head(txn, &audit_head::Model { id: 1, seq: head.seq, hash: prev_new }).await?;
    ledger::retag_tail(txn, keys).await?;
    Ok(rewritten)
}

/// Takes over a chain written by an earlier release (unkeyed SHA-256) by re-keying it, if
/// it is intact; run at start. Does nothing for a keyed chain.
pub async fn upgrade(db: &sea_orm::DatabaseConnection, keys: &Keyring, now: DateTime<Utc>) -> anyhow::Result<()> {
    let last = audit_log::Entity::find().order_by_desc(audit_log::Column::Seq).one(db).await?;
    if let Some(last) = last
        && !entry_tag_matches(keys, &last)
        && legacy_hash(&last) == last.hash
    {
        let txn = crate::db::begin_write(db).await?;
        let rewritten = match rekey(&txn, keys, true).await {
            Ok(n) => n,
            // Left as found, for verification to report; the service still starts.
            Err(RekeyError::Broken(seq)) => {
                tracing::error!(seq, "the audit chain written before it was keyed is broken: not taking it over");
                return Ok(());
            }
            Err(RekeyError::Db(e)) => return Err(e.into()),
        };
        let change = Change {
            action: "audit.rekey",
            target_type: "audit_log",
            target_id: "chain".into(),
            before: Some(serde_json::json!({ "hash": "sha256" })),
            after: Some(serde_json::json!({ "hash": "hmac-sha256", "key": keys.current_kid(), "entries": rewritten })),
        };
        record(&txn, keys, &Actor::system(), change, now).await?;
        txn.commit().await?;
        tracing::info!(entries = rewritten, "audit chain taken over from unkeyed SHA-256 to keyed hashes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,2],"x":"s"}}"#).unwrap_or_default();
        let b: Value = serde_json::from_str(r#"{"a":{"x":"s","y":[1,2]},"b":1}"#).unwrap_or_default();
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(canonical(&a), r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
    }

    #[test]
    fn an_entry_tag_depends_on_the_key() {
        let e = audit_log::Model {
            seq: 1,
            id: Uuid::nil(),
            actor_id: None,
            actor_role: "cli".into(),
            action: "card.suspend".into(),
            target_type: "card".into(),
            target_id: "x".into(),
            before: None,
            after: None,
            ip: None,
            request_id: None,
            created_at: DateTime::UNIX_EPOCH,
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        let (k1, k2) = (Keyring::new("first master key for the test", &[]), Keyring::new("second master key for the test", &[]));
        let tagged = audit_log::Model { hash: entry_tag(&k1, &e), ..e.clone() };
        assert!(entry_tag_matches(&k1, &tagged));
        assert!(!entry_tag_matches(&k2, &tagged));
        assert_ne!(tagged.hash, legacy_hash(&e));
        let both = Keyring::new("second master key for the test", &["first master key for the test"]);
        assert!(entry_tag_matches(&both, &tagged));
    }
}
