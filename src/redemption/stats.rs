//! Redemption statistics, answered from a daily rollup instead of scans of every
//! redemption (SPEC §9: 20 million rows).
//!
//! - `redemption_daily` counts completed redemptions by Beijing day, partner, benefit and
//!   tier, for every redemption created before its watermark (`stats_watermarks`). It is as
//!   of that moment: a redemption voided later still counts there. `redemption_day_tier` is
//!   the same by day and tier only, with a watermark of its own: a city-wide report by day
//!   or tier reads at most 366 × 5 of its rows instead of millions (see [`Rollup`]).
//!   `redemption_partner_day`, `redemption_partner_month` and `redemption_partner_year`
//!   count by day, month or year and partner: a report by partner, or of one partner,
//!   takes whole years and months from the coarser ones and only the days around them
//!   from the first (see [`Report::segments`]).
//! - A background fold ([`fold`]) moves the watermark forward: it adds the redemptions
//!   created since (unless already voided by then) and takes off those created before it
//!   but voided since. A redemption never writes to the rollup itself, so redemptions at
//!   one partner never queue on a shared row.
//! - An answer is the rollup plus the tail not folded yet, in one snapshot (a read-only
//!   repeatable-read transaction that reads the watermarks, then counts):
//!   redemptions created at or after the watermark that are completed, minus those
//!   created before it and voided at or after it. That is exactly the completed ones now.
//! - The fold stays [`FOLD_LAG`] behind the clock: a redemption's `created_at` (and a
//!   void's `voided_at`) is taken before its transaction commits, and a transaction lives
//!   at most a few statement timeouts, far less than the lag. So nothing can still commit
//!   behind the watermark.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, TimeZone, Utc};
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, IsolationLevel, Statement, TransactionTrait, Value,
};
use uuid::Uuid;

use super::dto::StatGroup;
use crate::clock::day_key;
use crate::error::ApiError;

/// How far behind the clock the watermark stays.
pub const FOLD_LAG: Duration = Duration::minutes(5);
/// The longest stretch one fold transaction covers, so that catching up on a large
/// backlog (a database that predates the rollup) is many short transactions.
const FOLD_STEP: Duration = Duration::days(1);

/// A rollup table: the grain it counts at, and the watermark it is folded up to.
#[derive(Debug, PartialEq, Eq)]
pub struct Rollup {
    pub table: &'static str,
    pub watermark: &'static str,
    /// The dimensions it keeps (columns of both it and `redemptions`), in [`Dimension`] order.
    keeps: &'static [Dimension],
    /// How finely it keeps the day.
    grain: Grain,
}

/// How finely a rollup keeps the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grain {
    /// The Beijing day.
    Day,
    /// The Beijing month, kept as its first day (`2026-03-01`).
    Month,
    /// The Beijing year, kept as its first day (`2026-01-01`).
    Year,
}

impl Grain {
    /// The first day of the unit that holds `d`.
    fn start(self, d: NaiveDate) -> NaiveDate {
        match self {
            Grain::Day => d,
            Grain::Month => d.with_day(1).unwrap_or(d),
            Grain::Year => d.with_ordinal(1).unwrap_or(d),
        }
    }

    /// The last day of the unit that holds `d`.
    fn end(self, d: NaiveDate) -> NaiveDate {
        let next = match self {
            Grain::Day => return d,
            Grain::Month => self.start(d).checked_add_months(Months::new(1)),
            Grain::Year => self.start(d).checked_add_months(Months::new(12)),
        };
        next.map_or(d, day_before)
    }

    /// How many units (rows a partner) the days `from..=to` touch; none if `to < from`.
    fn units(self, from: NaiveDate, to: NaiveDate) -> i64 {
        if to < from {
            return 0;
        }
        let months = |d: NaiveDate| i64::from(d.year()) * 12 + i64::from(d.month0());
        match self {
            Grain::Day => (to - from).num_days() + 1,
            Grain::Month => months(to) - months(from) + 1,
            Grain::Year => i64::from(to.year() - from.year()) + 1,
        }
    }
}

impl Rollup {
    /// Its columns, as a SQL list.
    fn columns(&self) -> String {
        self.keeps.iter().map(|d| d.column()).collect::<Vec<_>>().join(", ")
    }

