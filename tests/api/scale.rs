//! City scale (issue 15): statistics from the rollup and its unfolded tail, bounded
//! reports, statement timeouts, and requests that keep working while the heaviest report
//! runs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use entity::{redemption, visit};
use rand::{Rng, SeedableRng};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;
use zhuge_card::auth::Role;
use zhuge_card::clock::{Clock, beijing_date, day_key};
use zhuge_card::redemption::stats::{self, Dimension, Position, Report};

use crate::support::binary::{Service, free_port};
use crate::support::cards::id_number;
use crate::support::catalog::{benefit_body, partner_body};
use crate::support::{assert_problem, json, postgres_url, spawn_app, spawn_app_with, spawn_with_settings, test_settings};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn new_redemption(partner: Uuid, benefit: Uuid, tier: &str, created_at: DateTime<Utc>) -> redemption::ActiveModel {
    redemption::ActiveModel {
        id: Set(Uuid::now_v7()),
        card_id: Set(Uuid::new_v4()),
        benefit_id: Set(benefit),
        partner_id: Set(partner),
        staff_id: Set(Uuid::new_v4()),
        visit_id: Set(Uuid::new_v4()),
        period_key: Set("y2026".into()),
        tier: Set(tier.into()),
        day: Set(day_key(beijing_date(created_at))),
        status: Set("completed".into()),
        created_at: Set(created_at),
        voided_at: Set(None),
        voided_by: Set(None),
        void_reason: Set(None),
        // Rows made straight in the database carry no audit tag (the statistics ignore it).
        ip: Set(None),
        tag: Set(String::new()),
    }
}

/// Completed redemptions counted the slow way, by every dimension.
async fn truth(db: &sea_orm::DatabaseConnection) -> BTreeMap<(String, Uuid, Uuid, String), i64> {
    let mut out = BTreeMap::new();
    for r in redemption::Entity::find().filter(redemption::Column::Status.eq("completed")).all(db).await.unwrap() {
        *out.entry((r.day, r.partner_id, r.benefit_id, r.tier)).or_insert(0) += 1;
    }
    out
}

/// The report read through every page of `limit` rows.
async fn report_all(db: &sea_orm::DatabaseConnection, report: &Report, limit: u64) -> BTreeMap<(String, Uuid, Uuid, String), i64> {
    let mut out = BTreeMap::new();
    let mut after: Option<Position> = None;
    loop {
        let rows = report.page(db, None, after.as_ref(), limit).await.unwrap();
        for r in &rows {
            let key = (r.day.clone().unwrap(), r.partner_id.unwrap(), r.benefit_id.unwrap(), r.tier.clone().unwrap());
            assert!(out.insert(key, r.count).is_none(), "a group came twice across pages");
        }
        if (rows.len() as u64) < limit {
            return out;
        }
        after = rows.last().map(Position::of);
    }
}

/// The day of the redemption created last: what a report's snapshot takes as the last
/// day that holds one.
async fn last_day(db: &sea_orm::DatabaseConnection) -> chrono::NaiveDate {
    use sea_orm::QueryOrder;
    let last = redemption::Entity::find().order_by_desc(redemption::Column::CreatedAt).one(db).await.unwrap().unwrap();
    last.day.parse().unwrap()
}

/// The truth summed by (day, tier).
fn coarse(fine: &BTreeMap<(String, Uuid, Uuid, String), i64>) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    for ((day, _, _, tier), n) in fine {
        *out.entry((day.clone(), tier.clone())).or_insert(0) += n;
    }
    out.retain(|_, n| *n != 0);
    out
}

/// A city-wide report by day and tier, which the day × tier rollup answers.
async fn by_day_and_tier(db: &sea_orm::DatabaseConnection, everything: &Report) -> BTreeMap<(String, String), i64> {
    let report = Report { by: vec![Dimension::Day, Dimension::Tier], ..everything.clone() };
    assert_eq!(report.rollup(), &stats::DAY_TIER);
    let rows = report.page(db, None, None, 1000).await.unwrap();
    rows.into_iter().map(|r| ((r.day.unwrap(), r.tier.unwrap()), r.count)).collect()
}

