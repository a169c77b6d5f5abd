//! The rehearsal's load driver (see `deploy/rehearsal/README.md`): a bounded mixed load
//! through the load balancer while a fault is injected, then the invariants, checked in
//! the database, as one row of the rehearsal's table.
//!
//!     rehearsal setup --base URL --state FILE            # accounts, partners, cards
//!     rehearsal run --base URL --state FILE --db URL --name NAME --seconds S \
//!         [--clients C] [--rate R] [--fault-at T --fault 'shell command'] [--table FILE]
//!
//! Clients behave as a desk should: a network error or a 5xx is retried (with the same
//! Idempotency-Key for a redemption) until the request's deadline; a QR whose verification
//! answer was lost is scanned afresh. A request counts as failed only when its client gave
//! up. The admin accounts come from `zhuge-card create-admin` (`ZR_SUPER`, `ZR_OPERATOR`,
//! `ZR_REVIEWER` as `name:password`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Database, Statement};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

const TALENTS: usize = 64;
const PARTNERS: usize = 4;
const STAFF_PASSWORD: &str = "Rehearsal-staff-2026";
/// How long a client keeps retrying one request before it gives up.
const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Serialize, Deserialize, Clone)]
struct Session {
    access: String,
    refresh: String,
}

#[derive(Serialize, Deserialize, Clone)]
struct Desk {
    partner: Uuid,
    benefits: Vec<Uuid>,
    staff: Session,
}