    /// Its columns as read from `redemptions`: a month rollup's day is its month's first.
    fn as_read_from_redemptions(&self) -> String {
        let column = |d: &Dimension| match (d, self.grain) {
            (Dimension::Day, Grain::Month) => "substr(day, 1, 8) || '01' AS day",
            (Dimension::Day, Grain::Year) => "substr(day, 1, 5) || '01-01' AS day",
            _ => d.column(),
        };
        self.keeps.iter().map(column).collect::<Vec<_>>().join(", ")
    }

    /// Whether it can count `report` (its groups and its partner filter) at day grain, or
    /// over whole months if it keeps months.
    fn fits(&self, report: &Report) -> bool {
        let fine_enough = self.grain == Grain::Day || !report.by.contains(&Dimension::Day);
        fine_enough
            && (report.partner.is_none() || self.keeps.contains(&Dimension::Partner))
            && report.by.iter().all(|d| self.keeps.contains(d))
    }
}

/// Day × partner × benefit × tier: any report can be answered from it.
pub const FINE: Rollup = Rollup { table: "redemption_daily", watermark: "redemptions", keeps: &Dimension::ALL, grain: Grain::Day };
/// Day × tier: city-wide reports by day and tier.
pub const DAY_TIER: Rollup = Rollup {
    table: "redemption_day_tier",
    watermark: "redemptions_day_tier",
    keeps: &[Dimension::Day, Dimension::Tier],
    grain: Grain::Day,
};
/// Day × partner: reports by partner, or of one partner, by day; and the days around the
/// whole months of [`PARTNER_MONTH`].
pub const PARTNER_DAY: Rollup = Rollup {
    table: "redemption_partner_day",
    watermark: "redemptions_partner_day",
    keeps: &[Dimension::Day, Dimension::Partner],
    grain: Grain::Day,
};
/// Month × partner: reports by partner, or of one partner, over whole months. A year of
/// the city by partner is 12 rows a partner here, where the fine rollup holds hundreds.
pub const PARTNER_MONTH: Rollup = Rollup {
    table: "redemption_partner_month",
    watermark: "redemptions_partner_month",
    keeps: &[Dimension::Day, Dimension::Partner],
    grain: Grain::Month,
};
/// Year × partner: reports by partner, or of one partner, over whole years, or most of
/// one (see [`Report::segments`]).
pub const PARTNER_YEAR: Rollup = Rollup {
    table: "redemption_partner_year",
    watermark: "redemptions_partner_year",
    keeps: &[Dimension::Day, Dimension::Partner],
    grain: Grain::Year,
};
/// Every rollup the fold maintains.
pub const ROLLUPS: [&Rollup; 5] = [&FINE, &DAY_TIER, &PARTNER_DAY, &PARTNER_MONTH, &PARTNER_YEAR];

/// Before any redemption: the watermark of a database that was never folded.
fn beginning() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single().unwrap_or_default()
}

/// A statement under construction with its bound values, for either backend.
struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    fn new(backend: DbBackend) -> Self {
        Self { backend, text: String::new(), values: Vec::new() }
    }

    fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Appends a placeholder bound to `v`.
    fn bind(&mut self, v: impl Into<Value>) -> &mut Self {
        self.values.push(v.into());
        if self.backend == DbBackend::Postgres {
            let n = self.values.len();
            self.text.push_str(&format!("${n}"));
        } else {
            self.text.push('?');
        }
        self
    }

    fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

/// A dimension statistics may be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Day,
    Partner,
    Benefit,
    Tier,
}

impl Dimension {
    pub const ALL: [Dimension; 4] = [Dimension::Day, Dimension::Partner, Dimension::Benefit, Dimension::Tier];

    /// The column, and the field of a row, that holds it.
    pub fn column(self) -> &'static str {
        match self {
            Dimension::Day => "day",
            Dimension::Partner => "partner_id",
            Dimension::Benefit => "benefit_id",
            Dimension::Tier => "tier",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Dimension::Day => "day",
            Dimension::Partner => "partner",
            Dimension::Benefit => "benefit",
            Dimension::Tier => "tier",
        }
    }
}

/// The position after the last row of a page: the values of its grouped dimensions.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Position {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub benefit_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

