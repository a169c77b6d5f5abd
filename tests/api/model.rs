//! A model-based test of the rules that matter most at a desk. A pure reference model of
//! one card, one partner and one benefit (quota, period, visits, redemptions, voids, the
//! card's and the partner's states) follows random sequences of operations that go through
//! the real HTTP API, with an injected clock that jumps across Beijing midnight, month end
//! and year end. Every answer is compared with the model's, and the database with the
//! model at the end of each sequence.
//!
//! `MODEL_CASES` sets the number of sequences (default 500; CI runs it on SQLite and on
//! PostgreSQL). A failure prints the shrunk sequence: make it a named regression test.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, FixedOffset, TimeZone, Utc};
use entity::{quota_counter, redemption, user};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;
use zhuge_card::audit::Actor;
use zhuge_card::auth::Role;
use zhuge_card::auth::sessions::{self, Origin};
use zhuge_card::clock::Clock;

use crate::support::catalog::partner_body;
use crate::support::{TestApp, spawn_with_settings, test_settings};

#[derive(Debug, Clone, Copy)]
enum Step {
    Minute,
    SixMinutes,
    PastMidnight,
    PastMonthEnd,
    PastYearEnd,
    Day,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// The talent shows a fresh QR; the desk scans it.
    Scan,
    /// The desk scans the last QR again (a screenshot, or a double scan).
    Rescan,
    /// One tap: redeem on the last visit with a new Idempotency-Key.
    Redeem,
    /// The network failed: the same request, same key.
    Retry,
    /// Void the last redemption.
    Void,
    Suspend,
    Resume,
    Revoke,
    TogglePartner,
    ToggleBenefit,
    Advance(Step),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => Just(Op::Scan),
        2 => Just(Op::Rescan),
        6 => Just(Op::Redeem),
        2 => Just(Op::Retry),
        2 => Just(Op::Void),
        1 => Just(Op::Suspend),
        1 => Just(Op::Resume),
        1 => Just(Op::Revoke),
        1 => Just(Op::TogglePartner),
        1 => Just(Op::ToggleBenefit),
        3 => prop_oneof![
            Just(Step::Minute),
            Just(Step::SixMinutes),
            Just(Step::PastMidnight),
            Just(Step::PastMonthEnd),
            Just(Step::PastYearEnd),
            Just(Step::Day)
        ]
        .prop_map(Op::Advance),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Period {
    Day,
    Month,
    Year,
    Lifetime,
    Unlimited,
}

fn period() -> impl Strategy<Value = Period> {
    prop_oneof![Just(Period::Day), Just(Period::Month), Just(Period::Year), Just(Period::Lifetime), Just(Period::Unlimited)]
}

impl Period {
    fn wire(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
            Period::Year => "year",
            Period::Lifetime => "lifetime",
            Period::Unlimited => "unlimited",
        }
    }
}

fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap()
}

/// The model's own notion of a period: which calendar day, month or year in Beijing.
fn window(period: Period, at: DateTime<Utc>) -> String {
    let local = at.with_timezone(&beijing());
    match period {
        Period::Day => format!("{}-{}-{}", local.year(), local.month(), local.day()),
        Period::Month => format!("{}-{}", local.year(), local.month()),
        Period::Year => local.year().to_string(),
        Period::Lifetime | Period::Unlimited => "all".into(),
    }
}