#[derive(Serialize, Deserialize)]
struct State {
    talents: Vec<Session>,
    desks: Vec<Desk>,
    operator: Session,
    superadmin: Session,
    /// Signed in at setup and never used by the load: still signed in after every fault?
    sentinel: Session,
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn need(name: &str) -> anyhow::Result<String> {
    arg(name).ok_or_else(|| anyhow!("missing {name}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    drop(rustls::crypto::ring::default_provider().install_default());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).pool_max_idle_per_host(256).build()?;
    let api = Api { client, base: need("--base")? };
    match std::env::args().nth(1).as_deref() {
        Some("setup") => setup(&api, &need("--state")?).await,
        Some("run") => run(&api).await,
        _ => bail!("usage: rehearsal setup|run …"),
    }
}

#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
}

/// One logical request's outcome after its retries.
struct Answer {
    status: StatusCode,
    body: Value,
}

#[derive(Default)]
struct Tally {
    attempts: AtomicU64,
    requests: AtomicU64,
    failed: AtomicU64,
    /// Milliseconds since the start of the run of the last attempt that failed.
    last_failure_ms: AtomicU64,
    latencies: Mutex<Vec<u32>>,
    redeemed: Mutex<Vec<Uuid>>,
    failures: Mutex<Vec<String>>,
}

impl Api {
    /// Sends one request, retrying network errors and 5xx answers until [`DEADLINE`].
    async fn call(
        &self,
        tally: Option<(&Tally, Instant)>,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(25);
        loop {
            let mut req = self.client.request(method.clone(), format!("{}{path}", self.base));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            if let Some(k) = key {
                req = req.header("idempotency-key", k);
            }
            if let Some((t, _)) = tally {
                t.attempts.fetch_add(1, Ordering::Relaxed);
            }
            let outcome = match req.send().await {
                Ok(res) if !res.status().is_server_error() => {
                    let status = res.status();
                    match res.bytes().await {
                        Ok(bytes) => Ok(Answer { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Ok(res) => Err(format!("{} {}", res.status(), res.text().await.unwrap_or_default().chars().take(200).collect::<String>())),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(answer) => {
                    if let Some((t, _)) = tally {
                        t.requests.fetch_add(1, Ordering::Relaxed);
                        let ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
                        t.latencies.lock().unwrap_or_else(|p| p.into_inner()).push(ms);
                    }
                    return Ok(answer);
                }
                Err(e) => {
                    if let Some((t, run_start)) = tally {
                        t.last_failure_ms.fetch_max(u64::try_from(run_start.elapsed().as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
                    }
                    if started.elapsed() > DEADLINE {
                        if let Some((t, _)) = tally {
                            t.requests.fetch_add(1, Ordering::Relaxed);
                            t.failed.fetch_add(1, Ordering::Relaxed);
                            t.failures.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{method} {path}: {e}"));
                        }
                        bail!("{method} {path} gave up: {e}");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    async fn ok(&self, method: Method, path: &str, token: Option<&str>, body: Option<&Value>) -> anyhow::Result<Value> {
        let a = self.call(None, method.clone(), path, token, body, None).await?;
        if !a.status.is_success() {
            bail!("{method} {path}: {} {}", a.status, a.body);
        }
        Ok(a.body)
    }

    async fn password_login(&self, who: &str) -> anyhow::Result<Session> {
        let (username, password) = who.split_once(':').ok_or_else(|| anyhow!("name:password expected"))?;
        let t =
            self.ok(Method::POST, "/api/v1/auth/password/login", None, Some(&json!({"username": username, "password": password}))).await?;
        session(&t)
    }
}

fn session(tokens: &Value) -> anyhow::Result<Session> {
    let s = |k: &str| tokens[k].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no {k} in {tokens}"));
    Ok(Session { access: s("access_token")?, refresh: s("refresh_token")? })
}

fn id_number(n: usize) -> anyhow::Result<String> {
    let body = format!("4113021990{:02}{:02}{:03}", 1 + n / 28 % 12, 1 + n % 28, n % 1000);
    let check = zhuge_card::cards::number::mod11_2(&body).ok_or_else(|| anyhow!("check digit"))?;
    Ok(format!("{body}{check}"))
}

async fn setup(api: &Api, state_file: &str) -> anyhow::Result<()> {
    let operator = api.password_login(&std::env::var("ZR_OPERATOR")?).await?;
    let reviewer = api.password_login(&std::env::var("ZR_REVIEWER")?).await?;
    let superadmin = api.password_login(&std::env::var("ZR_SUPER")?).await?;
    let run = &Uuid::new_v4().simple().to_string()[..6];
    let mut desks = Vec::new();
    for p in 0..PARTNERS {
        let partner = api
            .ok(
                Method::POST,
                "/api/v1/admin/partners",
                Some(&operator.access),
                Some(&json!({"name": format!("演练单位 {run}-{p}"), "category": "hospital", "district": "卧龙区",
                    "address": "南阳市卧龙区工业路 312 号", "lat": 32.99, "lng": 112.53, "phone": "0377-63200000",
                    "opening_hours": "08:00-17:30", "description": "演练"})),
            )
            .await?;
        let partner: Uuid = partner["id"].as_str().context("partner id")?.parse()?;
        let mut benefits = Vec::new();
        for (title, quota, period) in [("专家号优先", json!(3), "day"), ("体检折扣", json!(10_000), "year")] {
            let b = api
                .ok(
                    Method::POST,
                    &format!("/api/v1/admin/partners/{partner}/benefits"),
                    Some(&operator.access),
                    Some(&json!({"title": title, "description": "演练", "tiers": ["A", "B", "C", "D", "E"], "quota": quota,
                        "period": period, "valid_from": "2020-01-01T00:00:00Z", "offline_ok": false})),
                )
                .await?;
            benefits.push(b["id"].as_str().context("benefit id")?.parse()?);
        }
        let username = format!("desk.{run}.{p}");
        api.ok(
            Method::POST,
            &format!("/api/v1/admin/partners/{partner}/staff"),
            Some(&operator.access),
            Some(&json!({"username": username, "password": "Initial-pass-2026", "role": "merchant_staff"})),
        )
        .await?;
        let first = api.password_login(&format!("{username}:Initial-pass-2026")).await?;
        api.call(
            None,
            Method::POST,
            "/api/v1/me/password",
            Some(&first.access),
            Some(&json!({"current_password": "Initial-pass-2026", "new_password": STAFF_PASSWORD})),
            None,
        )
        .await?;
        let staff = api.password_login(&format!("{username}:{STAFF_PASSWORD}")).await?;
        desks.push(Desk { partner, benefits, staff });
    }
    let mut talents = Vec::new();
    for i in 0..TALENTS {
        let t = session(&api.ok(Method::POST, "/api/v1/auth/wechat/login", None, Some(&json!({"code": format!("r{run}n{i}.x")}))).await?)?;
        let app = api
            .ok(
                Method::POST,
                "/api/v1/me/applications",
                Some(&t.access),
                Some(&json!({"real_name": "张三明", "id_number": id_number(i)?, "employer": "南阳理工学院", "category": "sci_tech",
                    "claimed_tier": "B", "education": "博士研究生", "title": "副教授", "document_ids": []})),
            )
            .await?;
        let id = app["id"].as_str().context("application id")?;
        api.ok(
            Method::POST,
            &format!("/api/v1/admin/applications/{id}/approve"),
            Some(&reviewer.access),
            Some(&json!({"tier": "B", "category": "sci_tech"})),
        )
        .await?;
        talents.push(t);
    }
    let sentinel =
        session(&api.ok(Method::POST, "/api/v1/auth/wechat/login", None, Some(&json!({"code": format!("sentinel{run}.x")}))).await?)?;
    let state = State { talents, desks, operator, superadmin, sentinel };
    std::fs::write(state_file, serde_json::to_vec_pretty(&state)?)?;
    eprintln!("setup: {PARTNERS} partners, {TALENTS} talents with cards");
    Ok(())
}

/// One desk cycle: the talent shows a QR, the desk verifies it and redeems one use.
async fn desk_cycle(api: &Api, tally: &Tally, start: Instant, talent: &Session, desk: &Desk, n: u64) -> anyhow::Result<()> {
    let t = Some((tally, start));
    let mut visit = None;
    for _ in 0..5 {
        let qr = api.call(t, Method::GET, "/api/v1/me/card/qr", Some(&talent.access), None, None).await?;
        if qr.status != StatusCode::OK {
            return unexpected(tally, "qr", &qr);
        }
        let body = json!({"qr": qr.body["token"]});
        let v = api.call(t, Method::POST, "/api/v1/merchant/verify", Some(&desk.staff.access), Some(&body), None).await?;
        match v.status {
            StatusCode::OK => {
                visit = Some(v.body);
                break;
            }
            // A retry of a verification whose answer was lost: scan a fresh QR.
            StatusCode::CONFLICT if v.body["code"] == "qr_replayed" => continue,
            _ => return unexpected(tally, "verify", &v),
        }
    }
    let Some(visit) = visit else { return Ok(()) };
    // n / 4, not n: the desk is n % 4, so n % 2 would tie each desk to one benefit.
    let benefit = desk.benefits[usize::try_from(n / 4).unwrap_or(0) % desk.benefits.len()];
    let key = Uuid::new_v4().to_string();
    let body = json!({"visit_id": visit["visit_id"], "benefit_id": benefit});
    let began = Instant::now();
    loop {
        let r = api.call(t, Method::POST, "/api/v1/merchant/redemptions", Some(&desk.staff.access), Some(&body), Some(&key)).await?;
        match (r.status, r.body["code"].as_str()) {
            (StatusCode::CREATED, _) => {
                let id: Uuid = r.body["id"].as_str().context("redemption id")?.parse()?;
                tally.redeemed.lock().unwrap_or_else(|p| p.into_inner()).push(id);
                return Ok(());
            }
            // The first attempt's claim is still leased (its instance died): wait and retry.
            (StatusCode::CONFLICT, Some("idempotency_in_flight")) if began.elapsed() < DEADLINE * 2 => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            // Refusals the rules give: answers, not failures. A reused or forever-in-flight
            // key is exactly what this rehearsal is here to catch, so those are failures.
            (StatusCode::CONFLICT, Some("quota_exhausted" | "benefit_unavailable")) => return Ok(()),
            _ => return unexpected(tally, "redeem", &r),
        }
    }
}

fn unexpected(tally: &Tally, what: &str, a: &Answer) -> anyhow::Result<()> {
    tally.failed.fetch_add(1, Ordering::Relaxed);
    tally.failures.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{what}: {} {}", a.status, a.body));
    Ok(())
}

async fn reader(api: &Api, tally: &Tally, start: Instant, talent: &Session) -> anyhow::Result<()> {
    let t = Some((tally, start));
    let page = api.call(t, Method::GET, "/api/v1/partners?limit=5", None, None, None).await?;
    if page.status != StatusCode::OK {
        return unexpected(tally, "partners", &page);
    }
    if let Some(cursor) = page.body["next_cursor"].as_str() {
        let next = api.call(t, Method::GET, &format!("/api/v1/partners?limit=5&cursor={cursor}"), None, None, None).await?;
        if next.status != StatusCode::OK {
            return unexpected(tally, "partners page 2", &next);
        }
    }
    for path in ["/api/v1/me", "/api/v1/me/benefits"] {
        let me = api.call(t, Method::GET, path, Some(&talent.access), None, None).await?;
        if me.status != StatusCode::OK {
            return unexpected(tally, path, &me);
        }
    }
    Ok(())
}

async fn admin_edit(api: &Api, tally: &Tally, start: Instant, operator: &Session, desk: &Desk, n: u64) -> anyhow::Result<()> {
    let path = format!("/api/v1/admin/partners/{}/benefits/{}", desk.partner, desk.benefits[1]);
    let a = api
        .call(Some((tally, start)), Method::PATCH, &path, Some(&operator.access), Some(&json!({"description": format!("演练 {n}")})), None)
        .await?;
    if a.status != StatusCode::OK {
        return unexpected(tally, "benefit edit", &a);
    }
    Ok(())
}

async fn run(api: &Api) -> anyhow::Result<()> {
    let state: State = serde_json::from_slice(&std::fs::read(need("--state")?)?)?;
    let name = need("--name")?;
    let seconds: u64 = need("--seconds")?.parse()?;
    let clients: usize = arg("--clients").map_or(Ok(32), |c| c.parse())?;
    // Cycles a second across all clients (0: as fast as they go).
    let rate: u64 = arg("--rate").map_or(Ok(0), |c| c.parse())?;
    let fault_at: u64 = arg("--fault-at").map_or(Ok(seconds / 4), |c| c.parse())?;
    let fault = arg("--fault");
    let db = Database::connect(need("--db")?).await?;
    let state = Arc::new(state);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let counter = Arc::new(AtomicU64::new(0));

    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (api, state, tally, stop, counter) = (api.clone(), state.clone(), tally.clone(), stop.clone(), counter.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    if let Some(micros) = (n * 1_000_000).checked_div(rate) {
                        // Paced: cycle n starts at n / rate seconds.
                        let due = start + Duration::from_micros(micros);
                        tokio::time::sleep_until(due.into()).await;
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    let talent = &state.talents[(c + usize::try_from(i).unwrap_or(0) * clients) % state.talents.len()];
                    let desk = &state.desks[usize::try_from(n).unwrap_or(0) % state.desks.len()];
                    let done = match n % 20 {
                        0..=13 => desk_cycle(&api, &tally, start, talent, desk, n).await,
                        14..=18 => reader(&api, &tally, start, talent).await,
                        _ if n % 200 == 19 => admin_edit(&api, &tally, start, &state.operator, desk, n).await,
                        _ => reader(&api, &tally, start, talent).await,
                    };
                    if let Err(e) = done {
                        eprintln!("client {c}: {e}");
                    }
                    i += 1;
                }
            })
        })
        .collect();

    let mut fault_ms = None;
    if let Some(cmd) = &fault {
        tokio::time::sleep_until((start + Duration::from_secs(fault_at)).into()).await;
        fault_ms = Some(u64::try_from(start.elapsed().as_millis()).unwrap_or(0));
        eprintln!("[{name}] injecting at {fault_at} s: {cmd}");
        let status = tokio::process::Command::new("bash").arg("-c").arg(cmd).status().await?;
        if !status.success() {
            eprintln!("[{name}] the fault command exited with {status}");
        }
    }
    tokio::time::sleep_until((start + Duration::from_secs(seconds)).into()).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await?;
    }

    let invariants = check(&db, api, &state, &tally).await?;
    let mut latencies = std::mem::take(&mut *tally.latencies.lock().unwrap_or_else(|p| p.into_inner()));
    latencies.sort_unstable();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or(0);
    let last_failure = tally.last_failure_ms.load(Ordering::Relaxed);
    let recovery = match fault_ms {
        Some(f) if last_failure > f => format!("{:.1} s", (last_failure - f) as f64 / 1000.0),
        Some(_) => "0 s".to_owned(),
        None => "-".to_owned(),
    };
    let failed = tally.failed.load(Ordering::Relaxed);
    let row = format!(
        "| {name} | {} | {} | {failed} | {recovery} | {} | {} | {} |{}",
        tally.attempts.load(Ordering::Relaxed),
        tally.requests.load(Ordering::Relaxed),
        pct(0.5),
        pct(0.99),
        tally.redeemed.lock().unwrap_or_else(|p| p.into_inner()).len(),
        invariants.iter().map(|(_, ok, _)| format!(" {} |", if *ok { "ok" } else { "FAIL" })).collect::<String>(),
    );
    println!("{row}");
    for (what, ok, detail) in &invariants {
        eprintln!("[{name}] {what}: {} {detail}", if *ok { "ok" } else { "FAILED" });
    }
    for f in tally.failures.lock().unwrap_or_else(|p| p.into_inner()).iter().take(10) {
        eprintln!("[{name}] failed: {f}");
    }
    if let Some(table) = arg("--table") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(table)?;
        writeln!(file, "{row}")?;
    }
    if invariants.iter().any(|(_, ok, _)| !ok) {
        std::process::exit(2);
    }
    Ok(())
}

async fn scalar(db: &sea_orm::DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql.to_owned())).await?.context("no row")?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// The invariants, each as (name, holds, detail).
async fn check(
    db: &sea_orm::DatabaseConnection,
    api: &Api,
    state: &State,
    tally: &Tally,
) -> anyhow::Result<Vec<(&'static str, bool, String)>> {
    let seen: Vec<Uuid> = tally.redeemed.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let distinct: HashSet<Uuid> = seen.iter().copied().collect();
    let list = if seen.is_empty() { "NULL".to_owned() } else { seen.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(",") };
    let found = scalar(db, &format!("SELECT count(*) FROM redemptions WHERE status = 'completed' AND id IN ({list})")).await?;
    let doubled =
        scalar(db, "SELECT count(*) FROM (SELECT visit_id FROM redemptions GROUP BY visit_id, benefit_id HAVING count(*) > 1) d").await?;
    let over = scalar(
        db,
        "SELECT count(*) FROM quota_counters q JOIN benefits b ON b.id = q.benefit_id WHERE b.quota IS NOT NULL AND q.used > b.quota",
    )
    .await?;
    let mismatched = scalar(
        db,
        "SELECT count(*) FROM quota_counters q FULL OUTER JOIN (SELECT card_id, benefit_id, period_key, count(*) AS n FROM redemptions \
         WHERE status = 'completed' GROUP BY card_id, benefit_id, period_key) r \
         ON r.card_id = q.card_id AND r.benefit_id = q.benefit_id AND r.period_key = q.period_key \
         WHERE coalesce(q.used, 0) <> coalesce(r.n, 0)",
    )
    .await?;
    let reused = scalar(db, "SELECT count(*) FROM (SELECT nonce FROM visits GROUP BY nonce HAVING count(*) > 1) n").await?;
    let me = api.call(None, Method::GET, "/api/v1/me", Some(&state.sentinel.access), None, None).await;
    let signed_in = match me {
        Ok(a) if a.status == StatusCode::OK => true,
        // The access token outlived its 15 minutes: the session must still refresh.
        Ok(a) if a.body["code"] == "token_expired" => api
            .call(None, Method::POST, "/api/v1/auth/refresh", None, Some(&json!({"refresh_token": state.sentinel.refresh})), None)
            .await
            .is_ok_and(|a| a.status == StatusCode::OK),
        _ => false,
    };
    let chain = api.call(None, Method::GET, "/api/v1/admin/audit-log/verify", Some(&state.superadmin.access), None, None).await?;
    let intact = chain.status == StatusCode::OK && chain.body["intact"] == true;
    Ok(vec![
        (
            "every redemption seen exists once",
            found == i64::try_from(distinct.len())? && distinct.len() == seen.len() && doubled == 0,
            format!("{found} of {} found, {doubled} visits redeemed twice", distinct.len()),
        ),
        ("no counter over its quota", over == 0, format!("{over} over")),
        ("counters equal redemptions", mismatched == 0, format!("{mismatched} differ")),
        ("no QR nonce opened two visits", reused == 0, format!("{reused} reused")),
        ("sentinel still signed in", signed_in, String::new()),
        ("audit chain verifies", intact, chain.body.to_string()),
    ])
}
