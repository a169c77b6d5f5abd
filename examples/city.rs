//! A city-sized dataset (SPEC §9) written straight into PostgreSQL with `COPY`, for the
//! city-scale benchmark (`bench/city.sh`) and, at a small scale factor, for CI
//! (`.ci/scale.sh`).
//!
//! At `--scale 1`: 1.5 million talents with cards and approved applications, 10 000
//! partners over the 13 districts with a staff account each, 50 000 benefits of every
//! period, 20 million redemptions over two years (weekday and hour peaks, 1 % voided),
//! a visit for each and 20 % more verifications that redeemed nothing, the quota counters
//! those redemptions took, and an audit chain. Tiers are skewed to C–E. Names and ID
//! numbers are encrypted and indexed by the crate's own keyring (`ZHUGE_MASTER_KEY`, or
//! the dev key of `ZHUGE_DATA_DIR`), so the service reads them. The statistics rollup is
//! folded at the end, as the service's background fold would.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1/city ZHUGE_MASTER_KEY=… \
//!   cargo run --release --example city -- --scale 1 [--partners N] [--seed 1] [--check]
//! ```
//! `--partners N` sets the partner count apart from the scale: the whole city's catalogue
//! (10 000) beside a tenth of its talents, for the memory of a full catalogue cache.
//! `--bench-env` prints shell assignments for the benchmark (`bench/city.sh`): a talent's
//! access token, and that talent's card number, name and ID number to search by.
//! `--check` only verifies the invariants of what is there (counters match redemptions,
//! every card number's check character, the audit chain) and exits 1 if one fails.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;

use chrono::{DateTime, Datelike, Duration, NaiveDate, SubsecRound, TimeZone, Timelike, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use uuid::Uuid;
use zhuge_card::catalog::dto::{District, PartnerCategory};
use zhuge_card::catalog::period::{self, Period};
use zhuge_card::classification::{Category, Tier};
use zhuge_card::clock::BEIJING;
use zhuge_card::config::Settings;
use zhuge_card::crypto::{Keyring, mask};

struct Args {
    scale: f64,
    /// The partner count, if not the scale's (a full catalogue beside fewer talents).
    partners: Option<usize>,
    seed: u64,
    check_only: bool,
    bench_env: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut out = Args { scale: 0.001, partners: None, seed: 1, check_only: false, bench_env: false };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--scale" => out.scale = it.next().ok_or_else(|| anyhow::anyhow!("--scale N"))?.parse()?,
            "--partners" => out.partners = Some(it.next().ok_or_else(|| anyhow::anyhow!("--partners N"))?.parse()?),
            "--seed" => out.seed = it.next().ok_or_else(|| anyhow::anyhow!("--seed N"))?.parse()?,
            "--check" => out.check_only = true,
            "--bench-env" => out.bench_env = true,
            other => anyhow::bail!("unknown argument {other}; use --scale F [--partners N] [--seed N] [--check]"),
        }
    }
    anyhow::ensure!(out.scale > 0.0 && out.scale <= 2.0, "--scale must be in (0, 2]");
    Ok(out)
}

/// One `COPY … FROM STDIN` in text format, sent in chunks.
struct Copy<'c> {
    copy: sea_orm::sqlx::postgres::PgCopyIn<&'c mut sea_orm::sqlx::PgConnection>,
    buf: String,
    rows: u64,
}

impl<'c> Copy<'c> {
    async fn start(conn: &'c mut sea_orm::sqlx::PgConnection, table: &str, columns: &str) -> anyhow::Result<Self> {
        let copy = conn.copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN")).await?;
        Ok(Self { copy, buf: String::with_capacity(1 << 23), rows: 0 })
    }

    /// Appends one row; `None` is NULL.
    async fn row(&mut self, fields: &[Option<&str>]) -> anyhow::Result<()> {
        push_row(&mut self.buf, fields);
        self.rows += 1;
        if self.buf.len() > (1 << 23) {
            self.copy.send(std::mem::take(&mut self.buf).into_bytes()).await?;
        }
        Ok(())
    }

    async fn finish(mut self) -> anyhow::Result<u64> {
        if !self.buf.is_empty() {
            self.copy.send(std::mem::take(&mut self.buf).into_bytes()).await?;
        }
        self.copy.finish().await?;
        Ok(self.rows)
    }
}