fn advance(at: DateTime<Utc>, step: Step) -> DateTime<Utc> {
    let local = at.with_timezone(&beijing());
    let midnight = |y, m, d| beijing().with_ymd_and_hms(y, m, d, 0, 0, 0).single().unwrap().with_timezone(&Utc);
    match step {
        Step::Minute => at + Duration::minutes(1),
        Step::SixMinutes => at + Duration::minutes(6),
        Step::Day => at + Duration::hours(25),
        Step::PastMidnight => {
            let next = local.date_naive().succ_opt().unwrap();
            midnight(next.year(), next.month(), next.day()) + Duration::seconds(1)
        }
        Step::PastMonthEnd => {
            let (y, m) = if local.month() == 12 { (local.year() + 1, 1) } else { (local.year(), local.month() + 1) };
            midnight(y, m, 1) + Duration::seconds(1)
        }
        Step::PastYearEnd => midnight(local.year() + 1, 1, 1) + Duration::seconds(1),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CardState {
    Active,
    Suspended,
    Revoked,
}

struct Token {
    value: String,
    minted_at: DateTime<Utc>,
    consumed: bool,
}

struct Redemption {
    id: String,
    created_at: DateTime<Utc>,
    window: String,
    voided: bool,
}

struct Model {
    quota: Option<i32>,
    period: Period,
    card: CardState,
    valid_until: DateTime<Utc>,
    partner_active: bool,
    benefit_active: bool,
    used: HashMap<String, i32>,
    token: Option<Token>,
    visit: Option<(String, DateTime<Utc>)>,
    /// The last redemption request: key, body, and the answer's status and bytes.
    last_request: Option<(String, Value, u16, String)>,
    redemptions: Vec<Redemption>,
}

impl Model {
    /// The card problem a desk meets now, if any (the card-active rule, restated).
    fn card_problem(&self, now: DateTime<Utc>) -> Option<(u16, &'static str)> {
        match self.card {
            CardState::Suspended => Some((409, "card_suspended")),
            CardState::Revoked => Some((409, "card_revoked")),
            CardState::Active if now >= self.valid_until => Some((409, "card_expired")),
            CardState::Active => None,
        }
    }

    fn remaining(&self, now: DateTime<Utc>) -> Value {
        match self.quota {
            None => Value::Null,
            Some(q) => json!(q - self.used.get(&window(self.period, now)).copied().unwrap_or(0)),
        }
    }
}

struct World {
    app: TestApp,
    clock: Clock,
    operator: user::Model,
    /// How often each answer was seen, by request and code: the test fails if the
    /// sequences never reached the interesting ones.
    seen: std::sync::Mutex<HashMap<String, u32>>,
}

impl World {
    /// An access token of a new session for `account` at the clock's now: sessions of
    /// staff and admins end after days or hours, and the clock jumps by months.
    async fn token(&self, account: &user::Model, role: Role) -> String {
        let now = self.clock.now();
        let origin = Origin { ip: None, user_agent: None };
        let (info, _) = sessions::open(&self.app.state.db, &self.app.state.keyring, account, role, &origin, now).await.unwrap();
        self.app.state.tokens.issue(account.id, info.session_id, role, now)
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>, key: Option<&str>) -> (u16, Value, String) {
        let mut req = self.app.auth(method, path, token);
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let route = path.split('/').filter(|p| !p.is_empty() && Uuid::parse_str(p).is_err()).collect::<Vec<_>>().join("/");
        *self.seen.lock().unwrap().entry(format!("{route} {status} {}", code(&body))).or_default() += 1;
        (status, body, text)
    }
}

/// A new person's valid ID number (GB 11643) for every card the test issues.
fn person() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let birth = chrono::NaiveDate::from_ymd_opt(1960, 1, 1).unwrap() + Duration::days(i64::from(n / 1000));
    let body = format!("411302{}{:03}", birth.format("%Y%m%d"), n % 1000);
    format!("{body}{}", zhuge_card::cards::number::mod11_2(&body).unwrap())
}

fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or("")
}

macro_rules! check {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($arg)+)));
        }
    };
}

