//! What one verification reads and writes: the card, the visit that consumes the token's
//! nonce, and the card's quota counters at the partner. Verification is the hottest path in
//! the service (every scan at every desk). On PostgreSQL the scans waiting at one moment
//! are written together, in one statement and one commit (group commit, [`Scans`]);
//! SQLite, in process, takes three cheap steps per scan.
//!
//! The visit is opened only for a card that is active at `now`, the same rule as
//! [`CardStatus::of`]; `visits.nonce` is unique, so a token opens at most one visit on any
//! number of instances, and within one batch (the second row with a nonce is skipped by
//! `ON CONFLICT DO NOTHING` like any other conflict).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use entity::{benefit, card, quota_counter, visit};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, FromQueryResult, IntoActiveModel,
    QueryFilter, QuerySelect, QueryTrait, Statement,
};
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use crate::cards::dto::CardStatus;
use crate::db;
use crate::error::{ApiError, ErrorCode};

pub struct Scan {
    pub card: card::Model,
    /// Whether the visit was opened: `false` when the card is not active or the nonce was
    /// consumed before.
    pub opened: bool,
    /// Uses counted, by benefit and period key, for the partner's benefits.
    pub used: HashMap<(Uuid, String), i32>,
}

/// The most scans one statement writes.
const MAX_BATCH: usize = 64;
/// Statements one writer (one per HTTP worker) has in flight at once. While they run, the
/// scans that arrive wait and go together into the next one: under load batches grow by
/// themselves, and a lone scan is written at once. On the 2-core benchmark machine 2 gave
/// the most verifications and the lowest p99 of 1, 2, 3, 4 and 8 (bench/run.sh verify).
const IN_FLIGHT: usize = 2;

/// Runs scans on one pool (one per HTTP worker, beside its connections).
pub struct Scans {
    db: DatabaseConnection,
    /// The writer task, started in the runtime of the first scan.
    writer: OnceLock<mpsc::UnboundedSender<Job>>,
}

struct Job {
    visit: visit::Model,
    reply: oneshot::Sender<Result<Option<Scan>, ApiError>>,
}

impl Scans {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db, writer: OnceLock::new() }
    }

    /// Runs the scan; `None` when there is no such card.
    pub async fn run(&self, v: visit::Model) -> Result<Option<Scan>, ApiError> {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return step_by_step(&self.db, &v).await;
        }
        let (reply, answer) = oneshot::channel();
        let writer = self.writer.get_or_init(|| start_writer(self.db.clone()));
        if let Err(mpsc::error::SendError(job)) = writer.send(Job { visit: v, reply }) {
            // The writer's runtime is gone (only ever at shutdown): write this one alone.
            return Ok(in_one_statement(&self.db, &[&job.visit]).await?.remove(&job.visit.id));
        }
        // The writer task ends only with its runtime; a scan caught by that may or may not
        // have been written, and its token may be spent: the desk scans a fresh one.
        answer.await.unwrap_or_else(|_| Err(ApiError::new(ErrorCode::ServiceUnavailable).retry_after(1)))
    }
}

fn start_writer(db: DatabaseConnection) -> mpsc::UnboundedSender<Job> {
    let (queue, mut waiting) = mpsc::unbounded_channel::<Job>();
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let mut batch = Vec::with_capacity(MAX_BATCH);
            if waiting.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
            let db = db.clone();
            tokio::spawn(async move {
                write(&db, batch).await;
                drop(slot);
            });
        }
    });
    queue
}

/// Writes a batch and answers each scan. Every value in a batch is the service's own, so
/// a batch fails as a whole (the database is down, restarting or overloaded) and every
/// scan in it gets that answer; writing each again would only add load to a database that
/// is already failing.
async fn write(db: &DatabaseConnection, batch: Vec<Job>) {
    let visits: Vec<&visit::Model> = batch.iter().map(|job| &job.visit).collect();
    match in_one_statement(db, &visits).await {
        Ok(mut scans) => {
            for job in batch {
                drop(job.reply.send(Ok(scans.remove(&job.visit.id))));
            }
        }
        Err(e) => {
            let cause = format!("a batch of {} scans failed: {e}", batch.len());
            for job in batch {
                drop(job.reply.send(Err(ApiError::answering(&e).cause(anyhow::anyhow!(cause.clone())))));
            }
        }
    }
}

