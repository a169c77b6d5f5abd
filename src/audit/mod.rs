//! The append-only, hash-chained audit log (SPEC §7). Every admin and merchant write
//! records who did what to which target, from where, with the state before and after.
//!
//! Each entry's hash covers its content and the previous entry's hash, so editing or
//! deleting any row breaks the chain from there on; [`verify_chain`] finds the break.
//! Appends lock the one-row `audit_head` table first, which serialises them on both
//! backends and keeps the chain linear under concurrent writers.

pub mod routes;

use chrono::{DateTime, SubsecRound, Utc};
use entity::{audit_head, audit_log};
use sea_orm::ExprTrait;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

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
}

/// What was done.
pub struct Change<'a> {
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Appends one entry. Call inside the transaction that makes the change, so that the
/// change and its record commit together.
pub async fn record<C: ConnectionTrait>(conn: &C, actor: &Actor, change: Change<'_>, now: DateTime<Utc>) -> Result<(), DbErr> {
    // Taking the head's write lock first serialises appends (a row lock on PostgreSQL,
    // the database write lock on SQLite).
    audit_head::Entity::update_many()
        .col_expr(audit_head::Column::Seq, Expr::col(audit_head::Column::Seq).add(1))
        .filter(audit_head::Column::Id.eq(1))
        .exec(conn)
        .await?;
    let head = audit_head::Entity::find_by_id(1).one(conn).await?.ok_or_else(|| DbErr::RecordNotFound("audit_head".into()))?;
    let entry = audit_log::Model {
        seq: head.seq,
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
        prev_hash: head.hash,
        hash: String::new(),
    };
    let hash = entry_hash(&entry);
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
        hash: Set(hash.clone()),
    })
    .exec_without_returning(conn)
    .await?;
    audit_head::Entity::update_many()
        .col_expr(audit_head::Column::Hash, Expr::value(hash))
        .filter(audit_head::Column::Id.eq(1))
        .exec(conn)
        .await?;
    Ok(())
}

/// The hash of an entry: SHA-256 over its fields in a fixed, canonical form.
pub fn entry_hash(e: &audit_log::Model) -> String {
    let fields = [
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
    ];
    let mut hasher = Sha256::new();
    for f in fields {
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

#[derive(Debug, PartialEq, Eq)]
pub enum ChainReport {
    Intact {
        entries: u64,
    },
    /// The first entry whose hash or link does not match.
    Broken {
        seq: i64,
    },
}

/// Recomputes the chain from the start.
pub async fn verify_chain<C: ConnectionTrait>(conn: &C) -> Result<ChainReport, DbErr> {
    const BATCH: u64 = 1000;
    let mut prev_hash = "0".repeat(64);
    let mut expected_seq = 1i64;
    let mut entries = 0u64;
    loop {
        let batch = audit_log::Entity::find()
            .filter(audit_log::Column::Seq.gte(expected_seq))
            .order_by_asc(audit_log::Column::Seq)
            .limit(BATCH)
            .all(conn)
            .await?;
        if batch.is_empty() {
            break;
        }
        for e in &batch {
            if e.seq != expected_seq || e.prev_hash != prev_hash || entry_hash(e) != e.hash {
                return Ok(ChainReport::Broken { seq: expected_seq });
            }
            prev_hash = e.hash.clone();
            expected_seq += 1;
            entries += 1;
        }
    }
    // A deleted tail shows as a head that is ahead of the last entry.
    let head = audit_head::Entity::find_by_id(1).one(conn).await?;
    if head.is_some_and(|h| h.seq != expected_seq - 1 || h.hash != prev_hash) {
        return Ok(ChainReport::Broken { seq: expected_seq });
    }
    Ok(ChainReport::Intact { entries })
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
}