/// One row in COPY text format; `None` is NULL.
fn push_row(buf: &mut String, fields: &[Option<&str>]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            buf.push('\t');
        }
        match f {
            None => buf.push_str("\\N"),
            Some(v) => {
                for c in v.chars() {
                    match c {
                        '\\' => buf.push_str("\\\\"),
                        '\t' => buf.push_str("\\t"),
                        '\n' => buf.push_str("\\n"),
                        '\r' => buf.push_str("\\r"),
                        c => buf.push(c),
                    }
                }
            }
        }
    }
    buf.push('\n');
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "胡", "朱", "高", "林", "何", "郭", "马", "罗", "诸葛", "欧阳",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀英", "华", "建国", "志强",
    "晓燕", "子涵", "浩然",
];
const EDUCATION: &[&str] = &["博士研究生", "硕士研究生", "大学本科", "大学专科"];
const TITLES: &[&str] = &["正高级", "副高级", "中级", "初级", "高级技师", "技师"];

/// Tier shares: C–E hold most of the city's talents.
fn tier(rng: &mut StdRng) -> Tier {
    match rng.random_range(0..1000) {
        0..10 => Tier::A,
        10..50 => Tier::B,
        50..200 => Tier::C,
        200..500 => Tier::D,
        _ => Tier::E,
    }
}

/// A valid 18-character resident ID number born between 1960 and 2002 (Nanyang codes),
/// distinct for every `n` below 78 million (region, birth date and sequence are its digits).
fn id_number(n: u64) -> String {
    let region = ["411302", "411303", "411321", "411322", "411381"][(n % 5) as usize];
    let born = NaiveDate::from_ymd_opt(1960, 1, 1).unwrap_or_default() + Duration::days(((n / 5000) % 15_700) as i64);
    let body = format!("{region}{}{:03}", born.format("%Y%m%d"), (n / 5) % 1000);
    let check = zhuge_card::cards::number::mod11_2(&body).unwrap_or('0');
    format!("{body}{check}")
}

/// A moment in the two years before `end`, with weekday and office-hour peaks.
fn moment(rng: &mut StdRng, end: DateTime<Utc>) -> DateTime<Utc> {
    const HOURS: [u32; 24] = [1, 1, 1, 1, 1, 2, 4, 8, 20, 40, 45, 35, 20, 25, 35, 45, 40, 30, 20, 15, 10, 6, 3, 2];
    let total: u32 = HOURS.iter().sum();
    loop {
        let day = (end - Duration::days(rng.random_range(1..730))).with_timezone(&BEIJING).date_naive();
        let weight = match day.weekday().num_days_from_monday() {
            5 => 70,
            6 => 60,
            _ => 100,
        };
        if rng.random_range(0..100) >= weight {
            continue;
        }
        let mut pick = rng.random_range(0..total);
        let mut hour = 0;
        for (h, w) in HOURS.iter().enumerate() {
            if pick < *w {
                hour = h as u32;
                break;
            }
            pick -= w;
        }
        let local = day.and_hms_opt(hour, rng.random_range(0..60), rng.random_range(0..60)).unwrap_or_default();
        if let Some(t) = BEIJING.from_local_datetime(&local).single() {
            return t.with_timezone(&Utc) + Duration::microseconds(rng.random_range(0..1_000_000));
        }
    }
}

struct Benefit {
    id: Uuid,
    partner: usize,
    period: Period,
    quota: Option<i32>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    drop(rustls::crypto::ring::default_provider().install_default());
    let args = args()?;
    let settings = Settings::load(None)?;
    let url = settings.database_url();
    anyhow::ensure!(url.starts_with("postgres"), "DATABASE_URL must name a PostgreSQL database");
    let db = zhuge_card::db::connect_url(&url, 4).await?;
    zhuge_card::db::migrate(&db).await?;
    if args.bench_env {
        let keyring = zhuge_card::state::keyring(&settings)?;
        return bench_env(&db, &keyring).await;
    }
    if args.check_only {
        let keyring = zhuge_card::state::keyring(&settings)?;
        let failures = check(&db, &keyring).await?;
        anyhow::ensure!(failures == 0, "{failures} invariant(s) failed");
        return Ok(());
    }
    let cards: i64 = scalar(&db, "SELECT COUNT(*) FROM cards").await?;
    anyhow::ensure!(cards == 0, "the database already holds {cards} cards; generate into an empty one");
    let keyring = zhuge_card::state::keyring(&settings)?;
    generate(&db, &keyring, &args).await?;
    let failures = check(&db, &keyring).await?;
    anyhow::ensure!(failures == 0, "{failures} invariant(s) failed");
    Ok(())
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await?;
    Ok(row.ok_or_else(|| anyhow::anyhow!("no row: {sql}"))?.try_get_by_index::<i64>(0)?)
}