impl Position {
    pub fn of(row: &StatGroup) -> Self {
        Self { day: row.day.clone(), partner_id: row.partner_id, benefit_id: row.benefit_id, tier: row.tier.clone() }
    }

    fn value(&self, d: Dimension) -> Option<Value> {
        match d {
            Dimension::Day => self.day.clone().map(Value::from),
            Dimension::Partner => self.partner_id.map(Value::from),
            Dimension::Benefit => self.benefit_id.map(Value::from),
            Dimension::Tier => self.tier.clone().map(Value::from),
        }
    }
}

/// What to count: completed redemptions on the Beijing days `from..=to`, optionally of
/// one partner, grouped by `by` (in [`Dimension`] order).
#[derive(Debug, Clone)]
pub struct Report {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub by: Vec<Dimension>,
    pub partner: Option<Uuid>,
}

impl Report {
    /// The coarsest day-grain rollup that keeps what this report groups and filters by.
    pub fn rollup(&self) -> &'static Rollup {
        [&DAY_TIER, &PARTNER_DAY].into_iter().find(|r| r.fits(self)).unwrap_or(&FINE)
    }

    /// Whether the year and month rollups by partner can count whole years and months of
    /// this report (not a city-wide total, which the day × tier rollup counts in fewer rows).
    fn by_years_and_months(&self) -> bool {
        self.rollup() != &DAY_TIER && PARTNER_MONTH.fits(self)
    }

    /// Where each stretch of the report's days is counted, and with which sign. When the
    /// partner rollups fit, the days are covered by years, months and days, each from
    /// its rollup, in the way that reads the fewest rows a partner ([`cover`]): a year or
    /// month the report covers only in part is either its part in the report (added), or
    /// the whole of it less its part outside the report (taken off). Days after
    /// `empty_after`, the last day that holds a redemption in the report's snapshot, hold
    /// nothing, so a whole year or month may reach over them for free. A year by partner
    /// from the 8th of December is the new year's row, December's month row less its
    /// first 7 days: 9 rows a partner, where months and days took up to 27. Every
    /// segment is an exact count of its days (rollup and tail), so their signed sum is
    /// too. A city-wide total stays with the day × tier rollup, which is smaller than a
    /// month of partners.
    pub fn segments(&self, empty_after: Option<NaiveDate>) -> Vec<Segment> {
        let day = self.rollup();
        let whole = || vec![Segment { rollup: day, from: self.from, to: self.to, sign: 1 }];
        if !self.by_years_and_months() {
            return whole();
        }
        let levels = [&PARTNER_YEAR, &PARTNER_MONTH, day];
        let segments = cover(self.from, self.to, &levels, empty_after).segments;
        // A report wholly after the last redemption still needs a statement to read.
        if segments.is_empty() { whole() } else { segments }
    }

    /// The rows of every segment and of the tail not folded yet, as the grouped columns
    /// and `n`. When every segment's rollup is folded up to the same moment (all but the
    /// instants a fold is between rollups), the segments' tails add up to the tail of the
    /// report's own days, since their signed days do: one tail is read instead of one a
    /// segment (two statements on `redemptions` instead of six for a year by partner).
    fn source(&self, q: &mut Sql, snapshot: &Snapshot, partners: &PartnerRange) {
        let columns: String = self.by.iter().map(|d| format!("{}, ", d.column())).collect();
        let segments = &snapshot.segments;
        let marks: Vec<DateTime<Utc>> = segments.iter().map(|s| snapshot.watermarks.of(s.rollup)).collect();
        let shared = marks.windows(2).all(|w| w[0] == w[1]).then_some(marks[0]);
        for (i, (segment, mark)) in segments.iter().zip(&marks).enumerate() {
            if i > 0 {
                q.push(" UNION ALL ");
            }
            self.rollup_rows(q, &columns, segment, partners);
            if shared.is_none() {
                self.tail(q, &columns, (segment.from, segment.to, segment.sign), *mark, partners);
            }
        }
        if let Some(mark) = shared {
            self.tail(q, &columns, (self.from, self.to, 1), mark, partners);
        }
    }

    /// The conditions on the days `from..=to` and on the partners of the report.
    fn range(&self, q: &mut Sql, from: NaiveDate, to: NaiveDate, partners: &PartnerRange) {
        q.push(" AND day >= ").bind(day_key(from)).push(" AND day <= ").bind(day_key(to));
        if let Some(p) = self.partner {
            q.push(" AND partner_id = ").bind(p);
        }
        match partners.after {
            Some((p, true)) => q.push(" AND partner_id >= ").bind(p),
            Some((p, false)) => q.push(" AND partner_id > ").bind(p),
            None => q,
        };
        if let Some(p) = partners.upto {
            q.push(" AND partner_id <= ").bind(p);
        }
    }

    /// A segment's rows of its rollup, signed. A month rollup is asked only for whole
    /// months, so its rows (on each month's first day) fall in the segment's range.
    fn rollup_rows(&self, q: &mut Sql, columns: &str, segment: &Segment, partners: &PartnerRange) {
        q.push(&format!("SELECT {columns}{} * count AS n FROM {} WHERE 1 = 1", segment.sign, segment.rollup.table));
        self.range(q, segment.from, segment.to, partners);
    }

    /// The tail of the days `from..=to` beyond `watermark`, signed: redemptions created at
    /// or after it that are completed, minus those created before it and voided at or
    /// after it.
    ///
    /// The watermark is a value, not a subquery: the planner then sees how few rows lie
    /// beyond it. Behind a subquery it guessed a third of the table, and for one partner's
    /// voids it read all of that partner's redemptions (34 000 at a tenth of the city).
    fn tail(
        &self,
        q: &mut Sql,
        columns: &str,
        (from, to, sign): (NaiveDate, NaiveDate, i64),
        watermark: DateTime<Utc>,
        partners: &PartnerRange,
    ) {
        q.push(&format!(" UNION ALL SELECT {columns}{sign} AS n FROM redemptions WHERE created_at >= ")).bind(watermark);
        q.push(" AND status = 'completed'");
        self.range(q, from, to, partners);
        q.push(&format!(" UNION ALL SELECT {columns}{} AS n FROM redemptions WHERE voided_at >= ", -sign)).bind(watermark);
        q.push(" AND created_at < ").bind(watermark);
        self.range(q, from, to, partners);
    }

    /// One page of at most `limit` groups after `after`, in the order of the dimensions.
    ///
    /// On PostgreSQL the statement is cancelled through `canceller` (another pool) when
    /// the caller stops waiting for it (the client went away): it does not run on to its
    /// timeout holding a report connection.
    pub async fn page(
        &self,
        db: &DatabaseConnection,
        canceller: Option<&DatabaseConnection>,
        after: Option<&Position>,
        limit: u64,
    ) -> Result<Vec<StatGroup>, ApiError> {
        // The watermarks and the counts from one snapshot: a fold that commits between
        // them cannot count a redemption twice, or not at all.
        let txn = match db.get_database_backend() {
            DbBackend::Postgres => db.begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)).await?,
            _ => db.begin().await?,
        };
        let snapshot = Snapshot::read(&txn, self).await?;
        let cancel = CancelHandle::of(&txn, canceller).await?;
        // A report led by partner is counted a stretch of `limit` partners at a time, so
        // that every rollup is read by its partner key for those partners only, however
        // many partners the city has; a stretch with fewer groups (partners without
        // redemptions in the range) is followed by the next.
        let by_stretch = self.partner.is_none() && self.by.first() == Some(&Dimension::Partner);
        let mut partners = PartnerRange::default();
        if by_stretch {
            partners.after = after.and_then(|a| a.partner_id).map(|p| (p, true));
        }
        let mut rows = Vec::new();
        loop {
            if by_stretch {
                partners.upto = nth_partner(&txn, partners.after, limit).await?;
            }
            let wanted = limit - rows.len() as u64;
            let statement = self.statement(db.get_database_backend(), &snapshot, &partners, after, wanted);
            rows.extend(query_cancellable(&txn, cancel.as_ref(), statement).await?);
            match partners.upto {
                Some(upto) if (rows.len() as u64) < limit => partners.after = Some((upto, false)),
                _ => break,
            }
        }
        txn.commit().await?;
        let has = |d: Dimension| self.by.contains(&d);
        rows.into_iter()
            .map(|r| {
                Ok(StatGroup {
                    day: if has(Dimension::Day) { Some(r.try_get::<String>("", "day")?) } else { None },
                    partner_id: if has(Dimension::Partner) { Some(r.try_get::<Uuid>("", "partner_id")?) } else { None },
                    benefit_id: if has(Dimension::Benefit) { Some(r.try_get::<Uuid>("", "benefit_id")?) } else { None },
                    tier: if has(Dimension::Tier) { Some(r.try_get::<String>("", "tier")?) } else { None },
                    count: r.try_get::<i64>("", "count")?,
                })
            })
            .collect::<Result<Vec<_>, sea_orm::DbErr>>()
            .map_err(ApiError::from)
    }

    /// The statement of [`Report::page`], as of `snapshot`.
    fn statement(
        &self,
        backend: DbBackend,
        snapshot: &Snapshot,
        partners: &PartnerRange,
        after: Option<&Position>,
        limit: u64,
    ) -> Statement {
        let mut q = Sql::new(backend);
        let columns: Vec<&str> = self.by.iter().map(|d| d.column()).collect();
        let list = columns.join(", ");
        if list.is_empty() {
            q.push("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS count FROM (");
            self.source(&mut q, snapshot, partners);
            q.push(") s");
        } else {
            q.push(&format!("SELECT {list}, CAST(SUM(n) AS BIGINT) AS count FROM ("));
            self.source(&mut q, snapshot, partners);
            q.push(") s");
            if let Some(after) = after {
                let values: Option<Vec<Value>> = self.by.iter().map(|d| after.value(*d)).collect();
                if let Some(values) = values {
                    q.push(&format!(" WHERE ({list}) > ("));
                    for (i, v) in values.into_iter().enumerate() {
                        if i > 0 {
                            q.push(", ");
                        }
                        q.bind(v);
                    }
                    q.push(")");
                }
            }
            q.push(&format!(" GROUP BY {list} HAVING SUM(n) <> 0 ORDER BY {list} LIMIT "));
            q.bind(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        q.build()
    }
}

/// A stretch of a report's days, the rollup that counts it, and whether its counts are
/// added (`1`) or taken off (`-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub rollup: &'static Rollup,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub sign: i64,
}