#[tokio::test]
async fn statistics_from_rollup_and_tail_equal_a_full_count_through_folds_and_voids() {
    let (mut settings, db) = test_settings().await;
    // The test folds by itself.
    settings.outbox_worker = false;
    // The last days of February and the first of March: reports by partner take March
    // from the month rollup and February's days from the day × partner one.
    let start = at("2026-02-27T23:30:00+08:00");
    let clock = Clock::manual(start);
    let app = spawn_with_settings(settings, db, clock.clone()).await;
    let conn = &app.state.db;
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    // Six partners in the catalogue, every other one with redemptions: reports by partner
    // are counted a stretch of partners at a time, and some stretches hold none.
    let operator = app.admin(Role::Operator).await;
    let mut catalogue = Vec::new();
    for i in 0..6 {
        catalogue.push(app.create_partner(&operator.access, partner_body(&format!("统计合作单位{i}"))).await);
    }
    let partners: Vec<Uuid> = catalogue.iter().copied().skip(1).step_by(2).collect();
    let benefits: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let everything = Report {
        from: start.date_naive() - chrono::Duration::days(2),
        to: start.date_naive() + chrono::Duration::days(40),
        by: Dimension::ALL.to_vec(),
        partner: None,
    };

    let mut ids = Vec::new();
    let mut between_rollups = 0;
    for round in 0..6 {
        // New redemptions since the last fold (the clock moved on by an hour at least;
        // nothing commits behind the watermark), some across Beijing midnight.
        let now = clock.now();
        let mut batch = Vec::new();
        for _ in 0..60 {
            let created = now - chrono::Duration::minutes(rng.random_range(0..50));
            let model = new_redemption(
                partners[rng.random_range(0..partners.len())],
                benefits[rng.random_range(0..benefits.len())],
                ["A", "B", "C", "D", "E"][rng.random_range(0..5)],
                created,
            );
            ids.push((model.id.clone().unwrap(), created));
            batch.push(model);
        }
        redemption::Entity::insert_many(batch).exec(conn).await.unwrap();
        // Voids of redemptions old and new, folded or not (never before they were made).
        for _ in 0..10 {
            let (id, created) = ids[rng.random_range(0..ids.len())];
            redemption::Entity::update_many()
                .col_expr(redemption::Column::Status, sea_orm::sea_query::Expr::value("voided"))
                .col_expr(redemption::Column::VoidedAt, sea_orm::sea_query::Expr::value(now.max(created)))
                .filter(redemption::Column::Id.eq(id))
                .filter(redemption::Column::Status.eq("completed"))
                .exec(conn)
                .await
                .unwrap();
        }
        let expected = truth(conn).await;
        assert_eq!(report_all(conn, &everything, 7).await, expected, "round {round}, before the fold");
        assert_eq!(by_day_and_tier(conn, &everything).await, coarse(&expected), "round {round}, day × tier before the fold");
        // Read while a fold is between rollups: the month rollup is folded further than
        // the day ones, so a report by partner over whole months and days around them
        // has tails that start at different moments (once March holds redemptions).
        stats::fold_rollup(conn, &stats::PARTNER_MONTH, clock.now()).await.unwrap();
        let by_partner = Report { by: vec![Dimension::Partner], ..everything.clone() };
        let rollups: Vec<_> = by_partner.segments(Some(last_day(conn).await)).iter().map(|s| s.rollup.table).collect();
        between_rollups += usize::from(rollups.contains(&"redemption_partner_month") && rollups.len() > 1);
        let rows = by_partner.page(conn, None, None, 1000).await.unwrap();
        let got: BTreeMap<Uuid, i64> = rows.iter().map(|r| (r.partner_id.unwrap(), r.count)).collect();
        let mut want = BTreeMap::new();
        for ((_, partner, _, _), n) in &expected {
            *want.entry(*partner).or_insert(0) += n;
        }
        assert_eq!(got, want, "round {round}, by partner while the fold is between rollups");
        let steps = stats::fold_once_exclusively(conn, clock.now()).await.unwrap();
        assert!(steps >= 1, "round {round}: nothing folded");
        assert_eq!(report_all(conn, &everything, 1000).await, expected, "round {round}, after the fold");
        assert_eq!(by_day_and_tier(conn, &everything).await, coarse(&expected), "round {round}, the day × tier rollup");
        for rollup in stats::ROLLUPS {
            assert!(stats::Watermarks::read(conn).await.unwrap().get(rollup).unwrap() <= clock.now() - stats::FOLD_LAG);
        }
        clock.advance(chrono::Duration::hours(rng.random_range(1..30)));
    }
    assert!(between_rollups > 0, "no round read months and days while the fold was between them");
    let folded: i64 = conn
        .query_one_raw(sea_orm::Statement::from_string(conn.get_database_backend(), "SELECT COUNT(*) AS n FROM redemption_daily"))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap();
    assert!(folded > 0, "the rollup stayed empty");

    // Coarser groupings add up to the same total; one partner is that partner's share.
    let expected = truth(conn).await;
    let total: i64 = expected.values().sum();
    for by in [vec![Dimension::Day], vec![Dimension::Tier], vec![Dimension::Partner], vec![Dimension::Partner, Dimension::Tier], vec![]] {
        let report = Report { by: by.clone(), ..everything.clone() };
        let rows = report.page(conn, None, None, 1000).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.count).sum::<i64>(), total, "{by:?}");
    }
    let mine = Report { partner: Some(partners[0]), ..everything.clone() };
    assert_eq!(Report { by: vec![Dimension::Day], ..mine.clone() }.rollup(), &stats::PARTNER_DAY);
    let by_benefit = Report { by: vec![Dimension::Day, Dimension::Benefit], ..mine.clone() };
    assert_eq!(by_benefit.rollup(), &stats::FINE, "one partner by benefit needs the fine grain");
    let share = |partner: Uuid, from: &str, to: &str| -> i64 {
        expected.iter().filter(|(k, _)| k.1 == partner && k.0.as_str() >= from && k.0.as_str() <= to).map(|(_, n)| n).sum()
    };
    assert_eq!(report_all(conn, &mine, 5).await.values().sum::<i64>(), share(partners[0], "", "9"));

    // By partner, by day and partner, and one partner's total, over stretches that start
    // and end inside a month or on its edges: whole months from the month rollup, the
    // rest from the day × partner rollup.
    let by_partner = Report { by: vec![Dimension::Partner], ..everything.clone() };
    let parts = |report: &Report, empty_after: Option<&str>| -> Vec<_> {
        let empty_after = empty_after.map(|d| d.parse().unwrap());
        report.segments(empty_after).into_iter().map(|s| (s.sign, s.rollup.table, (day_key(s.from), day_key(s.to)))).collect()
    };
    let (day, month, year) = ("redemption_partner_day", "redemption_partner_month", "redemption_partner_year");
    let days = |from: &str, to: &str| (from.to_owned(), to.to_owned());
    let between = |from: &str, to: &str| Report { from: from.parse().unwrap(), to: to.parse().unwrap(), ..by_partner.clone() };
    assert_eq!(
        parts(&by_partner, None),
        [
            (1, day, days("2026-02-25", "2026-02-28")),
            (1, day, days("2026-04-01", "2026-04-08")),
            (1, month, days("2026-03-01", "2026-03-31"))
        ]
    );
    // A month mostly in the report is the whole month less the days outside it.
    assert_eq!(
        parts(&between("2026-03-02", "2026-03-30"), None),
        [
            (1, month, days("2026-03-01", "2026-03-31")),
            (-1, day, days("2026-03-01", "2026-03-01")),
            (-1, day, days("2026-03-31", "2026-03-31"))
        ]
    );
    // A year from the 3rd of December: December 2025 less its first two days, and 2026
    // less what December 2026 has after the 3rd (its month row less its first 3 days):
    // 8 rows a partner, where months and days took 17.
    assert_eq!(
        parts(&between("2025-12-03", "2026-12-03"), None),
        [
            (1, month, days("2025-12-01", "2025-12-31")),
            (-1, day, days("2025-12-01", "2025-12-02")),
            (-1, month, days("2026-12-01", "2026-12-31")),
            (1, day, days("2026-12-01", "2026-12-03")),
            (1, year, days("2026-01-01", "2026-12-31"))
        ],
        "a year from the 3rd, when later days may hold redemptions"
    );
    // Up to the last day that holds a redemption, the year row reaches over the empty
    // days after it: 4 rows a partner.
    assert_eq!(
        parts(&between("2025-12-03", "2026-12-03"), Some("2026-12-03")),
        [
            (1, month, days("2025-12-01", "2025-12-31")),
            (-1, day, days("2025-12-01", "2025-12-02")),
            (1, year, days("2026-01-01", "2026-12-31"))
        ],
        "a year from the 3rd, up to the last redemption"
    );
    assert_eq!(
        parts(&between("2026-03-01", "2026-03-20"), Some("2026-03-05")),
        [(1, month, days("2026-03-01", "2026-03-31"))],
        "March so far is its month row"
    );
    assert_eq!(parts(&between("2026-03-05", "2026-03-08"), None), [(1, day, days("2026-03-05", "2026-03-08"))]);
    assert_eq!(parts(&between("2026-02-27", "2026-03-02"), None), [(1, day, days("2026-02-27", "2026-03-02"))]);
    assert_eq!(parts(&between("2026-01-01", "2026-12-31"), None), [(1, year, days("2026-01-01", "2026-12-31"))]);
    assert_eq!(
        parts(&between("2027-01-01", "2027-01-31"), Some("2026-03-05")),
        [(1, day, days("2027-01-01", "2027-01-31"))],
        "a report after the last redemption still reads something"
    );
    for (from, to) in [
        ("2026-02-26", "2026-03-31"),
        ("2026-02-28", "2026-03-05"),
        ("2026-03-01", "2026-03-31"),
        ("2026-03-01", "2026-04-30"),
        ("2026-03-02", "2026-03-30"),
        ("2026-03-03", "2026-04-30"),
        ("2026-02-26", "2026-03-29"),
        ("2026-03-02", "2026-04-29"),
        ("2026-03-02", "2026-03-20"),
        ("2026-02-27", "2026-03-02"),
        ("2026-01-01", "2026-12-31"),
        ("2025-12-15", "2026-03-03"),
        ("2026-02-28", "2026-12-31"),
        ("2026-03-04", "2027-01-31"),
    ] {
        let (from_day, to_day) = (from.parse().unwrap(), to.parse().unwrap());
        let report = Report { from: from_day, to: to_day, ..by_partner.clone() };
        let rows = report.page(conn, None, None, 1000).await.unwrap();
        let got: BTreeMap<Uuid, i64> = rows.iter().map(|r| (r.partner_id.unwrap(), r.count)).collect();
        let want: BTreeMap<Uuid, i64> = partners.iter().map(|p| (*p, share(*p, from, to))).filter(|(_, n)| *n != 0).collect();
        assert_eq!(got, want, "by partner, {from}..={to}");
        // Page by page, as `/admin/stats` asks (one row more than it shows).
        for limit in [1_u64, 2] {
            let (mut paged, mut after) = (BTreeMap::new(), None);
            loop {
                let rows = report.page(conn, None, after.as_ref(), limit + 1).await.unwrap();
                for r in rows.iter().take(limit as usize) {
                    assert!(paged.insert(r.partner_id.unwrap(), r.count).is_none(), "a partner came twice");
                }
                if rows.len() as u64 <= limit {
                    break;
                }
                after = rows.get(limit as usize - 1).map(Position::of);
            }
            assert_eq!(paged, want, "by partner, {from}..={to}, {limit} a page");
        }
        let by_day: BTreeMap<(String, Uuid), i64> = Report { by: vec![Dimension::Day, Dimension::Partner], ..report.clone() }
            .page(conn, None, None, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| ((r.day.unwrap(), r.partner_id.unwrap()), r.count))
            .collect();
        let mut want_by_day = BTreeMap::new();
        for ((day, partner, _, _), n) in expected.iter().filter(|(k, _)| k.0.as_str() >= from && k.0.as_str() <= to) {
            *want_by_day.entry((day.clone(), *partner)).or_insert(0) += n;
        }
        want_by_day.retain(|_, n| *n != 0);
        assert_eq!(by_day, want_by_day, "by day and partner, {from}..={to}");
        let one = Report { by: vec![], partner: Some(partners[1]), ..report };
        let rows = one.page(conn, None, None, 1000).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.count).sum::<i64>(), share(partners[1], from, to), "one partner, {from}..={to}");
    }
}