async fn generate(db: &DatabaseConnection, keyring: &Keyring, args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let n_partners = args.partners.unwrap_or((10_000.0 * args.scale).round() as usize).max(13);
    let n_cards = ((1_500_000.0 * args.scale).round() as u64).max(10);
    let n_redemptions = ((20_000_000.0 * args.scale).round() as u64).max(20);
    let now = Utc::now();
    let created = now - Duration::days(800);
    let password_hash = zhuge_card::auth::password::hash("City-staff-2026").await?;
    let pool = db.get_postgres_connection_pool();
    let mut conn = pool.acquire().await?;
    let c = &mut *conn;
    println!("city: scale {} → {n_partners} partners, {n_cards} cards, {n_redemptions} redemptions", args.scale);

    // Partners across the 13 districts, one staff account each.
    let mut partners = Vec::with_capacity(n_partners);
    let mut staff = Vec::with_capacity(n_partners);
    let mut copy = Copy::start(
        c,
        "partners",
        "id, name, category, district, address, lat, lng, phone, opening_hours, description, status, created_at, updated_at",
    )
    .await?;
    for i in 0..n_partners {
        let id = Uuid::now_v7();
        let district = District::ALL[i % District::ALL.len()];
        let category = PartnerCategory::ALL[rng.random_range(0..PartnerCategory::ALL.len())];
        let (lat, lng) = (32.99 + rng.random_range(-0.6..0.6), 112.53 + rng.random_range(-0.8..0.8));
        let t = ts(created);
        copy.row(&[
            Some(&id.to_string()),
            Some(&format!("{}合作单位{:05}", district.as_str(), i)),
            Some(category.as_str()),
            Some(district.as_str()),
            Some(&format!("{}人民路{}号", district.as_str(), i % 999 + 1)),
            Some(&format!("{lat:.6}")),
            Some(&format!("{lng:.6}")),
            Some(&format!("0377-6{:07}", i)),
            Some("08:00-18:00"),
            Some("为诸葛英才卡持卡人提供专属服务"),
            Some("active"),
            Some(&t),
            Some(&t),
        ])
        .await?;
        partners.push(id);
    }
    copy.finish().await?;
    let mut copy = Copy::start(
        c,
        "users",
        "id, role, status, username, password_hash, must_change_password, partner_id, failed_logins, created_at, updated_at",
    )
    .await?;
    for (i, p) in partners.iter().enumerate() {
        let id = Uuid::now_v7();
        let t = ts(created);
        copy.row(&[
            Some(&id.to_string()),
            Some("merchant_staff"),
            Some("active"),
            Some(&format!("city.staff.{i}")),
            Some(&password_hash),
            Some("f"),
            Some(&p.to_string()),
            Some("0"),
            Some(&t),
            Some(&t),
        ])
        .await?;
        staff.push(id);
    }
    copy.finish().await?;

    // Five benefits a partner, of every period; tiers always include E's neighbours.
    let mut benefits = Vec::with_capacity(n_partners * 5);
    let mut copy = Copy::start(
        c,
        "benefits",
        "id, partner_id, title, description, tiers, categories, quota, period, valid_from, valid_until, status, offline_ok, created_at, updated_at",
    )
    .await?;
    for (p, partner) in partners.iter().enumerate() {
        for k in 0..5 {
            let id = Uuid::now_v7();
            let period = match rng.random_range(0..100) {
                0..10 => Period::Day,
                10..25 => Period::Week,
                25..55 => Period::Month,
                55..65 => Period::Quarter,
                65..85 => Period::Year,
                85..90 => Period::Lifetime,
                _ => Period::Unlimited,
            };
            let quota = (period != Period::Unlimited).then(|| rng.random_range(1..=5));
            let lowest = ["A", "B", "C", "D", "E"][rng.random_range(1..5)];
            let tiers: String = "ABCDE".chars().take_while(|t| t.to_string().as_str() <= lowest).collect();
            let t = ts(created);
            copy.row(&[
                Some(&id.to_string()),
                Some(&partner.to_string()),
                Some(&format!("权益{k}")),
                Some("持卡人专享"),
                Some(&tiers),
                Some(""),
                quota.map(|q| q.to_string()).as_deref(),
                Some(period.as_str()),
                Some(&t),
                None,
                Some("active"),
                Some(if rng.random_range(0..4) == 0 { "t" } else { "f" }),
                Some(&t),
                Some(&t),
            ])
            .await?;
            benefits.push((Benefit { id, partner: p, period, quota }, tiers));
        }
    }
    copy.finish().await?;
    // Per tier, the benefits it may use.
    let by_tier: Vec<Vec<usize>> = Tier::ALL
        .iter()
        .map(|t| benefits.iter().enumerate().filter(|(_, (_, tiers))| tiers.contains(t.letter())).map(|(i, _)| i).collect())
        .collect();
    println!("city: catalogue in {:.1?}", started.elapsed());

    // Talents, their cards and approved applications.
    let mut cards: Vec<(Uuid, Tier, bool)> = Vec::with_capacity(n_cards as usize);
    let mut users = String::new();
    let mut apps = String::new();
    let mut card_rows = String::new();
    {
        let mut per_year: HashMap<i32, u32> = HashMap::new();
        for n in 0..n_cards {
            let (card, user) = (Uuid::now_v7(), Uuid::now_v7());
            let tier = tier(&mut rng);
            let category = Category::ALL[rng.random_range(0..Category::ALL.len())];
            let name = format!("{}{}", SURNAMES[rng.random_range(0..SURNAMES.len())], GIVEN[rng.random_range(0..GIVEN.len())]);
            let id = id_number(n);
            let issued = created + Duration::seconds(rng.random_range(0..86_400 * 60));
            let year = issued.with_timezone(&BEIJING).year();
            let seq = per_year.entry(year).or_insert(0);
            *seq += 1;
            let status = match rng.random_range(0..1000) {
                0..5 => "revoked",
                5..15 => "suspended",
                _ => "active",
            };
            push_row(
                &mut card_rows,
                &[
                    Some(&card.to_string()),
                    Some(&zhuge_card::cards::number::format(year, *seq)),
                    Some(&user.to_string()),
                    Some(&keyring.encrypt(zhuge_card::cards::service::NAME_CONTEXT, &name)),
                    Some(&mask::name(&name)),
                    Some(&keyring.blind_index("name", &name)),
                    Some(&keyring.encrypt(zhuge_card::cards::service::ID_CONTEXT, &id)),
                    Some(&keyring.blind_index("id_number", &id)),
                    Some(&tier.letter().to_string()),
                    Some(category.as_str()),
                    Some(status),
                    Some(&ts(issued)),
                    Some(&ts(issued + Duration::days(3 * 365))),
                    Some(if status == "active" { "0" } else { "1" }),
                    Some(&ts(issued)),
                    Some(&ts(issued)),
                ],
            );
            let t = ts(issued);
            let _ = writeln!(users, "{user}\ttalent\tactive\tcity-openid-{n}\tf\t0\t{t}\t{t}");
            let real_name_enc = keyring.encrypt(zhuge_card::applications::service::NAME_CONTEXT, &name);
            let id_enc = keyring.encrypt(zhuge_card::applications::service::ID_CONTEXT, &id);
            let _ = writeln!(
                apps,
                "{}\t{user}\t{real_name_enc}\t{id_enc}\t{}\t南阳市某单位\t{}\t{}\t{}\t{}\t[]\tapproved\t{t}\t{card}\t{t}\t{t}",
                Uuid::now_v7(),
                keyring.blind_index("id_number", &id),
                category.as_str(),
                tier.letter(),
                EDUCATION[rng.random_range(0..EDUCATION.len())],
                TITLES[rng.random_range(0..TITLES.len())],
            );
            // Suspended and revoked cards redeem nothing.
            cards.push((card, tier, status == "active"));
        }
        for (year, last) in per_year {
            execute(db, &format!("INSERT INTO card_sequences (year, last) VALUES ({year}, {last}) ON CONFLICT (year) DO UPDATE SET last = GREATEST(card_sequences.last, {last})")).await?;
        }
    }
    copy_text(c, "users", "id, role, status, wechat_openid, must_change_password, failed_logins, created_at, updated_at", users).await?;
    copy_text(
        c,
        "cards",
        "id, card_no, user_id, holder_name_enc, holder_masked, name_hash, id_number_enc, id_hash, tier, category, status, valid_from, valid_until, state_version, created_at, updated_at",
        card_rows,
    )
    .await?;
    copy_text(
        c,
        "applications",
        "id, user_id, real_name_enc, id_number_enc, id_hash, employer, category, claimed_tier, education, title, document_ids, status, decided_at, card_id, created_at, updated_at",
        apps,
    )
    .await?;
    println!("city: {n_cards} talents in {:.1?}", started.elapsed());

    // Redemptions card by card, never over a quota; a visit for each, and verifications
    // that redeemed nothing.
    let mean = n_redemptions as f64 / n_cards as f64;
    let mut redemptions = Copy::start(
        c,
        "redemptions",
        "id, card_id, benefit_id, partner_id, staff_id, visit_id, period_key, tier, day, status, created_at, voided_at, voided_by, void_reason, tag",
    )
    .await?;
    let mut visits = String::new();
    // Voids are chain entries of their own (see `audit::ledger`).
    let mut voids: Vec<(Uuid, Uuid, DateTime<Utc>)> = Vec::new();
    let mut counters = String::new();
    let mut written = 0u64;
    for (card, tier, active) in &cards {
        if !active {
            continue;
        }
        let eligible = &by_tier[Tier::ALL.iter().position(|t| t == tier).unwrap_or(0)];
        if eligible.is_empty() {
            continue;
        }
        // Heavy users and light ones: an exponential number around the mean.
        let k = (-(1.0 - rng.random::<f64>()).ln() * mean).round() as u64;
        let mut used: HashMap<(usize, String), i32> = HashMap::new();
        for _ in 0..k {
            // Popular benefits are popular: a skewed draw.
            let pick = eligible[((rng.random::<f64>().powf(1.6)) * eligible.len() as f64) as usize % eligible.len()];
            let (b, _) = &benefits[pick];
            let at = moment(&mut rng, now).trunc_subsecs(6);
            let key = period::window(b.period, at).key;
            let count = used.entry((pick, key.clone())).or_insert(0);
            if b.quota.is_some_and(|q| *count >= q) {
                continue;
            }
            let voided = rng.random_range(0..100) == 0;
            if !voided {
                *count += 1;
            }
            let (id, visit) = (Uuid::now_v7(), Uuid::now_v7());
            let day = zhuge_card::clock::day_key(zhuge_card::clock::beijing_date(at));
            let staff_id = staff[b.partner].to_string();
            let void_time = at + Duration::minutes(rng.random_range(1..120));
            let void_at = voided.then(|| ts(void_time));
            if voided {
                voids.push((id, staff[b.partner], void_time));
            }
            // Tagged as the service tags what it writes.
            let row = entity::redemption::Model {
                id,
                card_id: *card,
                benefit_id: b.id,
                partner_id: partners[b.partner],
                staff_id: staff[b.partner],
                visit_id: visit,
                period_key: key.clone(),
                tier: tier.letter().to_string(),
                day: day.clone(),
                status: String::new(),
                created_at: at,
                voided_at: None,
                voided_by: None,
                void_reason: None,
                ip: None,
                tag: String::new(),
            };
            let tag = zhuge_card::audit::ledger::redemption_tag(keyring, &row);
            redemptions
                .row(&[
                    Some(&id.to_string()),
                    Some(&card.to_string()),
                    Some(&b.id.to_string()),
                    Some(&partners[b.partner].to_string()),
                    Some(&staff_id),
                    Some(&visit.to_string()),
                    Some(&key),
                    Some(&tier.letter().to_string()),
                    Some(&day),
                    Some(if voided { "voided" } else { "completed" }),
                    Some(&ts(at)),
                    void_at.as_deref(),
                    voided.then_some(staff_id.as_str()),
                    voided.then_some("录入错误"),
                    Some(&tag),
                ])
                .await?;
            written += 1;
            let seen = at - Duration::seconds(rng.random_range(5..120));
            visit_line(&mut visits, keyring, visit, *card, partners[b.partner], staff[b.partner], seen);
            if rng.random_range(0..5) == 0 {
                let seen = moment(&mut rng, now).trunc_subsecs(6);
                visit_line(&mut visits, keyring, Uuid::now_v7(), *card, partners[b.partner], staff[b.partner], seen);
            }
        }
        for ((pick, key), n) in used {
            if benefits[pick].0.quota.is_some() {
                let _ = writeln!(counters, "{card}\t{}\t{key}\t{n}", benefits[pick].0.id);
            }
        }
        if visits.len() > (1 << 26) {
            // Visits go through their own COPY once the redemptions are in; keep memory
            // bounded by writing them to a side table now.
            copy_text_on_new(db, "visits", VISIT_COLUMNS, std::mem::take(&mut visits)).await?;
        }
        if counters.len() > (1 << 26) {
            copy_text_on_new(db, "quota_counters", "card_id, benefit_id, period_key, used", std::mem::take(&mut counters)).await?;
        }
    }
    redemptions.finish().await?;
    copy_text(c, "visits", VISIT_COLUMNS, visits).await?;
    copy_text(c, "quota_counters", "card_id, benefit_id, period_key, used", counters).await?;
    println!("city: {written} redemptions in {:.1?}", started.elapsed());

    // An audit chain: the card issues and a share of the voids, hash-linked as the
    // service links them.
    audit_chain(c, db, keyring, &cards, n_cards.div_ceil(100), &voids, now).await?;
    drop(conn);
    let steps = zhuge_card::redemption::stats::fold(db, now).await?;
    // The service anchors the ledgers in its audit chain as it runs; do the same for history.
    let anchors = zhuge_card::audit::ledger::anchor(db, keyring, now).await?;
    println!("city: ledgers anchored in {anchors} windows");
    // Two years of folds ran back to back (a step a day and rollup), each updating the
    // counts of the month and day rows it touched, with no autovacuum between them as a
    // service has over two years: the month rollup came out at 10 rows a page and its
    // covering index (which holds the count, so a fold's update is never HOT) at 3. A
    // rollup that has been vacuumed as it went is compact; rewrite them to that.
    let rollups: Vec<_> = zhuge_card::redemption::stats::ROLLUPS.iter().map(|r| r.table).collect();
    db.execute_unprepared(&format!("VACUUM FULL {}", rollups.join(", "))).await?;
    // As a database that has run for two years would be: every page all-visible and its
    // rows frozen, not left for autovacuum to rewrite (on two cores, for minutes) while
    // the benchmark measures, and with fresh statistics.
    db.execute_unprepared("VACUUM (FREEZE, ANALYZE)").await?;
    println!("city: rollup folded in {steps} steps; done in {:.1?}", started.elapsed());
    Ok(())
}