/// Signed segments that count the days `from..=to`, and the rows a partner they read.
#[derive(Debug, Default)]
struct Cover {
    rows: i64,
    segments: Vec<Segment>,
}

impl Cover {
    /// One segment of `rollup`, left out when all its days are after `empty_after`.
    fn of(rollup: &'static Rollup, from: NaiveDate, to: NaiveDate, empty_after: Option<NaiveDate>) -> Self {
        let rows = rollup.grain.units(from, empty_after.map_or(to, |last| to.min(last)));
        let segments = if rows > 0 { vec![Segment { rollup, from, to, sign: 1 }] } else { Vec::new() };
        Self { rows, segments }
    }

    fn and(mut self, other: Cover) -> Self {
        self.rows += other.rows;
        self.segments.extend(other.segments);
        self
    }

    fn taken_off(mut self) -> Self {
        self.segments.iter_mut().for_each(|s| s.sign = -s.sign);
        self
    }
}

/// The cover of `from..=to` that reads the fewest rows a partner, by the rollups of
/// `levels` (coarsest first, the last one by day): either wholly by the finer levels, or
/// by units of the first level from the one that holds `from` to the one that holds
/// `to`, where an edge unit the range holds only in part is either left to the finer
/// levels for its part in the range, or taken whole less the finer cover of its part
/// outside. Ties go to the finer levels, which take nothing off.
fn cover(from: NaiveDate, to: NaiveDate, levels: &[&'static Rollup], empty_after: Option<NaiveDate>) -> Cover {
    let Some((&rollup, finer)) = levels.split_first() else { return Cover::default() };
    if from > to {
        return Cover::default();
    }
    if finer.is_empty() {
        return Cover::of(rollup, from, to, empty_after);
    }
    let grain = rollup.grain;
    let by_finer = cover(from, to, finer, empty_after);
    let cheaper = |a: Cover, b: Cover| if b.rows < a.rows { b } else { a };
    let (first, last) = (grain.start(from), grain.end(to));
    if grain.start(from) == grain.start(to) {
        // One unit: by its days in the range, or whole less those outside.
        let whole = Cover::of(rollup, first, last, empty_after)
            .and(cover(first, day_before(from), finer, empty_after).taken_off())
            .and(cover(day_after(to), last, finer, empty_after).taken_off());
        return cheaper(by_finer, whole);
    }
    // The left edge unit: its part in the range by the finer levels, or whole less the rest.
    let (mut units_from, mut edges) = (first, Cover::default());
    if from > first {
        let part = cover(from, grain.end(from), finer, empty_after);
        let unit_rows = Cover::of(rollup, first, grain.end(first), empty_after).rows;
        let outside = cover(first, day_before(from), finer, empty_after);
        if part.rows <= unit_rows + outside.rows {
            units_from = day_after(grain.end(from));
            edges = edges.and(part);
        } else {
            edges = edges.and(outside.taken_off());
        }
    }
    let mut units_to = last;
    if to < last {
        let part = cover(grain.start(to), to, finer, empty_after);
        let unit_rows = Cover::of(rollup, grain.start(to), last, empty_after).rows;
        let outside = cover(day_after(to), last, finer, empty_after);
        if part.rows <= unit_rows + outside.rows {
            units_to = day_before(grain.start(to));
            edges = edges.and(part);
        } else {
            edges = edges.and(outside.taken_off());
        }
    }
    let units = if units_from <= units_to { Cover::of(rollup, units_from, units_to, empty_after) } else { Cover::default() };
    cheaper(by_finer, edges.and(units))
}

fn day_before(d: NaiveDate) -> NaiveDate {
    d.pred_opt().unwrap_or(d)
}

fn day_after(d: NaiveDate) -> NaiveDate {
    d.succ_opt().unwrap_or(d)
}

/// The partners a statement counts: after one (`true`: that one too), up to another.
#[derive(Debug, Default)]
struct PartnerRange {
    after: Option<(Uuid, bool)>,
    upto: Option<Uuid>,
}

/// The `n`th partner of the catalogue from `after` on, in id order; `None` if there are
/// fewer. Only a place to cut: redemptions of any partner id fall in one stretch or the
/// next.
async fn nth_partner<C: ConnectionTrait>(db: &C, after: Option<(Uuid, bool)>, n: u64) -> Result<Option<Uuid>, sea_orm::DbErr> {
    let mut q = Sql::new(db.get_database_backend());
    q.push("SELECT id FROM partners WHERE 1 = 1");
    match after {
        Some((p, true)) => q.push(" AND id >= ").bind(p),
        Some((p, false)) => q.push(" AND id > ").bind(p),
        None => &mut q,
    };
    q.push(" ORDER BY id LIMIT 1 OFFSET ").bind(i64::try_from(n.saturating_sub(1)).unwrap_or(i64::MAX));
    match db.query_one_raw(q.build()).await? {
        Some(row) => Ok(Some(row.try_get::<Uuid>("", "id")?)),
        None => Ok(None),
    }
}

/// What a report reads first in its snapshot: where each rollup stands, and, for a report
/// the partner rollups answer, the last day that holds a redemption (`day` is the Beijing
/// day of `created_at`, so it is the day of the last one created; redemptions are never
/// deleted). Days after it hold nothing in the snapshot, in the rollups or the tail.
/// The report's segments are worked out here once, for every stretch's statement.
struct Snapshot {
    watermarks: Watermarks,
    segments: Vec<Segment>,
}

impl Snapshot {
    async fn read<C: ConnectionTrait>(db: &C, report: &Report) -> Result<Self, sea_orm::DbErr> {
        let watermarks = Watermarks::read(db).await?;
        if !report.by_years_and_months() {
            return Ok(Self { watermarks, segments: report.segments(None) });
        }
        let stmt = Statement::from_string(db.get_database_backend(), "SELECT day FROM redemptions ORDER BY created_at DESC LIMIT 1");
        let last_day = match db.query_one_raw(stmt).await? {
            Some(row) => row.try_get::<String>("", "day")?.parse().ok(),
            None => None,
        };
        Ok(Self { watermarks, segments: report.segments(last_day) })
    }
}

/// Where each rollup stands, as read in a report's snapshot.
pub struct Watermarks(Vec<(String, DateTime<Utc>)>);

impl Watermarks {
    pub async fn read<C: ConnectionTrait>(db: &C) -> Result<Self, sea_orm::DbErr> {
        let stmt = Statement::from_string(db.get_database_backend(), "SELECT name, folded_until FROM stats_watermarks");
        let rows = db.query_all_raw(stmt).await?;
        let marks = rows.iter().map(|r| Ok((r.try_get::<String>("", "name")?, r.try_get::<DateTime<Utc>>("", "folded_until")?)));
        Ok(Self(marks.collect::<Result<_, sea_orm::DbErr>>()?))
    }

    /// A rollup's watermark, if it was ever folded.
    pub fn get(&self, rollup: &Rollup) -> Option<DateTime<Utc>> {
        self.0.iter().find(|(name, _)| name == rollup.watermark).map(|(_, t)| *t)
    }

    /// A rollup's watermark; one never folded is at the beginning (all of it is tail).
    fn of(&self, rollup: &Rollup) -> DateTime<Utc> {
        self.get(rollup).unwrap_or_else(beginning)
    }
}

/// What names a report's transaction on the server, so that a query of it can be
/// cancelled from another pool (`canceller`) when its caller goes away: the backend's
/// pid and the transaction's start (`now()`, what `pg_stat_activity.xact_start` shows).
/// Read once per transaction; `None` off PostgreSQL or without a canceller.
#[derive(Clone)]
pub struct CancelHandle {
    pid: i32,
    began: DateTime<Utc>,
    canceller: DatabaseConnection,
}

impl CancelHandle {
    pub async fn of(txn: &DatabaseTransaction, canceller: Option<&DatabaseConnection>) -> Result<Option<Self>, sea_orm::DbErr> {
        let Some(canceller) = canceller.filter(|_| txn.get_database_backend() == DbBackend::Postgres) else {
            return Ok(None);
        };
        let stmt = Statement::from_string(DbBackend::Postgres, "SELECT pg_backend_pid() AS pid, now() AS began");
        let Some(row) = txn.query_one_raw(stmt).await? else { return Ok(None) };
        Ok(Some(Self { pid: row.try_get("", "pid")?, began: row.try_get("", "began")?, canceller: canceller.clone() }))
    }
}

/// Runs a query in `txn`; with a [`CancelHandle`] of that transaction, if this future is
/// dropped before the answer (the client disconnected and the request was dropped), the
/// server is asked to cancel it.
///
/// The query's text is left as it is, so that the connection's prepared statement serves
/// the next report of the same shape: parsed once, though still planned for each
/// report's values (a generic plan could not see the watermark; see `Report::segment`).
pub async fn query_cancellable(
    txn: &DatabaseTransaction,
    handle: Option<&CancelHandle>,
    stmt: Statement,
) -> Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
    let guard = CancelOnDrop(handle.cloned());
    let rows = txn.query_all_raw(stmt).await;
    guard.disarm();
    rows
}