/// Reports by partner that take years less months and months less days, with and
/// without empty days after the last redemption, equal a full count: a year of
/// redemptions folded, then some more unfolded and voids on both sides of the watermark.
#[tokio::test]
async fn reports_by_partner_across_years_months_and_days_equal_a_full_count() {
    let (mut settings, db) = test_settings().await;
    settings.outbox_worker = false;
    let now = at("2026-12-08T10:00:00+08:00");
    let clock = Clock::manual(now);
    let app = spawn_with_settings(settings, db, clock.clone()).await;
    let conn = &app.state.db;
    let operator = app.admin(Role::Operator).await;
    let mut partners = Vec::new();
    for i in 0..3 {
        partners.push(app.create_partner(&operator.access, partner_body(&format!("跨年合作单位{i}"))).await);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut new_one = |created: DateTime<Utc>| {
        new_redemption(partners[rng.random_range(0..partners.len())], Uuid::new_v4(), ["C", "D", "E"][rng.random_range(0..3)], created)
    };
    // Every other day from 2025-11-20 until an hour ago, folded; then a few in the last
    // minutes, which stay in the tail.
    let (mut day, mut folded, mut ids) = (at("2025-11-20T09:00:00+08:00"), Vec::new(), Vec::new());
    while day < now - chrono::Duration::hours(1) {
        for hour in [0, 3, 7] {
            folded.push(new_one(day + chrono::Duration::hours(hour)));
        }
        day += chrono::Duration::days(2);
    }
    ids.extend(folded.iter().map(|m| m.id.clone().unwrap()));
    redemption::Entity::insert_many(folded).exec(conn).await.unwrap();
    assert!(stats::fold_once_exclusively(conn, now).await.unwrap() > 0);
    let fresh: Vec<_> = (1..4).map(|m| new_one(now - chrono::Duration::minutes(m))).collect();
    redemption::Entity::insert_many(fresh).exec(conn).await.unwrap();
    for id in ids.iter().step_by(17) {
        redemption::Entity::update_many()
            .col_expr(redemption::Column::Status, sea_orm::sea_query::Expr::value("voided"))
            .col_expr(redemption::Column::VoidedAt, sea_orm::sea_query::Expr::value(now))
            .filter(redemption::Column::Id.eq(*id))
            .exec(conn)
            .await
            .unwrap();
    }

    let expected = truth(conn).await;
    let share = |partner: Uuid, from: &str, to: &str| -> i64 {
        expected.iter().filter(|(k, _)| k.1 == partner && k.0.as_str() >= from && k.0.as_str() <= to).map(|(_, n)| n).sum()
    };
    let last = last_day(conn).await;
    assert_eq!(last, beijing_date(now));
    for (from, to) in [
        ("2025-12-08", "2026-12-08"),
        ("2025-11-20", "2026-12-31"),
        ("2026-01-01", "2026-12-31"),
        ("2025-12-03", "2026-12-03"),
        ("2026-02-10", "2026-11-20"),
        ("2026-01-05", "2026-12-08"),
        ("2025-12-31", "2026-01-01"),
        ("2025-01-01", "2025-12-31"),
        ("2026-12-08", "2026-12-08"),
    ] {
        let report = Report { from: from.parse().unwrap(), to: to.parse().unwrap(), by: vec![Dimension::Partner], partner: None };
        let rows = report.page(conn, None, None, 1000).await.unwrap();
        let got: BTreeMap<Uuid, i64> = rows.iter().map(|r| (r.partner_id.unwrap(), r.count)).collect();
        let want: BTreeMap<Uuid, i64> = partners.iter().map(|p| (*p, share(*p, from, to))).filter(|(_, n)| *n != 0).collect();
        assert_eq!(got, want, "by partner, {from}..={to}, as {:?}", report.segments(Some(last)));
        let one = Report { by: vec![], partner: Some(partners[2]), ..report };
        let total: i64 = one.page(conn, None, None, 1000).await.unwrap().iter().map(|r| r.count).sum();
        assert_eq!(total, share(partners[2], from, to), "one partner, {from}..={to}");
    }
    // The year to today is read as 2026's row, December 2025's less its first 7 days.
    let year =
        Report { from: "2025-12-08".parse().unwrap(), to: "2026-12-08".parse().unwrap(), by: vec![Dimension::Partner], partner: None };
    let rollups: Vec<_> = year.segments(Some(last)).iter().map(|s| (s.sign, s.rollup.table)).collect();
    assert_eq!(rollups, [(1, "redemption_partner_month"), (-1, "redemption_partner_day"), (1, "redemption_partner_year")]);
    // Some years and months above were taken less redemptions that are there.
    let within = Report { from: "2026-02-10".parse().unwrap(), to: "2026-11-20".parse().unwrap(), ..year };
    assert!(within.segments(Some(last)).iter().any(|s| s.rollup == &stats::PARTNER_YEAR));
}

#[tokio::test]
async fn admin_statistics_are_paged_grouped_as_asked_and_exported_as_streamed_csv() {
    // Redemptions are backdated below, behind where a fold would have put the watermark.
    let app = spawn_app_with(|s| s.outbox_worker = false).await;
    let operator = app.admin(Role::Operator).await;
    let now = Utc::now();
    let partner = Uuid::new_v4();
    let rows: Vec<_> = (0..30)
        .map(|i| new_redemption(partner, Uuid::new_v4(), ["B", "C", "D"][i % 3], now - chrono::Duration::days((i % 10) as i64)))
        .collect();
    redemption::Entity::insert_many(rows).exec(&app.state.db).await.unwrap();

    // By tier: three rows of ten.
    let (status, body) = json(app.get_as("/api/v1/admin/stats?by=tier", &operator.access).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["by"], json!(["tier"]));
    assert_eq!(body["rows"], json!([{"tier": "B", "count": 10}, {"tier": "C", "count": 10}, {"tier": "D", "count": 10}]));
    assert_eq!(body["next_cursor"], json!(null));

    // By day and benefit, four at a time: every group once, in order, over all pages.
    let mut seen = Vec::new();
    let mut path = "/api/v1/admin/stats?by=benefit,day&limit=4".to_owned();
    loop {
        let (status, page) = json(app.get_as(&path, &operator.access).await).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["by"], json!(["day", "benefit"]));
        for r in page["rows"].as_array().unwrap() {
            assert!(r.get("tier").is_none() && r.get("partner_id").is_none(), "{r}");
            seen.push((r["day"].as_str().unwrap().to_owned(), r["benefit_id"].as_str().unwrap().to_owned()));
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/admin/stats?by=benefit,day&limit=4&cursor={c}"),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((seen.len(), &seen), (30, &sorted));

    // A year is allowed, more is not; unknown dimensions, limits and cursors are 422.
    let today = beijing_date(now);
    let year = format!("/api/v1/admin/stats?by=day&from={}&to={today}", today - chrono::Duration::days(365));
    assert_eq!(app.get_as(&year, &operator.access).await.status(), 200);
    let longer = format!("/api/v1/admin/stats?from={}&to={today}", today - chrono::Duration::days(366));
    assert_problem(app.get_as(&longer, &operator.access).await, 422, "validation_failed").await;
    for bad in ["by=week", "limit=0", "limit=1001", "cursor=%25%25", "from=2026-02-30"] {
        let res = app.get_as(&format!("/api/v1/admin/stats?{bad}"), &operator.access).await;
        assert!([400, 422].contains(&res.status().as_u16()), "{bad}: {}", res.status());
    }
    // One partner only.
    let (_, one) = json(app.get_as(&format!("/api/v1/admin/stats?by=partner&partner_id={partner}"), &operator.access).await).await;
    assert_eq!(one["rows"], json!([{"partner_id": partner.to_string(), "count": 30}]));

    // CSV: every row (no paging), the grouped columns only.
    let csv =
        app.auth(reqwest::Method::GET, "/api/v1/admin/stats?by=tier", &operator.access).header("accept", "text/csv").send().await.unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/csv"));
    assert_eq!(csv.text().await.unwrap(), "tier,count\nB,10\nC,10\nD,10\n");
}

#[tokio::test]
async fn visits_are_kept_for_their_retention_and_idempotency_keys_for_48_hours() {
    let (mut settings, db) = test_settings().await;
    settings.visit_retention_days = 30;
    settings.outbox_worker = false;
    let now = at("2026-06-01T12:00:00Z");
    let app = spawn_with_settings(settings, db, Clock::manual(now)).await;
    let visit_at = |t: DateTime<Utc>| visit::ActiveModel {
        id: Set(Uuid::now_v7()),
        card_id: Set(Uuid::new_v4()),
        partner_id: Set(Uuid::new_v4()),
        staff_id: Set(Uuid::new_v4()),
        nonce: Set(Uuid::new_v4().simple().to_string()),
        created_at: Set(t),
        expires_at: Set(t + chrono::Duration::minutes(5)),
        ip: Set(None),
        tag: Set(String::new()),
    };
    let old = (0..7).map(|_| visit_at(now - chrono::Duration::days(31)));
    let young = (0..3).map(|_| visit_at(now - chrono::Duration::days(29)));
    visit::Entity::insert_many(old.chain(young)).exec(&app.state.db).await.unwrap();
    zhuge_card::redemption::retention::run_once(&app.state).await;
    let left = visit::Entity::find().all(&app.state.db).await.unwrap();
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|v| v.created_at > now - chrono::Duration::days(30)));

    // Idempotency keys: kept 48 hours, then forgotten.
    let key_at = |key: &str, t: DateTime<Utc>| entity::idempotency_key::ActiveModel {
        staff_id: Set(Uuid::new_v4()),
        key: Set(key.into()),
        request_hash: Set("h".into()),
        status: Set("done".into()),
        response_status: Set(Some(201)),
        response_body: Set(Some("{}".into())),
        locked_until: Set(t),
        created_at: Set(t),
    };
    let keys = [key_at("old", now - chrono::Duration::hours(49)), key_at("young", now - chrono::Duration::hours(47))];
    entity::idempotency_key::Entity::insert_many(keys).exec(&app.state.db).await.unwrap();
    zhuge_card::redemption::retention::run_once(&app.state).await;
    let kept: Vec<String> = entity::idempotency_key::Entity::find().all(&app.state.db).await.unwrap().into_iter().map(|k| k.key).collect();
    assert_eq!(kept, ["young"]);
}

