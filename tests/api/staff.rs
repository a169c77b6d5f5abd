//! Merchant staff accounts, by operators and by a partner's own manager.

use reqwest::Method;
use serde_json::json;
use zhuge_card::auth::Role;

use crate::support::catalog::partner_body;
use crate::support::{assert_problem, json, spawn_app};

#[tokio::test]
async fn operators_create_managers_who_manage_only_their_own_staff() {
    let app = spawn_app().await;
    let op = app.admin(Role::Operator).await;
    let x = app.create_partner(&op.access, partner_body("X 医院")).await;
    let y = app.create_partner(&op.access, partner_body("Y 学校")).await;

    let (status, manager) = json(
        app.post_as(
            &format!("/api/v1/admin/partners/{x}/staff"),
            &op.access,
            &json!({"username": "x.manager", "password": "Initial-pass-1", "role": "merchant_manager"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{manager}");
    assert_eq!(manager["partner_id"], x.to_string());
    assert_eq!(manager["must_change_password"], true);
    assert_problem(
        app.post_as(
            &format!("/api/v1/admin/partners/{x}/staff"),
            &op.access,
            &json!({"username": "x.manager", "password": "Initial-pass-1", "role": "merchant_staff"}),
        )
        .await,
        409,
        "username_unavailable",
    )
    .await;
    assert_problem(
        app.post_as(
            &format!("/api/v1/admin/partners/{x}/staff"),
            &op.access,
            &json!({"username": "x.boss", "password": "Initial-pass-1", "role": "super_admin"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let (_, y_staff) = json(
        app.post_as(
            &format!("/api/v1/admin/partners/{y}/staff"),
            &op.access,
            &json!({"username": "y.staff", "password": "Initial-pass-1", "role": "merchant_staff"}),
        )
        .await,
    )
    .await;

    // The manager signs in and must change the initial password first.
    let (_, tokens) = json(app.password_login("x.manager", "Initial-pass-1").await).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_problem(app.get_as("/api/v1/merchant/staff", &access).await, 403, "password_change_required").await;
    app.post_as("/api/v1/me/password", &access, &json!({"current_password": "Initial-pass-1", "new_password": "Manager-pass-22"})).await;

    let (status, created) = json(
        app.post_as(
            "/api/v1/merchant/staff",
            &access,
            &json!({"username": "x.nurse", "password": "Initial-pass-1", "role": "merchant_staff"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(created["partner_id"], x.to_string());
    assert_problem(
        app.post_as(
            "/api/v1/merchant/staff",
            &access,
            &json!({"username": "x.manager2", "password": "Initial-pass-1", "role": "merchant_manager"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let (_, list) = json(app.get_as("/api/v1/merchant/staff", &access).await).await;
    let names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["x.manager", "x.nurse"]);

    // Another partner's staff: refused, and untouched.
    let y_id = y_staff["id"].as_str().unwrap();
    let res = app
        .auth(Method::PATCH, &format!("/api/v1/merchant/staff/{y_id}"), &access)
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "forbidden").await;
    assert_problem(
        app.post_as(&format!("/api/v1/merchant/staff/{y_id}/password"), &access, &json!({"password": "Hijack-pass-123"})).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(app.password_login("y.staff", "Initial-pass-1").await.status(), 200);

    // Disabling their own nurse signs the nurse out.
    let (_, nurse) = json(app.password_login("x.nurse", "Initial-pass-1").await).await;
    let nurse_token = nurse["access_token"].as_str().unwrap();
    let nurse_id = created["id"].as_str().unwrap();
    let res = app
        .auth(Method::PATCH, &format!("/api/v1/merchant/staff/{nurse_id}"), &access)
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(res).await.1["status"], "disabled");
    assert_problem(app.get_as("/api/v1/me", nurse_token).await, 401, "session_revoked").await;

    // Staff are not managers; talents are neither.
    let talent = app.talent("t").await;
    assert_problem(app.get_as("/api/v1/merchant/staff", &talent.access).await, 403, "forbidden").await;
}
