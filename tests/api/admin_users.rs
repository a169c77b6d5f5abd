//! Admin accounts: created, listed, re-roled and disabled by super admins, all audited.

use entity::audit_log;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;
use zhuge_card::audit::{ChainReport, verify_chain};
use zhuge_card::auth::Role;

use crate::support::{assert_problem, json, spawn_app};

#[tokio::test]
async fn super_admins_create_admins_and_every_write_is_audited() {
    let app = spawn_app().await;
    let root = app.admin(Role::SuperAdmin).await;
    let (status, created) = json(
        app.post_as(
            "/api/v1/admin/users",
            &root.access,
            &json!({"username": "Reviewer.Wang", "password": "Initial-pass-1", "role": "reviewer"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["username"], "reviewer.wang");
    assert_eq!(created["role"], "reviewer");
    assert_eq!(created["status"], "active");
    assert_eq!(created["must_change_password"], true);
    assert!(created.get("password_hash").is_none());
    let id = created["id"].as_str().unwrap();

    let entry = audit_log::Entity::find().filter(audit_log::Column::TargetId.eq(id)).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(entry.action, "account.create");
    assert_eq!(entry.actor_id, Some(root.user_id));
    assert_eq!(entry.actor_role, "super_admin");
    assert_eq!(entry.ip.as_deref(), Some("127.0.0.1"));
    assert!(entry.request_id.is_some());
    assert!(!entry.after.unwrap().to_string().contains("Initial-pass-1"));

    let (status, fetched) = json(app.get_as(&format!("/api/v1/admin/users/{id}"), &root.access).await).await;
    assert_eq!((status, &fetched["username"]), (200, &json!("reviewer.wang")));
    assert!(matches!(verify_chain(&app.state.db, &app.state.keyring, app.state.clock.now()).await.unwrap(), ChainReport::Intact { .. }));
}

#[tokio::test]
async fn bad_account_input_changes_nothing() {
    let app = spawn_app().await;
    let root = app.admin(Role::SuperAdmin).await;
    let create = |body: serde_json::Value| app.post_as("/api/v1/admin/users", &root.access, &body);
    assert_eq!(create(json!({"username": "dup.user", "password": "Initial-pass-1", "role": "operator"})).await.status(), 201);
    assert_problem(
        create(json!({"username": "DUP.user", "password": "Initial-pass-1", "role": "operator"})).await,
        409,
        "username_unavailable",
    )
    .await;
    let body =
        assert_problem(create(json!({"username": "a b", "password": "short", "role": "operator"})).await, 422, "validation_failed").await;
    let fields: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["username", "password"]);
    assert_problem(create(json!({"username": "talent.x", "password": "Initial-pass-1", "role": "talent"})).await, 422, "validation_failed")
        .await;
    assert_problem(create(json!({"username": "x.y", "password": "Initial-pass-1", "role": "emperor"})).await, 422, "validation_failed")
        .await;
    let creates = audit_log::Entity::find().filter(audit_log::Column::Action.eq("account.create")).all(&app.state.db).await.unwrap();
    // The root account (made by the harness) and dup.user.
    assert_eq!(creates.len(), 2);
}

#[tokio::test]
async fn lists_paginate_with_a_stable_order() {
    let app = spawn_app().await;
    let root = app.admin(Role::SuperAdmin).await;
    for i in 0..3 {
        let body = json!({"username": format!("op.{i}"), "password": "Initial-pass-1", "role": "operator"});
        assert_eq!(app.post_as("/api/v1/admin/users", &root.access, &body).await.status(), 201);
    }
    let (_, page1) = json(app.get_as("/api/v1/admin/users?limit=2", &root.access).await).await;
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = json(app.get_as(&format!("/api/v1/admin/users?limit=2&cursor={cursor}"), &root.access).await).await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 2);
    assert!(page2["next_cursor"].is_null());
    let names: Vec<String> = [&page1, &page2]
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(names.len(), 4);
    assert_eq!(&names[1..], ["op.0", "op.1", "op.2"]);

    let (_, ops) = json(app.get_as("/api/v1/admin/users?role=operator", &root.access).await).await;
    assert_eq!(ops["items"].as_array().unwrap().len(), 3);
    assert_problem(app.get_as("/api/v1/admin/users?limit=101", &root.access).await, 422, "validation_failed").await;
    assert_problem(app.get_as("/api/v1/admin/users?limit=0", &root.access).await, 422, "validation_failed").await;
    assert_problem(app.get_as("/api/v1/admin/users?cursor=!!garbage!!", &root.access).await, 422, "validation_failed").await;
    assert_problem(app.get_as("/api/v1/admin/users?role=emperor", &root.access).await, 422, "validation_failed").await;
    assert_problem(app.get_as("/api/v1/admin/users/not-a-uuid", &root.access).await, 404, "not_found").await;
    assert_problem(app.get_as(&format!("/api/v1/admin/users/{}", uuid::Uuid::now_v7()), &root.access).await, 404, "not_found").await;
}

#[tokio::test]
async fn disabling_or_re_roling_an_account_revokes_its_sessions() {
    let app = spawn_app().await;
    let root = app.admin(Role::SuperAdmin).await;
    let (_, op) = app.account(Role::Operator, None).await;
    let (_, rev) = app.account(Role::Reviewer, None).await;
    assert_eq!(app.get_as("/api/v1/me", &op.access).await.status(), 200);

    let patch = |id: uuid::Uuid, body: serde_json::Value| {
        app.auth(reqwest::Method::PATCH, &format!("/api/v1/admin/users/{id}"), &root.access).json(&body).send()
    };
    let (status, body) = json(patch(op.user_id, json!({"role": "reviewer"})).await.unwrap()).await;
    assert_eq!((status, &body["role"]), (200, &json!("reviewer")));
    assert_problem(app.get_as("/api/v1/me", &op.access).await, 401, "session_revoked").await;

    let res = app.auth(reqwest::Method::DELETE, &format!("/api/v1/admin/users/{}", rev.user_id), &root.access).send().await.unwrap();
    let (status, body) = json(res).await;
    assert_eq!((status, &body["status"]), (200, &json!("disabled")));
    assert_problem(app.get_as("/api/v1/me", &rev.access).await, 401, "session_revoked").await;
    let username = body["username"].as_str().unwrap();
    assert_problem(app.password_login(username, crate::support::users::PASSWORD).await, 403, "account_disabled").await;

    // Nobody demotes or disables themselves.
    assert_problem(patch(root.user_id, json!({"status": "disabled"})).await.unwrap(), 409, "conflict").await;
    let actions: Vec<String> = audit_log::Entity::find()
        .order_by_asc(audit_log::Column::Seq)
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "account.update").count(), 2);
}

