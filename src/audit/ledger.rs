//! Redemptions and verifications in the audit trail, with no lock on the hot path.
//!
//! A redemption or a visit (a verification: a card shown to a partner) is its own audit
//! record: who (staff), where (partner), whom (card), what (benefit), when, and from which
//! address. Two things protect those rows:
//! - **a tag** written with the row: an HMAC, under the master key's audit key, of the
//!   fields the row records (not its later state: a void is a chain entry of its own, and a
//!   visit's expiry may be cut short when its partner is deactivated). A row inserted or
//!   edited by someone without the key does not match its tag.
//! - **anchors**: a minute after rows are written ([`DELAY`]), an `audit.anchor` chain entry
//!   records how many rows each time window holds and a SHA-256 digest of them all. A
//!   deleted, inserted or edited row then changes its window, which the keyed chain pins.
//!
//! Verification recomputes every anchored window and checks the tags of the rows written
//! since the last anchor. A row deleted within [`DELAY`] of being written, before any
//! anchor covers it, is the one change this cannot see.
//!
//! Visits are deleted after their retention (`ZHUGE_VISIT_RETENTION_DAYS`) by housekeeping:
//! windows older than that are no longer recomputed (their anchors stay, as a record of how
//! many there were).

use std::collections::HashSet;
use std::convert::Infallible;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use entity::{audit_log, redemption, visit};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Actor, Break, Change};
use crate::crypto::Keyring;
use crate::db;

/// How long after its rows are written a window is anchored: longer than any transaction
/// that writes them can take (statements are bounded by the pool's and the database's
/// timeouts), so that no row commits into a window already anchored.
pub const DELAY: Duration = Duration::seconds(60);
/// The most rows one anchor covers; a larger backlog is anchored in several windows.
const MAX_WINDOW_ROWS: u64 = 50_000;
const BATCH: u64 = 1000;
const ANCHOR: &str = "audit.anchor";
const VOID: &str = "redemption.void";

/// A ledger of the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Redemptions,
    Visits,
}

impl Source {
    pub const ALL: [Source; 2] = [Source::Redemptions, Source::Visits];