/// One sequence: a new partner, benefit, desk and card, then the operations.
async fn run(w: &World, quota: Option<i32>, period: Period, start_offset_h: i64, ops: &[Op]) -> Result<(), TestCaseError> {
    let base = Utc.with_ymd_and_hms(2026, 11, 29, 1, 0, 0).single().unwrap();
    w.clock.set(base + Duration::hours(start_offset_h));
    let now = w.clock.now();
    let app = &w.app;
    let op_token = w.token(&w.operator, Role::SuperAdmin).await;
    let partner = app.create_partner(&op_token, partner_body("模型医院")).await;
    let body = json!({"title": "模型权益", "description": "", "tiers": ["A", "B", "C", "D", "E"], "quota": quota.unwrap_or(0),
        "period": period.wire(), "valid_from": "2020-01-01T00:00:00Z", "offline_ok": false});
    let mut body = body;
    if quota.is_none() {
        body.as_object_mut().unwrap().remove("quota");
    }
    let benefit = app.create_benefit(&op_token, partner, body).await;
    let staff = user::ActiveModel {
        username: sea_orm::ActiveValue::Set(Some(format!("model.{}", Uuid::new_v4().simple()))),
        partner_id: sea_orm::ActiveValue::Set(Some(partner)),
        ..zhuge_card::accounts::service::new_row(Role::MerchantStaff, now)
    }
    .insert(&app.state.db)
    .await
    .unwrap();
    let talent = zhuge_card::accounts::service::new_row(Role::Talent, now).insert(&app.state.db).await.unwrap();
    let card = {
        let txn = zhuge_card::db::begin_write(&app.state.db).await.unwrap();
        let id_number = person();
        let new = zhuge_card::cards::service::NewCard {
            user_id: talent.id,
            real_name: "模型",
            id_number: &id_number,
            tier: zhuge_card::classification::Tier::C,
            category: zhuge_card::classification::Category::Social,
            valid_years: 3,
        };
        let card = zhuge_card::cards::service::issue(&txn, &app.state.keyring, &Actor::cli(), new, now).await.unwrap();
        txn.commit().await.unwrap();
        card
    };
    let mut m = Model {
        quota,
        period,
        card: CardState::Active,
        valid_until: card.valid_until,
        partner_active: true,
        benefit_active: true,
        used: HashMap::new(),
        token: None,
        visit: None,
        last_request: None,
        redemptions: Vec::new(),
    };

    for (i, op) in ops.iter().enumerate() {
        let now = w.clock.now();
        let at = format!("op {i} {op:?} at {now}");
        match *op {
            Op::Advance(step) => w.clock.set(advance(now, step)),
            Op::Scan | Op::Rescan => {
                if matches!(op, Op::Scan) {
                    let t = w.token(&talent, Role::Talent).await;
                    let (status, qr, _) = w.call(reqwest::Method::GET, "/api/v1/me/card/qr", &t, None, None).await;
                    let expected = match (m.card, m.card_problem(now)) {
                        (CardState::Revoked, _) => Some((404, "no_card")),
                        (_, problem) => problem,
                    };
                    match expected {
                        Some((s, c)) => {
                            check!(status == s && code(&qr) == c, "{at}: QR expected {s} {c}, got {status} {qr}");
                            continue;
                        }
                        None => check!(status == 200, "{at}: QR expected 200, got {status} {qr}"),
                    }
                    m.token = Some(Token { value: qr["token"].as_str().unwrap().to_owned(), minted_at: now, consumed: false });
                }
                let Some(token) = &m.token else { continue };
                let s = w.token(&staff, Role::MerchantStaff).await;
                let (status, body, _) =
                    w.call(reqwest::Method::POST, "/api/v1/merchant/verify", &s, Some(json!({"qr": token.value})), None).await;
                let expired = now.timestamp().div_euclid(30) > token.minted_at.timestamp().div_euclid(30) + 1;
                let expected = if !m.partner_active {
                    Some((403, "partner_inactive"))
                } else if expired {
                    Some((410, "qr_expired"))
                } else if let Some(p) = m.card_problem(now) {
                    Some(p)
                } else if token.consumed {
                    Some((409, "qr_replayed"))
                } else {
                    None
                };
                match expected {
                    Some((s, c)) => check!(status == s && code(&body) == c, "{at}: verify expected {s} {c}, got {status} {body}"),
                    None => {
                        check!(status == 200, "{at}: verify expected 200, got {status} {body}");
                        let offered = body["benefits"].as_array().unwrap();
                        if m.benefit_active {
                            check!(offered.len() == 1, "{at}: one benefit expected: {body}");
                            check!(
                                offered[0]["remaining"] == m.remaining(now),
                                "{at}: remaining {} expected {}",
                                offered[0]["remaining"],
                                m.remaining(now)
                            );
                        } else {
                            check!(offered.is_empty(), "{at}: an inactive benefit was offered: {body}");
                        }
                        if let Some(t) = m.token.as_mut() {
                            t.consumed = true;
                        }
                        m.visit = Some((body["visit_id"].as_str().unwrap().to_owned(), now + Duration::minutes(5)));
                    }
                }
            }
            Op::Redeem | Op::Retry => {
                let s = w.token(&staff, Role::MerchantStaff).await;
                if let Op::Retry = op {
                    let Some((key, body, status0, text0)) = &m.last_request else { continue };
                    let (status, _, text) =
                        w.call(reqwest::Method::POST, "/api/v1/merchant/redemptions", &s, Some(body.clone()), Some(key)).await;
                    check!(status == *status0 && text == *text0, "{at}: a retry answered {status} {text}, the first {status0} {text0}");
                    continue;
                }
                let Some((visit, expires_at)) = m.visit.clone() else { continue };
                let body = json!({"visit_id": visit, "benefit_id": benefit});
                let key = Uuid::new_v4().to_string();
                let (status, answer, text) =
                    w.call(reqwest::Method::POST, "/api/v1/merchant/redemptions", &s, Some(body.clone()), Some(&key)).await;
                let win = window(m.period, now);
                let used = m.used.get(&win).copied().unwrap_or(0);
                let expected = if !m.partner_active {
                    Some((403, "partner_inactive"))
                } else if now >= expires_at {
                    Some((410, "visit_expired"))
                } else if !m.benefit_active {
                    Some((409, "benefit_unavailable"))
                } else if let Some(p) = m.card_problem(now) {
                    Some(p)
                } else if m.quota.is_some_and(|q| used >= q) {
                    Some((409, "quota_exhausted"))
                } else {
                    None
                };
                match expected {
                    Some((s, c)) => {
                        check!(status == s && code(&answer) == c, "{at}: redeem expected {s} {c}, got {status} {answer}");
                        // A 4xx is stored under the key: the retry replays it.
                        m.last_request = Some((key, body.clone(), status, text));
                    }
                    None => {
                        check!(status == 201, "{at}: redeem expected 201, got {status} {answer}");
                        if m.quota.is_some() {
                            *m.used.entry(win.clone()).or_default() += 1;
                        }
                        m.redemptions.push(Redemption {
                            id: answer["id"].as_str().unwrap().to_owned(),
                            created_at: now,
                            window: win,
                            voided: false,
                        });
                        m.last_request = Some((key, body.clone(), status, text));
                    }
                }
            }
            Op::Void => {
                let Some(r) = m.redemptions.last() else { continue };
                let s = w.token(&staff, Role::MerchantStaff).await;
                let path = format!("/api/v1/merchant/redemptions/{}/void", r.id);
                let (status, body, _) = w.call(reqwest::Method::POST, &path, &s, Some(json!({"reason": "模型"})), None).await;
                let expected = if !m.partner_active {
                    Some((403, "partner_inactive"))
                } else if !r.voided && now - r.created_at > Duration::hours(24) {
                    Some((409, "void_window_passed"))
                } else if r.voided {
                    Some((409, "already_voided"))
                } else {
                    None
                };
                match expected {
                    Some((s, c)) => check!(status == s && code(&body) == c, "{at}: void expected {s} {c}, got {status} {body}"),
                    None => {
                        check!(status == 200 && body["status"] == "voided", "{at}: void expected 200, got {status} {body}");
                        let win = r.window.clone();
                        if m.quota.is_some() {
                            let used = m.used.entry(win).or_default();
                            *used = (*used - 1).max(0);
                        }
                        if let Some(r) = m.redemptions.last_mut() {
                            r.voided = true;
                        }
                    }
                }
            }
            Op::Suspend | Op::Resume | Op::Revoke => {
                let reviewer = w.token(&w.operator, Role::SuperAdmin).await;
                let name = match op {
                    Op::Suspend => "suspend",
                    Op::Resume => "resume",
                    _ => "revoke",
                };
                let path = format!("/api/v1/admin/cards/{}/{name}", card.id);
                let (status, body, _) = w.call(reqwest::Method::POST, &path, &reviewer, Some(json!({"reason": "模型"})), None).await;
                let next = match (op, m.card) {
                    (Op::Suspend, CardState::Active) => Some(CardState::Suspended),
                    (Op::Resume, CardState::Suspended) => Some(CardState::Active),
                    (Op::Revoke, CardState::Active | CardState::Suspended) => Some(CardState::Revoked),
                    _ => None,
                };
                match next {
                    Some(state) => {
                        check!(status == 200, "{at}: expected 200, got {status} {body}");
                        m.card = state;
                    }
                    None => check!(status == 409 && code(&body) == "card_state_conflict", "{at}: expected 409, got {status} {body}"),
                }
            }
            Op::TogglePartner => {
                let t = w.token(&w.operator, Role::SuperAdmin).await;
                let status = if m.partner_active { "inactive" } else { "active" };
                let (s, body, _) = w
                    .call(reqwest::Method::PATCH, &format!("/api/v1/admin/partners/{partner}"), &t, Some(json!({"status": status})), None)
                    .await;
                check!(s == 200, "{at}: partner toggle answered {s} {body}");
                if m.partner_active {
                    // Its desks close: open visits end now.
                    if let Some((_, expires_at)) = m.visit.as_mut() {
                        *expires_at = Ord::min(*expires_at, now);
                    }
                }
                m.partner_active = !m.partner_active;
            }
            Op::ToggleBenefit => {
                let t = w.token(&w.operator, Role::SuperAdmin).await;
                let status = if m.benefit_active { "inactive" } else { "active" };
                let path = format!("/api/v1/admin/partners/{partner}/benefits/{benefit}");
                let (s, body, _) = w.call(reqwest::Method::PATCH, &path, &t, Some(json!({"status": status})), None).await;
                check!(s == 200, "{at}: benefit toggle answered {s} {body}");
                m.benefit_active = !m.benefit_active;
            }
        }
    }

    // The database agrees with the model.
    let rows = redemption::Entity::find().filter(redemption::Column::BenefitId.eq(benefit)).all(&app.state.db).await.unwrap();
    check!(rows.len() == m.redemptions.len(), "{} redemptions stored, the model made {}", rows.len(), m.redemptions.len());
    for r in &m.redemptions {
        let stored = rows.iter().find(|x| x.id.to_string() == r.id);
        let expected = if r.voided { "voided" } else { "completed" };
        check!(stored.is_some_and(|s| s.status == expected), "redemption {} should be {expected}", r.id);
    }
    let counters = quota_counter::Entity::find().filter(quota_counter::Column::BenefitId.eq(benefit)).all(&app.state.db).await.unwrap();
    let stored_total: i32 = counters.iter().map(|c| c.used).sum();
    let model_total: i32 = m.used.values().sum();
    check!(stored_total == model_total, "counters hold {stored_total} uses, the model {model_total}");
    for c in &counters {
        let completed = rows.iter().filter(|r| r.period_key == c.period_key && r.status == "completed").count();
        check!(c.used as usize == completed, "counter {} holds {}, but {completed} completed redemptions", c.period_key, c.used);
        check!(m.quota.is_none_or(|q| c.used <= q), "counter {} is over the quota", c.period_key);
    }
    Ok(())
}