const SCAN_SQL: &str = r#"
WITH i AS (
    SELECT * FROM json_to_recordset($1::json) AS i(visit_id uuid, card_id uuid, partner_id uuid, staff_id uuid,
        nonce text, created_at timestamptz, expires_at timestamptz, ip text, tag text)
),
v AS (
    INSERT INTO visits (id, card_id, partner_id, staff_id, nonce, created_at, expires_at, ip, tag)
    SELECT i.visit_id, c.id, i.partner_id, i.staff_id, i.nonce, i.created_at, i.expires_at, i.ip, i.tag
      FROM i JOIN cards c ON c.id = i.card_id
     WHERE c.status = 'active' AND c.valid_until > i.created_at
    ON CONFLICT (nonce) DO NOTHING
    RETURNING id
)
SELECT i.visit_id, c.*,
    i.visit_id IN (SELECT id FROM v) AS opened,
    (SELECT coalesce(json_agg(json_build_array(q.benefit_id, q.period_key, q.used)), '[]'::json)
       FROM quota_counters q
      WHERE q.card_id = c.id AND q.benefit_id IN (SELECT b.id FROM benefits b WHERE b.partner_id = i.partner_id)) AS used
FROM i JOIN cards c ON c.id = i.card_id"#;

/// One row of the statement's input, borrowed from the visit it opens.
#[derive(serde::Serialize)]
struct Input<'a> {
    visit_id: Uuid,
    card_id: Uuid,
    partner_id: Uuid,
    staff_id: Uuid,
    nonce: &'a str,
    created_at: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
    ip: Option<&'a str>,
    tag: &'a str,
}

/// Writes the visits in one statement (one round trip, one commit); the scans by visit id,
/// without those whose card does not exist.
async fn in_one_statement(db: &DatabaseConnection, visits: &[&visit::Model]) -> Result<HashMap<Uuid, Scan>, sea_orm::DbErr> {
    let input: Vec<Input> = visits
        .iter()
        .map(|v| Input {
            visit_id: v.id,
            card_id: v.card_id,
            partner_id: v.partner_id,
            staff_id: v.staff_id,
            nonce: &v.nonce,
            created_at: v.created_at,
            expires_at: v.expires_at,
            ip: v.ip.as_deref(),
            tag: &v.tag,
        })
        .collect();
    let input = serde_json::to_string(&input).map_err(|e| sea_orm::DbErr::Custom(format!("scan input: {e}")))?;
    let rows = db.query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, SCAN_SQL, [input.into()])).await?;
    rows.iter()
        .map(|row| {
            let visit_id: Uuid = row.try_get("", "visit_id")?;
            let card = card::Model::from_query_result(row, "")?;
            let opened: bool = row.try_get("", "opened")?;
            let used: serde_json::Value = row.try_get("", "used")?;
            Ok((visit_id, Scan { card, opened, used: used_of(&used) }))
        })
        .collect()
}

fn used_of(used: &serde_json::Value) -> HashMap<(Uuid, String), i32> {
    used.as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let id = Uuid::parse_str(entry.get(0)?.as_str()?).ok()?;
            let key = entry.get(1)?.as_str()?.to_owned();
            let count = i32::try_from(entry.get(2)?.as_i64()?).ok()?;
            Some(((id, key), count))
        })
        .collect()
}

async fn step_by_step(db: &DatabaseConnection, v: &visit::Model) -> Result<Option<Scan>, ApiError> {
    let Some(card) = card::Entity::find_by_id(v.card_id).one(db).await? else {
        return Ok(None);
    };
    let opened = CardStatus::of(&card, v.created_at)? == CardStatus::Active
        && match v.clone().into_active_model().reset_all().insert(db).await {
            Ok(_) => true,
            Err(e) if db::is_unique_violation(&e) => false,
            Err(e) => return Err(e.into()),
        };
    let partner_benefits =
        benefit::Entity::find().select_only().column(benefit::Column::Id).filter(benefit::Column::PartnerId.eq(v.partner_id));
    let used = quota_counter::Entity::find()
        .filter(quota_counter::Column::CardId.eq(v.card_id))
        .filter(quota_counter::Column::BenefitId.in_subquery(partner_benefits.into_query()))
        .all(db)
        .await?
        .into_iter()
        .map(|c| ((c.benefit_id, c.period_key), c.used))
        .collect();
    Ok(Some(Scan { card, opened, used }))
}