    pub fn name(self) -> &'static str {
        match self {
            Source::Redemptions => "redemptions",
            Source::Visits => "visits",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    fn domain(self) -> &'static str {
        match self {
            Source::Redemptions => "redemption",
            Source::Visits => "visit",
        }
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// What a redemption records, canonical: everything but its later void.
fn redemption_fields(r: &redemption::Model) -> Vec<String> {
    vec![
        r.id.to_string(),
        r.card_id.to_string(),
        r.benefit_id.to_string(),
        r.partner_id.to_string(),
        r.staff_id.to_string(),
        r.visit_id.to_string(),
        r.period_key.clone(),
        r.tier.clone(),
        r.day.clone(),
        time(r.created_at),
        r.ip.clone().unwrap_or_default(),
    ]
}

/// What a visit records, canonical: who showed which card to whom, when and from where.
fn visit_fields(v: &visit::Model) -> Vec<String> {
    vec![
        v.id.to_string(),
        v.card_id.to_string(),
        v.partner_id.to_string(),
        v.staff_id.to_string(),
        v.nonce.clone(),
        time(v.created_at),
        v.ip.clone().unwrap_or_default(),
    ]
}

fn tag_of(keys: &Keyring, source: Source, fields: &[String]) -> String {
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    keys.audit_tag(source.domain(), &fields)
}

/// The tag a new redemption row is written with (its `created_at` to the microsecond).
pub fn redemption_tag(keys: &Keyring, r: &redemption::Model) -> String {
    tag_of(keys, Source::Redemptions, &redemption_fields(r))
}

/// The tag a new visit row is written with (its `created_at` to the microsecond).
pub fn visit_tag(keys: &Keyring, v: &visit::Model) -> String {
    tag_of(keys, Source::Visits, &visit_fields(v))
}

/// One ledger row as the trail sees it.
struct Row {
    id: Uuid,
    created_at: DateTime<Utc>,
    fields: Vec<String>,
    tag: String,
    voided: bool,
}

/// `from ≤ created_at < until`, after `after`, in (created_at, id) order: a window of
/// either ledger, read through the index on (created_at, id).
fn in_window<E: EntityTrait>(
    created: E::Column,
    id: E::Column,
    from: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    after: Option<(DateTime<Utc>, Uuid)>,
) -> Select<E> {
    let mut q = E::find().filter(created.gte(from));
    if let Some(until) = until {
        q = q.filter(created.lt(until));
    }
    if let Some((t, last)) = after {
        q = q.filter(Condition::any().add(created.gt(t)).add(Condition::all().add(created.eq(t)).add(id.gt(last))));
    }
    q.order_by_asc(created).order_by_asc(id)
}

/// The next batch of a window's rows.
async fn rows<C: ConnectionTrait>(
    conn: &C,
    source: Source,
    from: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    after: Option<(DateTime<Utc>, Uuid)>,
) -> Result<Vec<Row>, DbErr> {
    use {redemption::Column as R, visit::Column as V};
    Ok(match source {
        Source::Redemptions => in_window::<redemption::Entity>(R::CreatedAt, R::Id, from, until, after)
            .limit(BATCH)
            .all(conn)
            .await?
            .into_iter()
            .map(|r| Row { id: r.id, created_at: r.created_at, fields: redemption_fields(&r), voided: r.status == "voided", tag: r.tag })
            .collect(),
        Source::Visits => in_window::<visit::Entity>(V::CreatedAt, V::Id, from, until, after)
            .limit(BATCH)
            .all(conn)
            .await?
            .into_iter()
            .map(|v| Row { id: v.id, created_at: v.created_at, fields: visit_fields(&v), voided: false, tag: v.tag })
            .collect(),
    })
}

/// When the first row past [`MAX_WINDOW_ROWS`] of a span was written, if the span holds more.
async fn cut<C: ConnectionTrait>(
    conn: &C,
    source: Source,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    async fn nth<C: ConnectionTrait, E: EntityTrait>(
        conn: &C,
        created: E::Column,
        id: E::Column,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, DbErr> {
        in_window::<E>(created, id, from, Some(until), None)
            .select_only()
            .column(created)
            .offset(MAX_WINDOW_ROWS)
            .into_tuple()
            .one(conn)
            .await
    }
    match source {
        Source::Redemptions => nth::<C, redemption::Entity>(conn, redemption::Column::CreatedAt, redemption::Column::Id, from, until).await,
        Source::Visits => nth::<C, visit::Entity>(conn, visit::Column::CreatedAt, visit::Column::Id, from, until).await,
    }
}

/// Calls `each` on every row of a window, in order, a batch at a time, until it stops.
async fn for_each_row<C: ConnectionTrait, E>(
    conn: &C,
    source: Source,
    from: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    mut each: impl FnMut(&Row) -> Result<(), E>,
) -> Result<Result<u64, E>, DbErr> {
    let (mut after, mut count) = (None, 0u64);
    loop {
        let batch = rows(conn, source, from, until, after).await?;
        for row in &batch {
            if let Err(stop) = each(row) {
                return Ok(Err(stop));
            }
            count += 1;
        }
        match batch.last() {
            Some(last) if batch.len() as u64 == BATCH => after = Some((last.created_at, last.id)),
            _ => return Ok(Ok(count)),
        }
    }
}

/// What an anchor records of one window.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Window {
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    count: u64,
    digest: String,
    /// When the window's first row was written.
    first: Option<DateTime<Utc>>,
}

/// Counts and digests a window; also returns the voided rows in it.
async fn window<C: ConnectionTrait>(
    conn: &C,
    source: Source,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<(Window, Vec<Uuid>), DbErr> {
    let mut hasher = Sha256::new();
    let mut voided = Vec::new();
    let mut first = None;
    let counted = for_each_row(conn, source, from, Some(until), |row| -> Result<(), Infallible> {
        first.get_or_insert(row.created_at);
        for f in row.fields.iter().chain(std::iter::once(&row.tag)) {
            hasher.update((f.len() as u64).to_be_bytes());
            hasher.update(f.as_bytes());
        }
        if row.voided {
            voided.push(row.id);
        }
        Ok(())
    })
    .await?;
    let Ok(count) = counted;
    Ok((Window { from, until, count, digest: hex::encode(hasher.finalize()), first }, voided))
}

/// The end of the last anchored window of `source`, if any.
async fn anchored_until<C: ConnectionTrait>(conn: &C, source: Source) -> Result<Option<DateTime<Utc>>, DbErr> {
    let last = audit_log::Entity::find()
        .filter(audit_log::Column::Action.eq(ANCHOR))
        .filter(audit_log::Column::TargetType.eq(source.name()))
        .order_by_desc(audit_log::Column::Seq)
        .one(conn)
        .await?;
    Ok(last.and_then(|e| serde_json::from_value::<Window>(e.after?).ok()).map(|w| w.until))
}

/// Anchors every window of every ledger that is at least [`DELAY`] old and not anchored
/// yet. Safe to run on every instance at once: anchors are chain entries, appended under
/// the chain's lock, and each run starts where the last anchor ended. Returns the anchors
/// written.
pub async fn anchor(db: &sea_orm::DatabaseConnection, keys: &Keyring, now: DateTime<Utc>) -> Result<u32, DbErr> {
    let until = (now - DELAY).trunc_subsecs(6);
    let mut written = 0;
    for source in Source::ALL {
        loop {
            let txn = db::begin_write(db).await?;
            let head = super::lock_head(&txn).await?;
            let from = anchored_until(&txn, source).await?.unwrap_or(DateTime::UNIX_EPOCH);
            if from >= until {
                break;
            }
            // A large backlog (the first anchor after an upgrade) goes in several windows.
            let cut = cut(&txn, source, from, until).await?;
            let end = cut.filter(|c| *c > from).unwrap_or(until);
            let (w, _) = window(&txn, source, from, end).await?;
            if w.count == 0 {
                // Nothing to pin; the next run looks at this span again.
                break;
            }
            let change = Change {
                action: ANCHOR,
                target_type: source.name(),
                target_id: time(end),
                before: None,
                after: Some(serde_json::to_value(&w).map_err(|e| DbErr::Custom(e.to_string()))?),
            };
            super::append(&txn, keys, &head, &Actor::system(), change, now).await?;
            txn.commit().await?;
            written += 1;
            if end == until {
                break;
            }
        }
    }
    Ok(written)
}

/// Runs [`anchor`] every half minute, on every instance.
pub fn spawn_anchoring(state: crate::state::AppState) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            if let Err(e) = anchor(&state.db, &state.keyring, state.clock.now()).await {
                tracing::warn!(error = %e, "anchoring the ledgers in the audit chain failed");
            }
        }
    });
}