struct CancelOnDrop(Option<CancelHandle>);

impl CancelOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(CancelHandle { pid, began, canceller }) = self.0.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // Only if that backend is still busy in this very transaction.
                let stmt = Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND xact_start = $2 AND state = 'active'",
                    [pid.into(), began.into()],
                );
                if let Err(e) = canceller.execute_raw(stmt).await {
                    tracing::warn!(error = %e, pid, "could not cancel an abandoned report query");
                } else {
                    tracing::info!(pid, "cancelled the query of a report whose client went away");
                }
            });
        }
    }
}

/// Folds redemptions (and voids) up to `now - FOLD_LAG` into every rollup. Returns how
/// many steps it took.
pub async fn fold(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<u32, sea_orm::DbErr> {
    let mut steps = 0;
    for rollup in ROLLUPS {
        steps += fold_rollup(db, rollup, now).await?;
    }
    Ok(steps)
}

/// Folds one rollup up to `now - FOLD_LAG`, in steps of at most [`FOLD_STEP`], each its
/// own transaction. Callers make sure only one fold runs at a time (see [`spawn`]); two at
/// once would still not double count on PostgreSQL (the watermark row is locked and
/// re-read), but would wait. [`fold`] calls it for each rollup in turn, so a report can
/// find them folded to different moments.
pub async fn fold_rollup(db: &DatabaseConnection, rollup: &Rollup, now: DateTime<Utc>) -> Result<u32, sea_orm::DbErr> {
    let target = now - FOLD_LAG;
    let (columns, as_read_from_redemptions) = (rollup.columns(), rollup.as_read_from_redemptions());
    let mut steps = 0;
    loop {
        let txn = crate::db::begin_write(db).await?;
        let backend = txn.get_database_backend();
        let mut q = Sql::new(backend);
        q.push("SELECT folded_until FROM stats_watermarks WHERE name = ").bind(rollup.watermark);
        if backend == DbBackend::Postgres {
            q.push(" FOR UPDATE");
        }
        let current = match txn.query_one_raw(q.build()).await? {
            Some(row) => Some(row.try_get::<DateTime<Utc>>("", "folded_until")?),
            None => None,
        };
        let start = match current {
            Some(t) => t,
            // Never folded: start at the first redemption.
            None => {
                let mut q = Sql::new(backend);
                q.push("SELECT MIN(created_at) AS first FROM redemptions");
                let first =
                    txn.query_one_raw(q.build()).await?.and_then(|r| r.try_get::<Option<DateTime<Utc>>>("", "first").ok().flatten());
                first.unwrap_or(target).min(target)
            }
        };
        if start >= target && current.is_some() {
            txn.rollback().await?;
            return Ok(steps);
        }
        let end = (start + FOLD_STEP).min(target).max(start);
        let mut q = Sql::new(backend);
        q.push(&format!("INSERT INTO {} ({columns}, count) SELECT {columns}, SUM(n) FROM (", rollup.table));
        // Created in [start, end) and not voided by `end`: counted.
        q.push(&format!("SELECT {as_read_from_redemptions}, 1 AS n FROM redemptions WHERE created_at >= ")).bind(start);
        q.push(" AND created_at < ").bind(end).push(" AND (voided_at IS NULL OR voided_at >= ").bind(end).push(")");
        // Created before `start` (so counted) and voided in [start, end): taken off.
        q.push(&format!(" UNION ALL SELECT {as_read_from_redemptions}, -1 AS n FROM redemptions WHERE voided_at >= ")).bind(start);
        q.push(" AND voided_at < ").bind(end).push(" AND created_at < ").bind(start);
        // `WHERE true` keeps SQLite from reading ON CONFLICT as a join constraint.
        q.push(&format!(" ) s WHERE 1 = 1 GROUP BY {columns} "));
        q.push(&format!("ON CONFLICT ({columns}) DO UPDATE SET count = {}.count + excluded.count", rollup.table));
        txn.execute_raw(q.build()).await?;
        let mut q = Sql::new(backend);
        q.push("INSERT INTO stats_watermarks (name, folded_until) VALUES (").bind(rollup.watermark).push(", ").bind(end);
        q.push(") ON CONFLICT (name) DO UPDATE SET folded_until = excluded.folded_until");
        txn.execute_raw(q.build()).await?;
        txn.commit().await?;
        steps += 1;
        if end >= target {
            return Ok(steps);
        }
    }
}

/// Runs [`fold`] every `stats_fold_secs`. On PostgreSQL an advisory lock, held on a
/// connection of its own, makes one instance fold at a time; the others skip that round.
pub fn spawn(state: crate::state::AppState) {
    tokio::spawn(async move {
        let every = std::time::Duration::from_secs(state.settings.stats_fold_secs.max(1));
        loop {
            if let Err(e) = fold_once_exclusively(&state.db, state.clock.now()).await {
                tracing::warn!(error = %e, "statistics fold failed");
            }
            tokio::time::sleep(every).await;
        }
    });
}

/// One [`fold`], unless another instance holds the fold lock (PostgreSQL).
pub async fn fold_once_exclusively(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<u32, sea_orm::DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return fold(db, now).await;
    }
    const KEY: i64 = 0x7a68_7567_655f_7374; // "zhuge_st"
    let pool = db.get_postgres_connection_pool();
    let mut lock = pool.acquire().await.map_err(|e| sea_orm::DbErr::Custom(format!("acquire: {e}")))?;
    let got: bool = sea_orm::sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(KEY)
        .fetch_one(&mut *lock)
        .await
        .map_err(|e| sea_orm::DbErr::Custom(format!("lock: {e}")))?;
    if !got {
        return Ok(0);
    }
    let result = fold(db, now).await;
    let unlocked = sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)").bind(KEY).execute(&mut *lock).await;
    if unlocked.is_err() {
        // Closing the connection releases the lock.
        drop(lock.detach());
    }
    result
}