/// Fills the database with `n` redemptions over the past year at 1 000 partners, in the
/// tail (nothing folded): the heaviest report there can be for its size.
async fn load_redemptions(db: &sea_orm::DatabaseConnection, n: i64) {
    db.execute_unprepared(&format!(
        "INSERT INTO redemptions (id, card_id, benefit_id, partner_id, staff_id, visit_id, period_key, tier, day, status, created_at)
         SELECT gen_random_uuid(), gen_random_uuid(),
                ('00000000-0000-4000-8000-' || lpad((i % 5000)::text, 12, '0'))::uuid,
                ('00000000-0000-4000-9000-' || lpad((2 * (i % 1000) + 1)::text, 12, '0'))::uuid,
                gen_random_uuid(), gen_random_uuid(), 'y2026', substr('ABCDE', 1 + (i % 5)::int, 1),
                to_char((now() - (i % 365) * interval '1 day') AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD'), 'completed',
                now() - (i % 365) * interval '1 day'
         FROM generate_series(1, {n}) AS i"
    ))
    .await
    .unwrap();
    db.execute_unprepared("ANALYZE redemptions").await.unwrap();
}

#[tokio::test]
async fn the_heaviest_report_never_takes_the_connections_talents_and_merchants_need() {
    if postgres_url().is_none() {
        eprintln!("SKIPPED: needs TEST_DATABASE_URL (statement timeouts and the report pool are PostgreSQL's)");
        return;
    }
    let app = spawn_app().await;
    // The database's connections carry the configured statement timeout, and no JIT: a
    // report's plan over the unfolded tail is estimated high enough to be compiled, which
    // cost 27 ms of a 26 ms query at 2 million redemptions.
    let show = |db: sea_orm::DatabaseConnection, setting: &'static str| async move {
        let stmt = sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, format!("SHOW {setting}"));
        db.query_one_raw(stmt).await.unwrap().unwrap().try_get::<String>("", setting).unwrap()
    };
    assert_eq!(show(app.state.db.clone(), "statement_timeout").await, "5s");
    assert_eq!(show(app.state.db_reports.clone(), "statement_timeout").await, "30s");
    assert_eq!(show(app.state.db.clone(), "jit").await, "off");
    assert_eq!(show(app.state.db_reports.clone(), "jit").await, "off");

    let operator = app.admin(Role::Operator).await;
    let partner = app.create_partner(&operator.access, partner_body("南阳市中心医院")).await;
    let mut body = benefit_body("专家号优先");
    body["valid_from"] = json!("2020-01-01T00:00:00Z");
    app.create_benefit(&operator.access, partner, body).await;
    let staff = app.account(Role::MerchantStaff, Some(partner)).await.1;
    let holder = app.issue_card("heavy", "张三明", &id_number(77), "C", "sci_tech").await;
    // The service's own connections would cancel this bulk load after 5 s.
    let loader = zhuge_card::db::connect_url(&app.state.settings.database_url(), 1).await.unwrap();
    load_redemptions(&loader, 300_000).await;
    // The database predates the rollup: none of those redemptions is folded (the app folded
    // its empty table at start, and its watermarks would hide them). Their 1 000 partners
    // (odd numbers) are in the catalogue between 1 000 without redemptions (even numbers),
    // so that a report by partner is cut into stretches of catalogue partners, each half
    // empty, and every stretch ends at a partner with redemptions.
    loader.execute_unprepared("DELETE FROM stats_watermarks").await.unwrap();
    loader
        .execute_unprepared(&format!(
            "CREATE TEMP TABLE more_partners AS SELECT p.*, i FROM partners p, generate_series(0, 1999) AS i WHERE p.id = '{partner}';
             UPDATE more_partners SET id = ('00000000-0000-4000-9000-' || lpad(i::text, 12, '0'))::uuid, name = name || i;
             ALTER TABLE more_partners DROP COLUMN i;
             INSERT INTO partners SELECT * FROM more_partners;"
        ))
        .await
        .unwrap();

    // The real binary, configured as documented: two request connections, one for reports.
    let port = free_port();
    let data_dir = app.state.settings.data_dir.clone();
    let env = [
        ("DATABASE_URL", app.state.settings.database_url()),
        ("ZHUGE_DATA_DIR", data_dir.display().to_string()),
        ("ZHUGE_DB_MAX_CONNECTIONS", "2".to_owned()),
        ("ZHUGE_DB_REPORT_CONNECTIONS", "1".to_owned()),
        ("ZHUGE_DB_REPORT_TIMEOUT_MS", "20000".to_owned()),
        ("ZHUGE_DB_STATEMENT_TIMEOUT_MS", "5000".to_owned()),
        ("ZHUGE_WORKERS", "2".to_owned()),
        ("ZHUGE_OUTBOX_WORKER", "false".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let mut service = Service::start(&env, port, &data_dir.join("heavy.log"));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    service.wait_ready(&client).await;
    let base = service.base.clone();
    let today = beijing_date(Utc::now());
    let heaviest = format!("{base}/api/v1/admin/stats?from={}&to={today}&limit=1000", today - chrono::Duration::days(365));

    // Six operators ask for a year of everything at once, as JSON and as CSV. The CSV
    // (every group, a page at a time, each page counted over all 300 000 unfolded
    // redemptions) would run for a minute: its readers give up after 5 s.
    let reports: Vec<_> = (0..6)
        .map(|i| {
            let csv = i % 2 == 0;
            let req = client.get(&heaviest).bearer_auth(&operator.access);
            let req = if csv { req.header("accept", "text/csv") } else { req };
            tokio::spawn(async move {
                let read = async {
                    let res = req.send().await.unwrap();
                    let status = res.status().as_u16();
                    let body = res.bytes().await.map(|b| b.len()).unwrap_or(0);
                    (status, body)
                };
                if csv { tokio::time::timeout(Duration::from_secs(5), read).await.ok() } else { Some(read.await) }
            })
        })
        .collect();
    // Meanwhile talents and merchants go about their business.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let until = Instant::now() + Duration::from_secs(3);
    let mut slowest = Duration::ZERO;
    let mut served = 0;
    while Instant::now() < until {
        for (path, token) in [
            ("/api/v1/me", &holder.talent.access),
            ("/api/v1/me/benefits", &holder.talent.access),
            ("/api/v1/me/redemptions", &holder.talent.access),
            ("/api/v1/merchant/stats", &staff.access),
            ("/api/v1/merchant/redemptions", &staff.access),
        ] {
            let started = Instant::now();
            let res = client.get(format!("{base}{path}")).bearer_auth(token).send().await.unwrap();
            assert_eq!(res.status(), 200, "{path} during the report: {}", res.text().await.unwrap_or_default());
            slowest = slowest.max(started.elapsed());
            served += 1;
        }
    }
    assert!(slowest < Duration::from_secs(1), "a request took {slowest:?} while reports ran");
    let mut statuses = Vec::new();
    for r in reports {
        let Some((status, size)) = r.await.unwrap() else {
            statuses.push(0);
            continue;
        };
        assert!(status == 200 || status == 503, "a report answered {status}");
        // A page is bounded: 1 000 rows of JSON.
        if status == 200 && size > 0 {
            assert!(size < 50 << 20, "{size} bytes");
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&200), "{statuses:?}");
    eprintln!("heavy report: {served} requests served alongside, slowest {slowest:?}, reports {statuses:?}");

    // A year by partner from the binary (partner rollups, whole months and the days around
    // them, stretches of 400 catalogue partners), page by page: every one of the 1 000
    // partners once, and every redemption counted once. First with the redemptions
    // unfolded (or as far as the app's own fold got), then folded into every rollup.
    let year = format!("{base}/api/v1/admin/stats?by=partner&from={}&to={today}&limit=400", today - chrono::Duration::days(365));
    let by_partner = || async {
        let (mut partners, mut total, mut pages, mut cursor) = (std::collections::BTreeSet::new(), 0, 0, None::<String>);
        loop {
            let url = cursor.as_ref().map_or_else(|| year.clone(), |c| format!("{year}&cursor={c}"));
            let res = client.get(&url).bearer_auth(&operator.access).send().await.unwrap();
            assert_eq!(res.status(), 200);
            let page: serde_json::Value = res.json().await.unwrap();
            for row in page["rows"].as_array().unwrap() {
                assert!(partners.insert(row["partner_id"].as_str().unwrap().to_owned()), "a partner came twice: {row}");
                total += row["count"].as_i64().unwrap();
            }
            pages += 1;
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        (partners.len(), total, pages)
    };
    assert_eq!(by_partner().await, (1000, 300_000, 3));
    stats::fold(&loader, Utc::now()).await.unwrap();
    // The month rollup now holds every redemption but the last few minutes'.
    let stmt = sea_orm::Statement::from_string(
        sea_orm::DbBackend::Postgres,
        "SELECT (SELECT SUM(count) FROM redemption_partner_month)::bigint AS folded,
                (SELECT count(*) FROM redemptions WHERE created_at < (SELECT folded_until FROM stats_watermarks WHERE name = 'redemptions_partner_month')) AS behind",
    );
    let row = loader.query_one_raw(stmt).await.unwrap().unwrap();
    let (folded, behind) = (row.try_get::<i64>("", "folded").unwrap(), row.try_get::<i64>("", "behind").unwrap());
    assert!(folded == behind && folded > 299_000, "{folded} folded, {behind} behind the watermark");
    assert_eq!(by_partner().await, (1000, 300_000, 3));
}

#[tokio::test]
async fn a_report_query_whose_caller_gives_up_is_cancelled_on_the_server() {
    if postgres_url().is_none() {
        eprintln!("SKIPPED: needs TEST_DATABASE_URL (query cancellation is PostgreSQL's)");
        return;
    }
    let app = spawn_app().await;
    let slow = sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, "SELECT pg_sleep(20) AS zhuge_slow_report");
    let started = Instant::now();
    let report = async {
        use sea_orm::TransactionTrait;
        let txn = app.state.db_reports.begin().await.unwrap();
        let handle = stats::CancelHandle::of(&txn, Some(&app.state.db)).await.unwrap();
        assert!(handle.is_some(), "no cancel handle on PostgreSQL");
        stats::query_cancellable(&txn, handle.as_ref(), slow).await
    };
    let gave_up = tokio::time::timeout(Duration::from_millis(300), report).await;
    assert!(gave_up.is_err(), "pg_sleep(20) returned");
    let running = || async {
        let stmt = sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%zhuge_slow_report%' AND pid <> pg_backend_pid()",
        );
        app.state.db.query_one_raw(stmt).await.unwrap().unwrap().try_get::<i64>("", "n").unwrap()
    };
    while running().await > 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "the abandoned query kept running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The report pool's one connection is free again for the next report.
    let rows = Report { from: beijing_date(Utc::now()), to: beijing_date(Utc::now()), by: vec![Dimension::Tier], partner: None }
        .page(&app.state.db_reports, Some(&app.state.db), None, 10)
        .await
        .unwrap();
    assert!(rows.is_empty());
}