/// The first of `voided` (rows found voided) whose void no `redemption.void` entry records;
/// one query per few hundred rows.
async fn unrecorded_void<C: ConnectionTrait>(conn: &C, voided: &[Uuid]) -> Result<Option<Uuid>, DbErr> {
    for chunk in voided.chunks(500) {
        let recorded: HashSet<String> = audit_log::Entity::find()
            .select_only()
            .column(audit_log::Column::TargetId)
            .filter(audit_log::Column::Action.eq(VOID))
            .filter(audit_log::Column::TargetType.eq("redemption"))
            .filter(audit_log::Column::TargetId.is_in(chunk.iter().map(Uuid::to_string)))
            .into_tuple()
            .all(conn)
            .await?
            .into_iter()
            .collect();
        if let Some(id) = chunk.iter().find(|id| !recorded.contains(&id.to_string())) {
            return Ok(Some(*id));
        }
    }
    Ok(None)
}

/// Of the `redemption.void` entries among `entries`, the targets that are redemptions
/// voided as recorded; one query for a batch of the chain.
pub(super) async fn voided_targets<C: ConnectionTrait>(conn: &C, entries: &[audit_log::Model]) -> Result<HashSet<String>, DbErr> {
    let ids: Vec<Uuid> = entries.iter().filter(|e| e.action == VOID).filter_map(|e| Uuid::parse_str(&e.target_id).ok()).collect();
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let voided: Vec<Uuid> = redemption::Entity::find()
        .select_only()
        .column(redemption::Column::Id)
        .filter(redemption::Column::Id.is_in(ids))
        .filter(redemption::Column::Status.eq("voided"))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(voided.iter().map(Uuid::to_string).collect())
}

fn row_break(seq: Option<i64>, source: Source, id: Uuid, reason: &str) -> Break {
    Break { seq, source: Some(source.name().into()), row_id: Some(id), reason: reason.into() }
}