async fn execute(db: &DatabaseConnection, sql: &str) -> anyhow::Result<()> {
    db.execute_unprepared(sql).await?;
    Ok(())
}

/// COPYs rows already in COPY text format.
async fn copy_text(c: &mut sea_orm::sqlx::PgConnection, table: &str, columns: &str, text: String) -> anyhow::Result<()> {
    let mut copy = c.copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN")).await?;
    copy.send(text.into_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

async fn copy_text_on_new(db: &DatabaseConnection, table: &str, columns: &str, text: String) -> anyhow::Result<()> {
    let mut conn = db.get_postgres_connection_pool().acquire().await?;
    copy_text(&mut conn, table, columns, text).await
}

const VISIT_COLUMNS: &str = "id, card_id, partner_id, staff_id, nonce, created_at, expires_at, tag";

/// One visit in COPY text format, tagged as the service tags it.
fn visit_line(out: &mut String, keyring: &Keyring, id: Uuid, card: Uuid, partner: Uuid, staff: Uuid, seen: DateTime<Utc>) {
    let v = entity::visit::Model {
        id,
        card_id: card,
        partner_id: partner,
        staff_id: staff,
        nonce: Uuid::new_v4().simple().to_string(),
        created_at: seen.trunc_subsecs(6),
        expires_at: seen + Duration::minutes(5),
        ip: None,
        tag: String::new(),
    };
    let tag = zhuge_card::audit::ledger::visit_tag(keyring, &v);
    let _ = writeln!(out, "{id}\t{card}\t{partner}\t{staff}\t{}\t{}\t{}\t{tag}", v.nonce, ts(v.created_at), ts(v.expires_at));
}

async fn audit_chain(
    c: &mut sea_orm::sqlx::PgConnection,
    db: &DatabaseConnection,
    keyring: &Keyring,
    cards: &[(Uuid, Tier, bool)],
    n: u64,
    voids: &[(Uuid, Uuid, DateTime<Utc>)],
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    use sea_orm::EntityTrait;
    let head = entity::audit_head::Entity::find_by_id(1).one(db).await?.ok_or_else(|| anyhow::anyhow!("no audit head"))?;
    let (mut seq, mut prev) = (head.seq, head.hash);
    let mut copy = Copy::start(
        c,
        "audit_log",
        "seq, id, actor_id, actor_role, action, target_type, target_id, before, after, ip, request_id, created_at, prev_hash, hash",
    )
    .await?;
    let step = (cards.len() as u64 / n.max(1)).max(1) as usize;
    let start = now - Duration::days(700);
    let entry = |actor_id: Option<Uuid>,
                 role: &str,
                 action: &str,
                 target_type: &str,
                 target_id: String,
                 after: serde_json::Value,
                 at: DateTime<Utc>| {
        entity::audit_log::Model {
            seq: 0,
            id: Uuid::now_v7(),
            actor_id,
            actor_role: role.into(),
            action: action.into(),
            target_type: target_type.into(),
            target_id,
            before: None,
            after: Some(after),
            ip: None,
            request_id: None,
            created_at: at.trunc_subsecs(6),
            prev_hash: String::new(),
            hash: String::new(),
        }
    };
    let issues = cards.iter().step_by(step).enumerate().map(|(i, (card, _, _))| {
        let at = (start + Duration::minutes(i as i64 * 7)).with_nanosecond(0).unwrap_or(start);
        entry(None, "system", "card.issue", "card", card.to_string(), serde_json::json!({"status": "active"}), at)
    });
    let voided = voids.iter().map(|(id, staff, at)| {
        entry(Some(*staff), "merchant_staff", "redemption.void", "redemption", id.to_string(), serde_json::json!({"status": "voided"}), *at)
    });
    for mut e in issues.chain(voided) {
        seq += 1;
        e.seq = seq;
        e.prev_hash = prev.clone();
        // Keyed as the service keys its chain.
        e.hash = zhuge_card::audit::entry_tag(keyring, &e);
        let (actor, after) = (e.actor_id.map(|a| a.to_string()), e.after.as_ref().map(|a| a.to_string()));
        copy.row(&[
            Some(&seq.to_string()),
            Some(&e.id.to_string()),
            actor.as_deref(),
            Some(&e.actor_role),
            Some(&e.action),
            Some(&e.target_type),
            Some(&e.target_id),
            None,
            after.as_deref(),
            None,
            None,
            Some(&ts(e.created_at)),
            Some(&prev),
            Some(&e.hash),
        ])
        .await?;
        prev = e.hash;
    }
    copy.finish().await?;
    execute(db, &format!("UPDATE audit_head SET seq = {seq}, hash = '{prev}' WHERE id = 1")).await?;
    Ok(())
}

/// The invariants CI checks; prints each and returns how many failed.
async fn check(db: &DatabaseConnection, keyring: &Keyring) -> anyhow::Result<u32> {
    let mut failures = 0;
    let mut expect = |what: &str, bad: i64| {
        println!("check: {what}: {}", if bad == 0 { "ok".to_owned() } else { format!("{bad} FAILED") });
        if bad != 0 {
            failures += 1;
        }
    };
    // Every quota counter equals the completed redemptions of its period, and every
    // completed redemption of a benefit with a quota has its counter.
    expect(
        "quota counters match completed redemptions",
        scalar(
            db,
            "SELECT COUNT(*) FROM (
               SELECT q.card_id FROM quota_counters q
               LEFT JOIN (SELECT card_id, benefit_id, period_key, COUNT(*) AS n FROM redemptions WHERE status = 'completed'
                          GROUP BY 1, 2, 3) r USING (card_id, benefit_id, period_key)
               WHERE q.used <> COALESCE(r.n, 0)
               UNION ALL
               SELECT r.card_id FROM redemptions r JOIN benefits b ON b.id = r.benefit_id
               LEFT JOIN quota_counters q USING (card_id, benefit_id, period_key)
               WHERE r.status = 'completed' AND b.quota IS NOT NULL AND q.card_id IS NULL) bad",
        )
        .await?,
    );
    expect(
        "no counter above its benefit's quota",
        scalar(db, "SELECT COUNT(*) FROM quota_counters q JOIN benefits b ON b.id = q.benefit_id WHERE q.used > b.quota").await?,
    );
    let mut bad_numbers = 0;
    let mut last = String::new();
    loop {
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                "SELECT card_no FROM cards WHERE card_no > $1 ORDER BY card_no LIMIT 50000",
                [last.clone().into()],
            ))
            .await?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let no: String = r.try_get_by_index(0)?;
            if !zhuge_card::cards::number::is_valid(&no) {
                bad_numbers += 1;
            }
            last = no;
        }
    }
    expect("every card number's check character", bad_numbers);
    expect(
        "redemptions are of their card's tier and their benefit's partner",
        scalar(
            db,
            "SELECT COUNT(*) FROM redemptions r JOIN cards c ON c.id = r.card_id JOIN benefits b ON b.id = r.benefit_id
             WHERE r.tier <> c.tier OR r.partner_id <> b.partner_id",
        )
        .await?,
    );
    for rollup in zhuge_card::redemption::stats::ROLLUPS {
        let (table, name) = (rollup.table, rollup.watermark);
        let watermark = format!("COALESCE((SELECT folded_until FROM stats_watermarks WHERE name = '{name}'), '2000-01-01')");
        expect(
            &format!("the statistics rollup {table} plus its tail equals the completed redemptions"),
            scalar(
                db,
                &format!(
                    "SELECT CAST(ABS((SELECT COUNT(*) FROM redemptions WHERE status = 'completed')
                       - (SELECT COALESCE(SUM(count), 0) FROM {table})
                       - (SELECT COUNT(*) FROM redemptions WHERE status = 'completed' AND created_at >= {watermark})
                       + (SELECT COUNT(*) FROM redemptions WHERE voided_at >= {watermark} AND created_at < {watermark})) AS BIGINT)"
                ),
            )
            .await?,
        );
    }
    let chain = zhuge_card::audit::verify_chain(db, keyring, chrono::Utc::now()).await?;
    expect(
        "the audit trail (chain, anchored windows, row tags)",
        i64::from(!matches!(chain, zhuge_card::audit::ChainReport::Intact { .. })),
    );
    for (what, sql) in [
        ("cards", "SELECT COUNT(*) FROM cards"),
        ("partners", "SELECT COUNT(*) FROM partners"),
        ("benefits", "SELECT COUNT(*) FROM benefits"),
        ("redemptions", "SELECT COUNT(*) FROM redemptions"),
        ("visits", "SELECT COUNT(*) FROM visits"),
        ("quota counters", "SELECT COUNT(*) FROM quota_counters"),
        ("audit entries", "SELECT COUNT(*) FROM audit_log"),
    ] {
        println!("count: {what}: {}", scalar(db, sql).await?);
    }
    Ok(failures)
}