/// Upgrading a database whose fine rollup is folded: the day × tier and the month ×
/// partner rollups start as its sums, at the same watermark, so no redemption is counted
/// twice or missed by the tail.
#[tokio::test]
async fn the_coarse_rollups_start_from_the_fine_rollup_on_upgrade() {
    use migration::MigratorTrait;
    let db = crate::support::TestDatabase::create().await;
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    migration::Migrator::up(&conn, None).await.unwrap();
    // Back to before the day × tier rollup (the 12th migration) and everything after it.
    let after_day_tier = u32::try_from(migration::Migrator::migrations().len() - 11).unwrap();
    migration::Migrator::down(&conn, Some(after_day_tier)).await.unwrap();
    assert!(!migration::Migrator::get_applied_migrations(&conn).await.unwrap().iter().any(|m| m.name().contains("day_tier")));
    let folded = at("2026-03-02T04:00:00Z");
    let (p, b1, b2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for (day, benefit, tier, n) in
        [("2026-03-01", b1, "A", 3), ("2026-03-01", b2, "A", 4), ("2026-03-01", b1, "C", 2), ("2026-03-02", b2, "C", 0)]
    {
        conn.execute_raw(sea_orm::Statement::from_sql_and_values(
            conn.get_database_backend(),
            if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
                "INSERT INTO redemption_daily (day, partner_id, benefit_id, tier, count) VALUES ($1, $2, $3, $4, $5)"
            } else {
                "INSERT INTO redemption_daily (day, partner_id, benefit_id, tier, count) VALUES (?, ?, ?, ?, ?)"
            },
            [day.into(), p.into(), benefit.into(), tier.into(), i64::from(n).into()],
        ))
        .await
        .unwrap();
    }
    redemption::Entity::insert(new_redemption(p, b1, "A", folded + chrono::Duration::minutes(1))).exec(&conn).await.unwrap();
    conn.execute_raw(sea_orm::Statement::from_sql_and_values(
        conn.get_database_backend(),
        if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
            "INSERT INTO stats_watermarks (name, folded_until) VALUES ('redemptions', $1)"
        } else {
            "INSERT INTO stats_watermarks (name, folded_until) VALUES ('redemptions', ?)"
        },
        [folded.into()],
    ))
    .await
    .unwrap();

    migration::Migrator::up(&conn, None).await.unwrap();
    assert_eq!(stats::Watermarks::read(&conn).await.unwrap().get(&stats::DAY_TIER), Some(folded));
    let report = Report {
        from: at("2026-02-28T00:00:00Z").date_naive(),
        to: folded.date_naive(),
        by: vec![Dimension::Day, Dimension::Tier],
        partner: None,
    };
    assert_eq!(report.rollup(), &stats::DAY_TIER);
    let rows: Vec<(String, String, i64)> =
        report.page(&conn, None, None, 100).await.unwrap().into_iter().map(|r| (r.day.unwrap(), r.tier.unwrap(), r.count)).collect();
    // 3 + 4 folded for A on the 1st, 2 for C; the unfolded one of the 2nd (Beijing) comes from the tail.
    let expected = vec![("2026-03-01".into(), "A".into(), 7), ("2026-03-01".into(), "C".into(), 2), ("2026-03-02".into(), "A".into(), 1)];
    assert_eq!(rows, expected);
    let fine = Report { partner: Some(p), ..report };
    assert_eq!(fine.page(&conn, None, None, 100).await.unwrap().iter().map(|r| r.count).sum::<i64>(), 10, "the fine rollup agrees");

    for rollup in [&stats::PARTNER_DAY, &stats::PARTNER_MONTH, &stats::PARTNER_YEAR] {
        assert_eq!(stats::Watermarks::read(&conn).await.unwrap().get(rollup), Some(folded), "{}", rollup.table);
    }
    let march =
        Report { from: "2026-03-01".parse().unwrap(), to: "2026-03-31".parse().unwrap(), by: vec![Dimension::Partner], partner: None };
    assert_eq!(march.segments(None), [stats::Segment { rollup: &stats::PARTNER_MONTH, from: march.from, to: march.to, sign: 1 }]);
    let rows: Vec<(Uuid, i64)> =
        march.page(&conn, None, None, 100).await.unwrap().into_iter().map(|r| (r.partner_id.unwrap(), r.count)).collect();
    assert_eq!(rows, [(p, 10)], "9 folded in March and the unfolded one");
    // The year rollup starts from the month rollup: the year is its one row and the tail.
    let year = Report { from: "2026-01-01".parse().unwrap(), to: "2026-12-31".parse().unwrap(), ..march };
    assert_eq!(
        year.segments(Some(folded.date_naive())),
        [stats::Segment { rollup: &stats::PARTNER_YEAR, from: year.from, to: year.to, sign: 1 }]
    );
    let rows: Vec<(Uuid, i64)> =
        year.page(&conn, None, None, 100).await.unwrap().into_iter().map(|r| (r.partner_id.unwrap(), r.count)).collect();
    assert_eq!(rows, [(p, 10)], "9 folded in 2026 and the unfolded one");
    let days = Report {
        from: "2026-02-28".parse().unwrap(),
        to: "2026-03-02".parse().unwrap(),
        by: vec![Dimension::Day, Dimension::Partner],
        partner: None,
    };
    assert_eq!(days.rollup(), &stats::PARTNER_DAY);
    let rows: Vec<(String, i64)> =
        days.page(&conn, None, None, 100).await.unwrap().into_iter().map(|r| (r.day.unwrap(), r.count)).collect();
    assert_eq!(rows, [("2026-03-01".to_owned(), 9), ("2026-03-02".to_owned(), 1)]);
}