/// What a chain entry says about the ledgers, checked against them: an anchor's window
/// must hold what it held, and a void's redemption must be voided (`voided`: see
/// [`voided_targets`]). Returns the rows checked.
pub(super) async fn check_entry<C: ConnectionTrait>(
    conn: &C,
    e: &audit_log::Model,
    voided: &HashSet<String>,
    visit_retention: Duration,
    now: DateTime<Utc>,
) -> Result<Result<u64, Break>, DbErr> {
    match e.action.as_str() {
        ANCHOR => {
            let anchored = e.after.clone().and_then(|a| serde_json::from_value::<Window>(a).ok());
            let (Some(source), Some(anchored)) = (Source::parse(&e.target_type), anchored) else {
                return Ok(Err(Break::entry(e.seq, "anchor names no window")));
            };
            // Housekeeping may have deleted some of these visits already.
            if source == Source::Visits && anchored.first.is_some_and(|first| first < now - visit_retention + Duration::days(1)) {
                return Ok(Ok(0));
            }
            let (found, rows_voided) = window(conn, source, anchored.from, anchored.until).await?;
            if found.count != anchored.count {
                let reason = format!(
                    "{} from {} to {}: {} rows, anchored {}",
                    source.name(),
                    time(anchored.from),
                    time(anchored.until),
                    found.count,
                    anchored.count
                );
                return Ok(Err(Break { seq: Some(e.seq), source: Some(source.name().into()), row_id: None, reason }));
            }
            if found.digest != anchored.digest {
                let reason =
                    format!("{} from {} to {}: rows changed since anchored", source.name(), time(anchored.from), time(anchored.until));
                return Ok(Err(Break { seq: Some(e.seq), source: Some(source.name().into()), row_id: None, reason }));
            }
            if let Some(id) = unrecorded_void(conn, &rows_voided).await? {
                return Ok(Err(row_break(Some(e.seq), source, id, "voided, but no void is recorded")));
            }
            Ok(Ok(found.count))
        }
        VOID if voided.contains(&e.target_id) => Ok(Ok(0)),
        VOID => Ok(Err(Break::entry(e.seq, "the voided redemption is missing or not voided"))),
        _ => Ok(Ok(0)),
    }
}

/// Checks the tag of every ledger row that no anchor covers yet.
pub(super) async fn check_tail<C: ConnectionTrait>(conn: &C, keys: &Keyring) -> Result<Result<u64, Break>, DbErr> {
    let mut total = 0;
    for source in Source::ALL {
        let from = anchored_until(conn, source).await?.unwrap_or(DateTime::UNIX_EPOCH);
        let mut voided = Vec::new();
        let checked = for_each_row(conn, source, from, None, |row| {
            let fields: Vec<&str> = row.fields.iter().map(String::as_str).collect();
            if !keys.audit_tag_matches(source.domain(), &fields, &row.tag) {
                return Err(row_break(None, source, row.id, "row does not match its keyed tag"));
            }
            if row.voided {
                voided.push(row.id);
            }
            Ok(())
        })
        .await?;
        match checked {
            Ok(n) => total += n,
            Err(problem) => return Ok(Err(problem)),
        }
        if let Some(id) = unrecorded_void(conn, &voided).await? {
            return Ok(Err(row_break(None, source, id, "voided, but no void is recorded")));
        }
    }
    Ok(Ok(total))
}

/// Rewrites, under the current key, the tags of rows no anchor covers yet (anchored rows
/// are pinned by their window's digest, whatever key tagged them). Rows whose tag matches
/// no key are left as they are, for verification to report.
pub(super) async fn retag_tail<C: ConnectionTrait>(conn: &C, keys: &Keyring) -> Result<u64, DbErr> {
    let mut retagged = 0;
    for source in Source::ALL {
        let from = anchored_until(conn, source).await?.unwrap_or(DateTime::UNIX_EPOCH);
        let mut stale = Vec::new();
        let Ok(_) = for_each_row(conn, source, from, None, |row| -> Result<(), Infallible> {
            let fields: Vec<&str> = row.fields.iter().map(String::as_str).collect();
            if !keys.audit_tag_is_current(source.domain(), &fields, &row.tag) && keys.audit_tag_matches(source.domain(), &fields, &row.tag)
            {
                stale.push((row.id, tag_of(keys, source, &row.fields)));
            }
            Ok(())
        })
        .await?;
        for (id, tag) in stale {
            match source {
                Source::Redemptions => {
                    redemption::Entity::update_many()
                        .col_expr(redemption::Column::Tag, Expr::value(tag))
                        .filter(redemption::Column::Id.eq(id))
                        .exec(conn)
                        .await?
                }
                Source::Visits => {
                    visit::Entity::update_many()
                        .col_expr(visit::Column::Tag, Expr::value(tag))
                        .filter(visit::Column::Id.eq(id))
                        .exec(conn)
                        .await?
                }
            };
            retagged += 1;
        }
    }
    Ok(retagged)
}