/// A talent in the middle of the card list, signed in: what `bench/city.sh` requests as.
async fn bench_env(db: &DatabaseConnection, keyring: &Keyring) -> anyhow::Result<()> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    let active = scalar(db, "SELECT COUNT(*) FROM cards WHERE status = 'active'").await?;
    let card = entity::card::Entity::find()
        .filter(entity::card::Column::Status.eq("active"))
        .order_by_asc(entity::card::Column::CardNo)
        .offset(u64::try_from(active / 2).unwrap_or(0))
        .one(db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no active card"))?;
    let user = entity::user::Entity::find_by_id(card.user_id).one(db).await?.ok_or_else(|| anyhow::anyhow!("no user"))?;
    let now = Utc::now();
    let origin = zhuge_card::auth::sessions::Origin { ip: None, user_agent: Some("bench".into()) };
    let (session, _) = zhuge_card::auth::sessions::open(db, keyring, &user, zhuge_card::auth::Role::Talent, &origin, now).await?;
    let tokens = zhuge_card::auth::tokens::TokenService::from_keyring(keyring);
    println!("TALENT_TOKEN={}", tokens.issue(user.id, session.session_id, zhuge_card::auth::Role::Talent, now));
    println!("CARD_NO={}", card.card_no);
    println!("CARD_ID={}", card.id);
    let name = keyring.decrypt(zhuge_card::cards::service::NAME_CONTEXT, &card.holder_name_enc)?;
    println!("CARD_NAME={}", utf8_percent(&name));
    println!("CARD_ID_NUMBER={}", keyring.decrypt(zhuge_card::cards::service::ID_CONTEXT, &card.id_number_enc)?);
    Ok(())
}

fn utf8_percent(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}