#[test]
fn random_desk_sequences_agree_with_the_model() {
    let cases = std::env::var("MODEL_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(500);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let world = rt.block_on(async {
        let (settings, db) = test_settings().await;
        let clock = Clock::manual(Utc::now());
        let app = spawn_with_settings(settings, db, clock.clone()).await;
        let operator = user::ActiveModel {
            username: sea_orm::ActiveValue::Set(Some("model.operator".into())),
            ..zhuge_card::accounts::service::new_row(Role::SuperAdmin, clock.now())
        }
        .insert(&app.state.db)
        .await
        .unwrap();
        World { app, clock, operator, seen: std::sync::Mutex::default() }
    });
    // An unlimited benefit has no quota; every other period has one of 1 to 3 uses.
    let benefit = period().prop_flat_map(|p| {
        let quota = if p == Period::Unlimited { Just(None).boxed() } else { (1..=3i32).prop_map(Some).boxed() };
        (quota, Just(p))
    });
    let strategy = (benefit, 0i64..(24 * 400), prop::collection::vec(op(), 1..30));
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let result = runner.run(&strategy, |((quota, period), offset, ops)| rt.block_on(run(&world, quota, period, offset, &ops)));
    if let Err(e) = result {
        panic!("{e}");
    }
    let seen = world.seen.lock().unwrap().clone();
    let mut lines: Vec<_> = seen.iter().map(|(k, n)| format!("{n:>6} {k}")).collect();
    lines.sort();
    eprintln!("model: {cases} sequences; answers seen:\n{}", lines.join("\n"));
    if cases >= 200 {
        for answer in [
            "api/v1/merchant/redemptions 201 ",
            "api/v1/merchant/redemptions 409 quota_exhausted",
            "api/v1/merchant/redemptions 410 visit_expired",
            "api/v1/merchant/redemptions 403 partner_inactive",
            "api/v1/merchant/redemptions/void 200 ",
            "api/v1/merchant/redemptions/void 409 void_window_passed",
            "api/v1/merchant/verify 409 qr_replayed",
            "api/v1/merchant/verify 410 qr_expired",
            "api/v1/merchant/verify 409 card_suspended",
        ] {
            assert!(seen.get(answer).is_some_and(|n| *n > 0), "no sequence reached `{answer}`");
        }
    }
}