#[tokio::test]
async fn a_password_reset_forces_a_change_and_signs_out() {
    let app = spawn_app().await;
    let root = app.admin(Role::SuperAdmin).await;
    let (username, op) = app.account(Role::Operator, None).await;
    let res =
        app.post_as(&format!("/api/v1/admin/users/{}/password", op.user_id), &root.access, &json!({"password": "Reset-pass-123"})).await;
    assert_eq!(res.status(), 204);
    assert_problem(app.get_as("/api/v1/me", &op.access).await, 401, "session_revoked").await;
    let (_, tokens) = json(app.password_login(&username, "Reset-pass-123").await).await;
    let (_, me) = json(app.get_as("/api/v1/me", tokens["access_token"].as_str().unwrap()).await).await;
    assert_eq!(me["must_change_password"], true);
}

#[tokio::test]
async fn concurrent_audited_writes_keep_one_unbroken_chain() {
    let app = spawn_app().await;
    let root = app.admin(Role::SuperAdmin).await;
    let results = futures_util::future::join_all((0..12).map(|i| {
        app.post_as(
            "/api/v1/admin/users",
            &root.access,
            &json!({"username": format!("c.{i}"), "password": "Initial-pass-1", "role": "operator"}),
        )
    }))
    .await;
    assert!(results.iter().all(|r| r.status() == 201));
    assert!(matches!(
        verify_chain(&app.state.db, &app.state.keyring, app.state.clock.now()).await.unwrap(),
        ChainReport::Intact { entries: 13, .. }
    ));
}
