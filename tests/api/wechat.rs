//! Mini-program sign-in and phone binding through the WeChat stand-in.

use entity::user;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;

use crate::support::{assert_problem, json, spawn_app};

async fn users(app: &crate::support::TestApp) -> u64 {
    user::Entity::find().count(&app.state.db).await.unwrap()
}

#[tokio::test]
async fn first_sign_in_creates_the_talent_and_later_ones_find_them() {
    let app = spawn_app().await;
    let first = app.talent("alice").await;
    let second = app.talent("alice").await;
    assert_eq!(first.user_id, second.user_id);
    assert_ne!(first.access, second.access);
    let (status, me) = json(app.get_as("/api/v1/me", &first.access).await).await;
    assert_eq!(status, 200);
    assert_eq!(me["role"], "talent");
    assert!(me.get("phone").is_none());
    let row = user::Entity::find().filter(user::Column::WechatOpenid.eq("oid_alice")).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(row.id, first.user_id);
    assert_eq!(row.role, "talent");
    // The WeChat session key is kept encrypted and never shown.
    let stored = row.wechat_session_key_enc.unwrap();
    assert!(stored.starts_with("v1."));
    assert!(!me.to_string().contains("session_key"));
    assert_eq!(users(&app).await, 1);
}

#[tokio::test]
async fn unionid_is_recorded_when_wechat_sends_one() {
    let app = spawn_app().await;
    app.talent("bob+union").await;
    let row = user::Entity::find().filter(user::Column::WechatOpenid.eq("oid_bob")).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(row.wechat_unionid.as_deref(), Some("uid_bob"));
}

#[tokio::test]
async fn every_wechat_error_maps_to_a_clear_problem_and_creates_nothing() {
    let app = spawn_app().await;
    assert_problem(app.wechat_login_raw("invalid-1").await, 401, "wechat_code_invalid").await;
    assert_problem(app.wechat_login_raw("blocked-1").await, 403, "wechat_user_blocked").await;
    let res = app.wechat_login_raw("ratelimited-1").await;
    assert!(res.headers().get("retry-after").is_some());
    assert_problem(res, 429, "wechat_rate_limited").await;
    let res = app.wechat_login_raw("busy-1").await;
    assert_eq!(res.headers().get("retry-after").unwrap(), "1");
    assert_problem(res, 503, "wechat_busy").await;
    assert_problem(app.wechat_login_raw("garbage-1").await, 503, "wechat_unavailable").await;
    let started = std::time::Instant::now();
    assert_problem(app.wechat_login_raw("slow-1").await, 503, "wechat_unavailable").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "the client must time out");
    assert_problem(app.post_json("/api/v1/auth/wechat/login", &json!({"code": ""})).await, 422, "validation_failed").await;
    assert_eq!(users(&app).await, 0);
}

#[tokio::test]
async fn a_used_code_is_refused() {
    let app = spawn_app().await;
    assert_eq!(app.wechat_login_raw("carol.1").await.status(), 200);
    assert_problem(app.wechat_login_raw("carol.1").await, 401, "wechat_code_invalid").await;
}

#[tokio::test]
async fn system_busy_is_retried_a_bounded_number_of_times() {
    let app = spawn_app().await;
    let res = app.wechat_login_raw("busyonce-dave").await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.wechat.login_calls(), 2);
    let before = app.wechat.login_calls();
    assert_problem(app.wechat_login_raw("busy-always").await, 503, "wechat_busy").await;
    assert_eq!(app.wechat.login_calls() - before, 3, "one call and two retries");
}

#[tokio::test]
async fn a_wechat_outage_is_a_503_not_a_500() {
    let app = crate::support::spawn_app_with(|s| s.wechat.base_url = "http://127.0.0.1:9".into()).await;
    let res = app.wechat_login_raw("erin.1").await;
    assert!(res.headers().get("retry-after").is_some());
    assert_problem(res, 503, "wechat_unavailable").await;
}

#[tokio::test]
async fn phone_binding_stores_the_number_encrypted_and_shows_it_masked() {
    let app = spawn_app().await;
    let t = app.talent("frank").await;
    let (status, body) = json(app.post_as("/api/v1/auth/wechat/phone", &t.access, &json!({"code": "phone.13812345678"})).await).await;
    assert_eq!((status, body), (200, json!({"phone": "138****5678"})));
    let (_, me) = json(app.get_as("/api/v1/me", &t.access).await).await;
    assert_eq!(me["phone"], "138****5678");
    let row = user::Entity::find_by_id(t.user_id).one(&app.state.db).await.unwrap().unwrap();
    let stored = row.phone_enc.unwrap();
    assert!(!stored.contains("13812345678") && !stored.contains("5678"));
    assert_eq!(row.phone_hash.unwrap(), app.state.keyring.blind_index("phone", "13812345678"));

    // One access token serves later calls.
    let t2 = app.talent("grace").await;
    app.post_as("/api/v1/auth/wechat/phone", &t2.access, &json!({"code": "phone.13900001111"})).await;
    assert_eq!(app.wechat.token_calls(), 1);
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_once_and_the_call_retried() {
    let app = spawn_app().await;
    let t = app.talent("henry").await;
    app.post_as("/api/v1/auth/wechat/phone", &t.access, &json!({"code": "phone.13800000001"})).await;
    app.wechat.expire_tokens();
    let res = app.post_as("/api/v1/auth/wechat/phone", &t.access, &json!({"code": "phone.13800000002"})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.wechat.token_calls(), 2);
}

#[tokio::test]
async fn bad_phone_codes_and_foreign_watermarks_are_refused() {
    let app = spawn_app().await;
    let t = app.talent("ivy").await;
    let body =
        assert_problem(app.post_as("/api/v1/auth/wechat/phone", &t.access, &json!({"code": "nonsense"})).await, 422, "validation_failed")
            .await;
    assert_eq!(body["errors"][0]["field"], "code");
    let body = assert_problem(
        app.post_as("/api/v1/auth/wechat/phone", &t.access, &json!({"code": "phone-otherapp.13812345678"})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!((&body["errors"][0]["field"], &body["errors"][0]["code"]), (&json!("code"), &json!("other_app")));
    let row = user::Entity::find_by_id(t.user_id).one(&app.state.db).await.unwrap().unwrap();
    assert!(row.phone_enc.is_none());
}

#[tokio::test]
async fn only_talents_bind_phones() {
    let app = spawn_app().await;
    let admin = app.admin(zhuge_card::auth::Role::Operator).await;
    assert_problem(app.post_as("/api/v1/auth/wechat/phone", &admin.access, &json!({"code": "phone.13812345678"})).await, 403, "forbidden")
        .await;
}
