//! Findings of the attack run (issue 12), each held by the tests that would have caught it.

use entity::user;
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use zhuge_card::accounts::staff::CONFLICTS_PER_HOUR;
use zhuge_card::auth::Role;

use crate::support::catalog::partner_body;
use crate::support::{TestApp, assert_problem, json, spawn_app};

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
    known_times.sort();
    unknown_times.sort();
    let (known, unknown) = (known_times[1].as_secs_f64(), unknown_times[1].as_secs_f64());
    assert!(unknown > known / 3.0 && unknown < known * 3.0, "known {known:.4}s, unknown {unknown:.4}s");
}
