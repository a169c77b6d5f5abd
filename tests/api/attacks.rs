//! Findings of the attack run (issue 12), each held by the tests that would have caught it.

use entity::{audit_log, login_failure, session, user};
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use zhuge_card::accounts::staff::CONFLICTS_PER_HOUR;
use zhuge_card::auth::Role;
use zhuge_card::auth::lockout::{EVERY_ADDRESS, PER_ADDRESS};

use crate::support::cards::{application as application_body, id_number};
use crate::support::catalog::partner_body;
use crate::support::redis_server::{self, RedisServer};
use crate::support::users::PASSWORD;
use crate::support::{TestApp, assert_problem, json, spawn_app, spawn_app_with};

/// The number of series `/metrics` exposes (sample lines, comments aside).
async fn series(app: &TestApp) -> usize {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
}

#[tokio::test]
async fn invented_methods_and_paths_do_not_grow_the_metrics() {
    let app = spawn_app().await;
    // Warm up the label sets a test run has anyway.
    app.get("/healthz").await;
    app.get("/metrics").await;
    let before = series(&app).await;
    for i in 0..300 {
        let method = Method::from_bytes(format!("X{i}METHOD").as_bytes()).unwrap();
        let path = if i % 2 == 0 { "/healthz" } else { "/api/v1/partners" };
        let res = app.request(method, path).send().await.unwrap();
        assert_eq!(res.status(), 405);
    }
    for i in 0..300 {
        let path = format!("/probe/{i}/{}", uuid::Uuid::new_v4().simple());
        let res = app.get(&format!("{path}?q={i}")).await;
        assert_eq!(res.status(), 404);
        let res = app.request(Method::POST, &format!("/api/v1/{i}")).send().await.unwrap();
        assert_eq!(res.status(), 404);
    }
    let after = series(&app).await;
    let text = app.get("/metrics").await.text().await.unwrap();
    // At most four new label sets (method `other` on the two paths, GET and POST on
    // `unmatched`), each one counter and one histogram (12 buckets, +Inf, sum, count).
    assert!(after - before <= 4 * 16, "metrics grew from {before} to {after} series: {text}");
    let other: u64 = text
        .lines()
        .filter(|l| l.starts_with(r#"zhuge_http_requests_total{method="other","#))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(other, 300, "{text}");
    assert!(text.contains(r#"zhuge_http_requests_total{method="GET",route="unmatched",status="404"} 300"#), "{text}");
    assert!(text.contains(r#"zhuge_http_requests_total{method="POST",route="unmatched",status="404"} 300"#), "{text}");
    assert!(!text.contains("METHOD") && !text.contains("/probe/"), "{text}");
}

/// Creates a staff member of the manager's partner through the merchant API.
async fn create_staff(app: &TestApp, manager: &str, username: &str) -> reqwest::Response {
    app.post_as("/api/v1/merchant/staff", manager, &json!({"username": username, "password": "Initial-pass-1", "role": "merchant_staff"}))
        .await
}

async fn accounts_named(app: &TestApp, username: &str) -> Vec<user::Model> {
    user::Entity::find().filter(user::Column::Username.eq(username)).all(&app.state.db).await.unwrap()
}

#[tokio::test]
async fn a_manager_cannot_tell_whose_username_is_in_use() {
    let app = spawn_app().await;
    let op = app.admin(Role::Operator).await;
    let own = app.create_partner(&op.access, partner_body("本院")).await;
    let other = app.create_partner(&op.access, partner_body("他院")).await;
    let (admin_name, _) = app.account(Role::SuperAdmin, None).await;
    let (other_staff, _) = app.account(Role::MerchantStaff, Some(other)).await;
    let (own_staff, _) = app.account(Role::MerchantStaff, Some(own)).await;
    let (_, manager) = app.account(Role::MerchantManager, Some(own)).await;

    let mut bodies = Vec::new();
    for name in [&admin_name, &other_staff, &own_staff] {
        let body = assert_problem(create_staff(&app, &manager.access, name).await, 409, "username_unavailable").await;
        bodies.push(body);
        // The name still belongs to its account alone.
        assert_eq!(accounts_named(&app, name).await.len(), 1);
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    let text = bodies[0].to_string();
    for hint in ["admin", "partner", "taken", "已被使用", "管理员"] {
        assert!(!text.contains(hint), "{text}");
    }
    let res = app
        .auth(Method::POST, "/api/v1/merchant/staff", &manager.access)
        .header("accept-language", "en")
        .json(&json!({"username": admin_name, "password": "Initial-pass-1", "role": "merchant_staff"}))
        .send()
        .await
        .unwrap();
    let en = assert_problem(res, 409, "username_unavailable").await;
    assert_eq!(en["title"], "This username is not available; choose another");

    // Guessing is budgeted: after ten unavailable names this hour (four so far), the manager waits,
    // whatever the next name is (so the refusal says nothing about it either).
    for i in 4..CONFLICTS_PER_HOUR {
        let name = if i % 2 == 0 { &admin_name } else { &other_staff };
        assert_problem(create_staff(&app, &manager.access, name).await, 409, "username_unavailable").await;
    }
    let res = create_staff(&app, &manager.access, "fresh.name").await;
    assert!(res.headers().get("retry-after").is_some());
    assert_problem(res, 429, "too_many_requests").await;
    assert_problem(create_staff(&app, &manager.access, &admin_name).await, 429, "too_many_requests").await;
    assert!(accounts_named(&app, "fresh.name").await.is_empty());
    // Another manager's budget is their own.
    let (_, other_manager) = app.account(Role::MerchantManager, Some(other)).await;
    let (status, created) = json(create_staff(&app, &other_manager.access, "fresh.name").await).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(accounts_named(&app, "fresh.name").await[0].partner_id, Some(other));
}

/// Headers and body of a response, without those that differ on every response.
async fn answer(res: reqwest::Response) -> (u16, Vec<String>, String) {
    let status = res.status().as_u16();
    let mut headers: Vec<String> = res
        .headers()
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "x-request-id" | "date"))
        .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap()))
        .collect();
    headers.sort();
    (status, headers, res.text().await.unwrap())
}

#[tokio::test]
async fn sign_in_failures_look_and_take_the_same_for_known_and_unknown_names() {
    let app = spawn_app().await;
    let (known, _) = app.account(Role::SuperAdmin, None).await;
    let mut known_times = Vec::new();
    let mut unknown_times = Vec::new();
    // Fewer attempts per name than lock it.
    for i in 0..4 {
        let started = std::time::Instant::now();
        let a = answer(app.password_login(&known, "Wrong-password-1").await).await;
        known_times.push(started.elapsed());
        let started = std::time::Instant::now();
        let b = answer(app.password_login(&format!("nobody.{i}"), "Wrong-password-1").await).await;
        unknown_times.push(started.elapsed());
        assert_eq!(a.0, 401);
        assert_eq!(a, b);
    }
    // Both check a password hash (the unknown name a dummy one): no fast path to time.
    // The fastest of each: load on the machine only ever adds time.
    let known = known_times.iter().min().unwrap().as_secs_f64();
    let unknown = unknown_times.iter().min().unwrap().as_secs_f64();
    assert!(unknown > known / 3.0 && unknown < known * 3.0, "known {known:.4}s, unknown {unknown:.4}s");
}

const A: &str = "203.0.113.7";
const B: &str = "198.51.100.23";

/// A password sign-in through a proxy that says the client is `forwarded_for`.
async fn login_from(app: &TestApp, forwarded_for: &str, username: &str, password: &str) -> reqwest::Response {
    app.request(Method::POST, "/api/v1/auth/password/login")
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn failures_row(app: &TestApp, username: &str, address: &str) -> Option<login_failure::Model> {
    login_failure::Entity::find_by_id((username.to_owned(), address.to_owned())).one(&app.state.db).await.unwrap()
}

fn retry_after(res: &reqwest::Response) -> u64 {
    res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn five_wrong_passwords_from_one_address_leave_the_owner_in_from_another() {
    let app = spawn_app_with(|s| s.trust_proxy = true).await;
    let (admin, _) = app.account(Role::SuperAdmin, None).await;
    for i in 0..5 {
        // What the client itself put before the proxy's entry changes nothing.
        let res = login_from(&app, &format!("10.9.8.{i}, {A}"), &admin, "Wrong-password-1").await;
        assert_problem(res, 401, "invalid_credentials").await;
    }
    let res = login_from(&app, A, &admin, PASSWORD).await;
    assert!((800..=900).contains(&retry_after(&res)));
    assert_problem(res, 423, "account_locked").await;

    let (status, tokens) = json(login_from(&app, B, &admin, PASSWORD).await).await;
    assert_eq!(status, 200, "{tokens}");
    assert_problem(login_from(&app, A, &admin, PASSWORD).await, 423, "account_locked").await;
    // Another instance (its own in-process cache, or the shared Redis) agrees.
    let sibling = app.sibling().await;
    assert_problem(login_from(&sibling, A, &admin, PASSWORD).await, 423, "account_locked").await;
    assert_eq!(login_from(&sibling, B, &admin, PASSWORD).await.status(), 200);

    let now = chrono::Utc::now();
    let here = failures_row(&app, &admin, A).await.unwrap();
    assert!(here.locked_until.is_some_and(|t| t > now + chrono::Duration::minutes(14)), "{here:?}");
    assert!(failures_row(&app, &admin, B).await.is_none());
    let everywhere = failures_row(&app, &admin, "*").await.unwrap();
    assert_eq!((everywhere.failures, everywhere.locked_until), (5, None));
    // The session opened from B records B.
    let sessions = session::Entity::find().filter(session::Column::Ip.eq(B)).all(&app.state.db).await.unwrap();
    assert_eq!(sessions.len(), 2);

    // A password reset by another super admin clears the counts and locks.
    let other = app.admin(Role::SuperAdmin).await;
    let id = sessions[0].user_id;
    let res = app.post_as(&format!("/api/v1/admin/users/{id}/password"), &other.access, &json!({"password": "Reset-pass-2026"})).await;
    assert_eq!(res.status(), 204);
    assert!(failures_row(&app, &admin, A).await.is_none());
    assert!(failures_row(&app, &admin, "*").await.is_none());
    assert_eq!(login_from(&app, A, &admin, "Reset-pass-2026").await.status(), 200);
}

#[tokio::test]
async fn wrong_passwords_sent_at_once_are_checked_no_more_than_five_times() {
    let app = spawn_app_with(|s| s.trust_proxy = true).await;
    let (admin, _) = app.account(Role::SuperAdmin, None).await;
    let answers = futures_util::future::join_all((0..30).map(|_| login_from(&app, A, &admin, "Wrong-password-1"))).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    // Every attempt is counted before its password is checked: at most five are checked,
    // the rest are refused (locked, or over the per-minute limit), whatever the timing.
    assert!((1..=PER_ADDRESS.failures as usize).contains(&checked), "{statuses:?}");
    assert!(statuses.iter().all(|s| [401, 423, 429].contains(s)), "{statuses:?}");
    assert!(failures_row(&app, &admin, A).await.unwrap().locked_until.is_some() || checked < PER_ADDRESS.failures as usize);
    // The owner, elsewhere, is not held up.
    assert_eq!(login_from(&app, B, &admin, PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn housekeeping_forgets_old_failure_counts_but_keeps_live_locks() {
    let app = spawn_app().await;
    let now = chrono::Utc::now();
    let row = |name: &str, locked_until| login_failure::ActiveModel {
        username: sea_orm::ActiveValue::Set(name.into()),
        address: sea_orm::ActiveValue::Set(A.into()),
        failures: sea_orm::ActiveValue::Set(3),
        window_start: sea_orm::ActiveValue::Set(now - chrono::Duration::days(2)),
        locked_until: sea_orm::ActiveValue::Set(locked_until),
    };
    let rows = [row("old.unlocked", None), row("old.locked", Some(now + chrono::Duration::hours(1))), row("old.expired", Some(now))];
    login_failure::Entity::insert_many(rows).exec(&app.state.db).await.unwrap();
    zhuge_card::redemption::retention::run_once(&app.state).await;
    let left: Vec<String> = login_failure::Entity::find().all(&app.state.db).await.unwrap().into_iter().map(|r| r.username).collect();
    assert_eq!(left, ["old.locked"]);
}

#[tokio::test]
async fn lockouts_survive_a_redis_flushall() {
    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    let url = redis.url();
    let app = spawn_app_with(|s| {
        s.trust_proxy = true;
        s.redis_url = Some(url.clone().into());
    })
    .await;
    let (admin, _) = app.account(Role::Operator, None).await;
    for _ in 0..5 {
        assert_eq!(login_from(&app, A, &admin, "Wrong-password-1").await.status(), 401);
    }
    assert_problem(login_from(&app, A, &admin, PASSWORD).await, 423, "account_locked").await;

    let mut conn = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    assert!(!keys.is_empty(), "the test must flush something");
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();

    assert_problem(login_from(&app, A, &admin, PASSWORD).await, 423, "account_locked").await;
    assert_eq!(login_from(&app, B, &admin, PASSWORD).await.status(), 200);
    assert!(failures_row(&app, &admin, A).await.unwrap().locked_until.is_some());
}

#[tokio::test]
async fn guessing_from_many_addresses_meets_a_ceiling_that_spares_known_addresses() {
    let app = spawn_app_with(|s| s.trust_proxy = true).await;
    let (admin, _) = app.account(Role::SuperAdmin, None).await;
    // The owner's usual address.
    let known = "192.0.2.10";
    assert_eq!(login_from(&app, known, &admin, PASSWORD).await.status(), 200);
    // Ten addresses, five guesses each: 50 in all, the ceiling for one name.
    for name in [admin.as_str(), "no.such.admin"] {
        for i in 0..EVERY_ADDRESS.failures {
            let address = format!("203.0.113.{}", 100 + i / PER_ADDRESS.failures);
            assert_problem(login_from(&app, &address, name, "Wrong-password-1").await, 401, "invalid_credentials").await;
        }
        // A fresh address now meets the every-address lock, for a known name and an
        // unknown one alike.
        let res = login_from(&app, B, name, PASSWORD).await;
        assert!((3500..=3600).contains(&retry_after(&res)));
        assert_problem(res, 423, "account_locked").await;
    }
    assert!(failures_row(&app, &admin, "*").await.unwrap().locked_until.is_some());
    assert!(failures_row(&app, "no.such.admin", "*").await.unwrap().locked_until.is_some());
    // The owner at their usual address is let in.
    let (status, body) = json(login_from(&app, known, &admin, PASSWORD).await).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_ipv6_client_counts_as_its_64_network() {
    let app = spawn_app_with(|s| s.trust_proxy = true).await;
    let (admin, _) = app.account(Role::Reviewer, None).await;
    for i in 1..=5 {
        let res = login_from(&app, &format!("2001:db8:1:2::{i}"), &admin, "Wrong-password-1").await;
        assert_eq!(res.status(), 401);
    }
    assert_problem(login_from(&app, "2001:db8:1:2:ffff::9", &admin, PASSWORD).await, 423, "account_locked").await;
    assert_eq!(login_from(&app, "2001:db8:1:3::1", &admin, PASSWORD).await.status(), 200);
    assert!(failures_row(&app, &admin, "2001:db8:1:2::/64").await.unwrap().locked_until.is_some());
}

#[tokio::test]
async fn wechat_sign_in_is_generous_to_a_shared_carrier_address() {
    let app = spawn_app_with(|s| s.trust_proxy = true).await;
    // Many talents behind one carrier NAT address sign in within a minute.
    for i in 0..150 {
        let res = app
            .request(Method::POST, "/api/v1/auth/wechat/login")
            .header("x-forwarded-for", A)
            .json(&json!({"code": format!("nat-user-{i}.{}", uuid::Uuid::new_v4().simple())}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "sign-in {i}");
    }
    let talents = user::Entity::find().filter(user::Column::Role.eq("talent")).all(&app.state.db).await.unwrap();
    assert_eq!(talents.len(), 150);
}

#[tokio::test]
async fn a_reviewer_reveals_an_application_and_the_reveal_is_audited() {
    let app = spawn_app().await;
    let talent = app.talent("reveal").await;
    let id = id_number(41);
    let application = app.apply(&talent, &application_body("诸葛亮", &id)).await;
    let reviewer = app.admin(Role::Reviewer).await;
    let url = format!("/api/v1/admin/applications/{application}/pii");

    let (status, pii) = json(app.get_as(&url, &reviewer.access).await).await;
    assert_eq!(status, 200, "{pii}");
    assert_eq!(pii, json!({"application_id": application.to_string(), "real_name": "诸葛亮", "id_number": id}));
    let views = audit_log::Entity::find().filter(audit_log::Column::Action.eq("application.pii_view")).all(&app.state.db).await.unwrap();
    assert_eq!(views.len(), 1);
    let view = &views[0];
    assert_eq!((view.actor_id, view.actor_role.as_str()), (Some(reviewer.user_id), "reviewer"));
    assert_eq!((view.target_type.as_str(), view.target_id.as_str()), ("application", application.to_string().as_str()));
    assert_eq!(view.ip.as_deref(), Some("127.0.0.1"));
    // The audit entry itself holds no personal data.
    assert!(view.before.is_none() && view.after.is_none());

    // Super admins may too; everyone else is refused, and nothing is recorded for them.
    let super_admin = app.admin(Role::SuperAdmin).await;
    assert_eq!(app.get_as(&url, &super_admin.access).await.status(), 200);
    let op = app.admin(Role::Operator).await;
    let partner = app.create_partner(&op.access, partner_body("查看医院")).await;
    let (_, manager) = app.account(Role::MerchantManager, Some(partner)).await;
    let (_, staff) = app.account(Role::MerchantStaff, Some(partner)).await;
    for who in [&op, &manager, &staff, &talent] {
        assert_problem(app.get_as(&url, &who.access).await, 403, "forbidden").await;
    }
    assert_problem(app.get(&url).await, 401, "unauthorized").await;
    let missing = format!("/api/v1/admin/applications/{}/pii", uuid::Uuid::now_v7());
    assert_problem(app.get_as(&missing, &reviewer.access).await, 404, "not_found").await;
    let views = audit_log::Entity::find().filter(audit_log::Column::Action.eq("application.pii_view")).all(&app.state.db).await.unwrap();
    assert_eq!(views.len(), 2);
    assert_eq!(views[1].actor_id, Some(super_admin.user_id));

    // The list and the detail stay masked.
    let (_, list) = json(app.get_as("/api/v1/admin/applications", &reviewer.access).await).await;
    let listed = &list["items"][0];
    assert_eq!(listed["real_name"], "诸*亮");
    assert_eq!(listed["id_number"], format!("{}**********{}", &id[..4], &id[14..]));
    let (_, detail) = json(app.get_as(&format!("/api/v1/admin/applications/{application}"), &reviewer.access).await).await;
    assert_eq!(detail["id_number"], listed["id_number"]);
    assert!(!list.to_string().contains(&id) && !detail.to_string().contains("诸葛亮"));
}

#[tokio::test]
async fn statistics_are_for_operators_and_super_admins_only() {
    let app = spawn_app().await;
    let reviewer = app.admin(Role::Reviewer).await;
    assert_problem(app.get_as("/api/v1/admin/stats", &reviewer.access).await, 403, "forbidden").await;
    let res = app.auth(Method::GET, "/api/v1/admin/stats", &reviewer.access).header("accept", "text/csv").send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;
    for role in [Role::Operator, Role::SuperAdmin] {
        let admin = app.admin(role).await;
        let (status, stats) = json(app.get_as("/api/v1/admin/stats", &admin.access).await).await;
        assert_eq!(status, 200, "{role}: {stats}");
        assert_eq!(stats["rows"], json!([]));
    }
}

#[tokio::test]
async fn a_phone_code_of_another_mini_program_is_a_client_error() {
    let app = spawn_app().await;
    let t = app.talent("otherapp").await;
    let res = app.post_as("/api/v1/auth/wechat/phone", &t.access, &json!({"code": "phone-otherapp.13812345678"})).await;
    let body = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(body["errors"], json!([{"field": "code", "code": "other_app", "message": "手机号授权码不属于本小程序"}]));
    let row = user::Entity::find_by_id(t.user_id).one(&app.state.db).await.unwrap().unwrap();
    assert!(row.phone_enc.is_none() && row.phone_hash.is_none());
    // The same talent's own code still binds.
    assert_eq!(app.post_as("/api/v1/auth/wechat/phone", &t.access, &json!({"code": "phone.13812345678"})).await.status(), 200);
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let app = spawn_app().await;
    let op = app.admin(Role::Operator).await;
    app.create_partner(&op.access, partner_body("头请求医院")).await;
    for path in ["/healthz", "/api/v1/partners", "/.well-known/jwks.json"] {
        let get = app.get(path).await;
        let (get_type, get_body) = (get.headers().get("content-type").cloned(), get.bytes().await.unwrap());
        let head = app.request(Method::HEAD, path).send().await.unwrap();
        assert_eq!(head.status(), 200, "{path}");
        assert_eq!(head.headers().get("content-type").cloned(), get_type, "{path}");
        assert_eq!(head.headers().get("content-length").unwrap().to_str().unwrap(), get_body.len().to_string(), "{path}");
        assert!(head.bytes().await.unwrap().is_empty(), "{path}");
    }
    // Authentication and errors are those of GET, without their bodies.
    let head = app.auth(Method::HEAD, "/api/v1/me", &op.access).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let head = app.request(Method::HEAD, "/api/v1/me").send().await.unwrap();
    assert_eq!(head.status(), 401);
    assert_eq!(head.headers().get("content-type").unwrap(), "application/problem+json");
    assert!(head.bytes().await.unwrap().is_empty());
    assert_eq!(app.request(Method::HEAD, "/api/v1/no-such-thing").send().await.unwrap().status(), 404);
    // A POST-only path still refuses HEAD, and says what it allows.
    let head = app.request(Method::HEAD, "/api/v1/auth/logout").send().await.unwrap();
    assert_eq!(head.status(), 405);
    assert_eq!(head.headers().get("allow").unwrap(), "POST");
    let delete = app.request(Method::DELETE, "/api/v1/partners").send().await.unwrap();
    assert_eq!(delete.headers().get("allow").unwrap(), "GET, HEAD");
}

/// A JSON request with a raw body.
async fn send_json(app: &TestApp, method: Method, path: &str, access: Option<&str>, body: impl Into<Vec<u8>>) -> reqwest::Response {
    let mut req = app.request(method, path).header("content-type", "application/json").body(body.into());
    if let Some(access) = access {
        req = req.bearer_auth(access);
    }
    req.send().await.unwrap()
}

/// `data` as a gzip stream of stored (uncompressed) deflate blocks.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let crc = data.iter().fold(!0u32, |mut crc, &b| {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
        crc
    }) ^ !0;
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let len = u16::try_from(data.len()).unwrap();
    out.push(1); // the final block, stored
    out.extend(len.to_le_bytes());
    out.extend((!len).to_le_bytes());
    out.extend(data);
    out.extend(crc.to_le_bytes());
    out.extend(u32::try_from(data.len()).unwrap().to_le_bytes());
    out
}

#[tokio::test]
async fn json_bodies_must_be_objects() {
    let app = spawn_app().await;
    let (username, _) = app.account(Role::Operator, None).await;
    let sessions_before = session::Entity::find().all(&app.state.db).await.unwrap().len();
    let users_before = user::Entity::find().all(&app.state.db).await.unwrap().len();
    let array = format!(r#"["{username}","{PASSWORD}"]"#).into_bytes();

    let res = send_json(&app, Method::POST, "/api/v1/auth/password/login", None, array.clone()).await;
    let body = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(body["errors"], json!([{"field": "body", "code": "not_an_object", "message": "请求体须为 JSON 对象"}]));
    let res = send_json(&app, Method::POST, "/api/v1/auth/wechat/login", None, br#"["someone.1"]"#).await;
    assert_problem(res, 422, "validation_failed").await;
    // Compressed, the same.
    let res = app
        .request(Method::POST, "/api/v1/auth/password/login")
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip_stored(&array))
        .send()
        .await
        .unwrap();
    assert_eq!(assert_problem(res, 422, "validation_failed").await["errors"][0]["code"], "not_an_object");
    for other in [&b"  \"text\""[..], b"12", b"null", b"true", b"[]"] {
        let res = send_json(&app, Method::POST, "/api/v1/auth/wechat/login", None, other).await;
        let body = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "body", "{}", String::from_utf8_lossy(other));
    }
    // Nobody signed in, no talent was created.
    assert_eq!(session::Entity::find().all(&app.state.db).await.unwrap().len(), sessions_before);
    assert_eq!(user::Entity::find().all(&app.state.db).await.unwrap().len(), users_before);

    // An object still signs in, compressed or not.
    let object = format!(r#"{{"username":"{username}","password":"{PASSWORD}"}}"#).into_bytes();
    assert_eq!(send_json(&app, Method::POST, "/api/v1/auth/password/login", None, object.clone()).await.status(), 200);
    let res = app
        .request(Method::POST, "/api/v1/auth/password/login")
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip_stored(&object))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Not JSON at all stays malformed JSON; routing and authentication come first.
    assert_problem(send_json(&app, Method::POST, "/api/v1/auth/wechat/login", None, b"xyz").await, 400, "malformed_json").await;
    assert_problem(send_json(&app, Method::POST, "/api/v1/auth/wechat/login", None, b"[1,").await, 400, "malformed_json").await;
    assert_problem(send_json(&app, Method::POST, "/api/v1/auth/wechat/login", None, br#"{"code":"#).await, 400, "malformed_json").await;
    assert_problem(send_json(&app, Method::POST, "/api/v1/nowhere", None, b"[1]").await, 404, "not_found").await;
    assert_problem(send_json(&app, Method::POST, "/api/v1/merchant/verify", None, b"[1]").await, 401, "unauthorized").await;
}

#[tokio::test]
async fn well_formed_json_of_the_wrong_shape_is_a_validation_error_naming_its_field() {
    let app = spawn_app().await;
    let admin = app.admin(Role::SuperAdmin).await;
    let (_, target) = app.account(Role::Operator, None).await;
    let path = format!("/api/v1/admin/users/{}", target.user_id);
    for (body, field) in [
        (&br#"{"status":{}}"#[..], "status"),
        (br#"{"status":"bogus"}"#, "status"),
        (b"{\n  \"role\": \"operator\",\n  \"status\": [\"disabled\"]\n}", "status"),
        (br#"{"role":7}"#, "role"),
    ] {
        let res = send_json(&app, Method::PATCH, &path, Some(&admin.access), body).await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let res = send_json(&app, Method::POST, "/api/v1/auth/password/login", None, br#"{"username":1,"password":"x"}"#).await;
    assert_eq!(assert_problem(res, 422, "validation_failed").await["errors"][0]["field"], "username");
    // The account is as it was.
    let row = user::Entity::find_by_id(target.user_id).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.role.as_str()), ("active", "operator"));
}

#[tokio::test]
async fn query_errors_name_the_parameter() {
    let app = spawn_app().await;
    let reviewer = app.admin(Role::Reviewer).await;
    for (query, field) in [
        ("/api/v1/admin/applications?status=bogus", "status"),
        ("/api/v1/admin/applications?limit=5&status=bogus", "status"),
        ("/api/v1/partners?limit=many", "limit"),
        ("/api/v1/partners?category=zoo&q=x", "category"),
        ("/api/v1/partners?limit=many&q=x", "query"),
    ] {
        let problem = assert_problem(app.get_as(query, &reviewer.access).await, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
}

/// The values an enum schema of the served OpenAPI document lists.
fn spec_enum(spec: &serde_json::Value, name: &str) -> Vec<String> {
    let values = spec["components"]["schemas"][name]["enum"].as_array().unwrap_or_else(|| panic!("no enum schema {name}"));
    values.iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_openapi_enums_are_the_values_the_server_takes_and_sends() {
    let app = spawn_app().await;
    let (_, spec) = json(app.get("/openapi.json").await).await;
    let categories = spec_enum(&spec, "PartnerCategory");
    let districts = spec_enum(&spec, "District");
    let statuses = spec_enum(&spec, "Status");
    assert_eq!((categories.len(), districts.len(), statuses.len()), (11, 13, 2));
    let op = app.admin(Role::Operator).await;

    // Every documented value is accepted, in a body and in a query, and comes back as it was sent.
    let mut created = Vec::new();
    for (i, district) in districts.iter().enumerate() {
        let mut body = partner_body(&format!("单位 {i}"));
        body["district"] = json!(district);
        body["category"] = json!(categories[i % categories.len()]);
        created.push(app.create_partner(&op.access, body).await);
    }
    let first = format!("/api/v1/admin/partners/{}", created[0]);
    for status in statuses.iter().rev() {
        let res = app.auth(Method::PATCH, &first, &op.access).json(&json!({"status": status})).send().await.unwrap();
        let (code, partner) = json(res).await;
        assert_eq!((code, &partner["status"]), (200, &json!(status)), "{partner}");
    }
    app.auth(Method::PATCH, &first, &op.access).json(&json!({"status": statuses[1]})).send().await.unwrap();
    let (_, page) = json(app.get_as("/api/v1/admin/partners?limit=100", &op.access).await).await;
    let sent = |field: &str| {
        let mut values: Vec<String> = page["items"].as_array().unwrap().iter().map(|p| p[field].as_str().unwrap().to_owned()).collect();
        values.sort();
        values.dedup();
        values
    };
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    assert_eq!(sent("category"), sorted(&categories));
    assert_eq!(sent("district"), sorted(&districts));
    assert_eq!(sent("status"), sorted(&statuses));
    for (param, values) in [("category", &categories), ("district", &districts), ("status", &statuses)] {
        for value in values.iter() {
            let res = app.auth(Method::GET, "/api/v1/admin/partners", &op.access).query(&[(param, value)]).send().await.unwrap();
            let (code, page) = json(res).await;
            assert_eq!(code, 200, "{param}={value}: {page}");
            assert!(page["items"].as_array().unwrap().iter().all(|p| p[param] == json!(value)));
        }
    }
    // What the document used to list is refused.
    for (field, old) in [("category", "Hospital"), ("district", "Wolong"), ("status", "Active")] {
        let res = app.auth(Method::PATCH, &first, &op.access).json(&json!({ field: old })).send().await.unwrap();
        assert_eq!(assert_problem(res, 422, "validation_failed").await["errors"][0]["field"], field);
    }
}

#[tokio::test]
async fn problems_are_documented_as_the_type_they_are_served_as() {
    let app = spawn_app().await;
    let (_, spec) = json(app.get("/openapi.json").await).await;
    let mut problems = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                for (kind, content) in response["content"].as_object().into_iter().flatten() {
                    let is_problem = content["schema"]["$ref"] == "#/components/schemas/Problem";
                    assert_eq!(is_problem, kind == "application/problem+json", "{method} {path} {status}: {kind}");
                    problems += usize::from(is_problem);
                }
            }
        }
    }
    assert!(problems > 100, "{problems}");
    let res = app.get("/api/v1/me").await;
    assert_eq!(res.headers().get("content-type").unwrap(), "application/problem+json");
    assert!(spec["paths"]["/api/v1/me"]["get"]["responses"]["401"]["content"]["application/problem+json"].is_object());
}
