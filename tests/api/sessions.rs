//! Password sign-in, tokens, refresh rotation, logout, role checks, and attacks on them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use entity::session;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use sea_orm::EntityTrait;
use serde_json::json;
use zhuge_card::auth::Role;

use crate::support::users::PASSWORD;
use crate::support::{assert_problem, json, spawn_app};

#[tokio::test]
async fn staff_and_admins_sign_in_with_a_password() {
    let app = spawn_app().await;
    let (username, tokens) = app.account(Role::Reviewer, None).await;
    let (status, me) = json(app.get_as("/api/v1/me", &tokens.access).await).await;
    assert_eq!(status, 200);
    assert_eq!(me["username"], username);
    assert_eq!(me["role"], "reviewer");
    // Usernames are case-insensitive.
    assert_eq!(app.password_login(&username.to_uppercase(), PASSWORD).await.status(), 200);
    let row = session::Entity::find_by_id(serde_json::from_value::<zhuge_card::auth::tokens::Claims>(claims(&tokens.access)).unwrap().sid)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.ip.as_deref(), Some("127.0.0.1"));
}

fn claims(token: &str) -> serde_json::Value {
    serde_json::from_slice(&B64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn access_tokens_carry_the_required_claims() {
    let app = spawn_app().await;
    let t = app.talent("claims").await;
    let c = claims(&t.access);
    assert_eq!(c["iss"], "zhuge-card");
    assert_eq!(c["aud"], "zhuge-card-api");
    assert_eq!(c["typ"], "at+jwt");
    assert_eq!(c["role"], "talent");
    assert_eq!(c["sub"], t.user_id.to_string());
    assert!(c["sid"].is_string());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    let header: serde_json::Value = serde_json::from_slice(&B64.decode(t.access.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header, json!({"typ": "at+jwt", "alg": "HS256"}));
}

#[tokio::test]
async fn unknown_users_and_wrong_passwords_get_the_same_answer() {
    let app = spawn_app().await;
    let (username, _) = app.account(Role::Operator, None).await;
    let wrong = assert_problem(app.password_login(&username, "Wrong-password-1").await, 401, "invalid_credentials").await;
    let unknown = assert_problem(app.password_login("nobody.here", "Wrong-password-1").await, 401, "invalid_credentials").await;
    assert_eq!(wrong, unknown);
}

#[tokio::test]
async fn repeated_failures_lock_the_account() {
    let app = spawn_app().await;
    let (username, _) = app.account(Role::Operator, None).await;
    for _ in 0..5 {
        assert_eq!(app.password_login(&username, "Wrong-password-1").await.status(), 401);
    }
    let res = app.password_login(&username, PASSWORD).await;
    let retry: u64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((800..=900).contains(&retry), "{retry}");
    assert_problem(res, 423, "account_locked").await;
    // An unknown name locks the same way, so locking reveals nothing.
    for _ in 0..5 {
        app.password_login("ghost.user", "Wrong-password-1").await;
    }
    assert_problem(app.password_login("ghost.user", "Wrong-password-1").await, 423, "account_locked").await;
    // The database remembers the lock even if the cache forgets it.
    let row =
        entity::login_failure::Entity::find_by_id((username.clone(), "127.0.0.1".to_owned())).one(&app.state.db).await.unwrap().unwrap();
    assert!(row.locked_until.is_some());
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited_per_address() {
    let app = spawn_app().await;
    let mut last = None;
    for i in 0..61 {
        last = Some(app.password_login(&format!("someone.{i}"), "Wrong-password-1").await);
    }
    let res = last.unwrap();
    assert!(res.headers().get("retry-after").is_some());
    assert_problem(res, 429, "too_many_requests").await;
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_revokes_the_session() {
    let app = spawn_app().await;
    let t = app.talent("rot").await;
    let (status, next) = json(app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": t.refresh})).await).await;
    assert_eq!(status, 200);
    let new_access = next["access_token"].as_str().unwrap().to_owned();
    let new_refresh = next["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, t.refresh);
    assert_eq!(app.get_as("/api/v1/me", &new_access).await.status(), 200);

    // The old token again: theft. The whole session ends.
    assert_problem(app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": t.refresh})).await, 401, "refresh_token_reused").await;
    assert_problem(app.get_as("/api/v1/me", &new_access).await, 401, "session_revoked").await;
    assert_problem(app.get_as("/api/v1/me", &t.access).await, 401, "session_revoked").await;
    // The newest refresh token belongs to a revoked session now.
    assert_problem(app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": new_refresh})).await, 401, "session_revoked").await;
    let sid = serde_json::from_value::<zhuge_card::auth::tokens::Claims>(claims(&t.access)).unwrap().sid;
    let row = session::Entity::find_by_id(sid).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(row.revoke_reason.as_deref(), Some("refresh_token_reused"));
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_let_at_most_one_through() {
    let app = spawn_app().await;
    let t = app.talent("race").await;
    let results =
        futures_util::future::join_all((0..8).map(|_| app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": t.refresh})))).await;
    let ok = results.iter().filter(|r| r.status() == 200).count();
    // The first rotation wins; every other presentation of the same token is reuse, which
    // ends the session — so the winner's new tokens are dead too.
    assert_eq!(ok, 1, "{ok} refreshes succeeded");
    assert_problem(app.get_as("/api/v1/me", &t.access).await, 401, "session_revoked").await;
}

#[tokio::test]
async fn garbage_refresh_tokens_are_refused() {
    let app = spawn_app().await;
    assert_problem(app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": "zrt_nope"})).await, 401, "refresh_token_invalid").await;
    assert_problem(app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": "x".repeat(5000)})).await, 401, "refresh_token_invalid")
        .await;
}

#[tokio::test]
async fn logout_ends_the_session_at_once() {
    let app = spawn_app().await;
    let t = app.talent("bye").await;
    let res = app.auth(Method::POST, "/api/v1/auth/logout", &t.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_problem(app.get_as("/api/v1/me", &t.access).await, 401, "session_revoked").await;
    assert_problem(app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": t.refresh})).await, 401, "session_revoked").await;
}

#[tokio::test]
async fn tampered_expired_and_foreign_tokens_are_refused() {
    let app = spawn_app().await;
    let t = app.talent("mallory").await;
    let key = app.state.keyring.jwt_key();
    let c = claims(&t.access);
    let sign = |alg: Algorithm, typ: Option<&str>, claims: &serde_json::Value| {
        let header = Header { typ: typ.map(str::to_owned), ..Header::new(alg) };
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key)).unwrap()
    };

    // A flipped signature byte.
    let mut tampered = t.access.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_problem(app.get_as("/api/v1/me", &tampered).await, 401, "token_invalid").await;

    // A role upgraded in the payload without the key.
    let mut parts: Vec<String> = t.access.split('.').map(str::to_owned).collect();
    let mut upgraded = c.clone();
    upgraded["role"] = json!("super_admin");
    parts[1] = B64.encode(upgraded.to_string());
    assert_problem(app.get_as("/api/v1/admin/users", &parts.join(".")).await, 401, "token_invalid").await;

    let mut expired = c.clone();
    expired["iat"] = json!(c["iat"].as_i64().unwrap() - 3600);
    expired["exp"] = json!(c["exp"].as_i64().unwrap() - 3600);
    assert_problem(app.get_as("/api/v1/me", &sign(Algorithm::HS256, Some("at+jwt"), &expired)).await, 401, "token_expired").await;

    let mut wrong_aud = c.clone();
    wrong_aud["aud"] = json!("someone-else");
    assert_problem(app.get_as("/api/v1/me", &sign(Algorithm::HS256, Some("at+jwt"), &wrong_aud)).await, 401, "token_invalid").await;
    let mut wrong_iss = c.clone();
    wrong_iss["iss"] = json!("evil");
    assert_problem(app.get_as("/api/v1/me", &sign(Algorithm::HS256, Some("at+jwt"), &wrong_iss)).await, 401, "token_invalid").await;
    // Same key, another algorithm; and a token without the explicit type.
    assert_problem(app.get_as("/api/v1/me", &sign(Algorithm::HS512, Some("at+jwt"), &c)).await, 401, "token_invalid").await;
    assert_problem(app.get_as("/api/v1/me", &sign(Algorithm::HS256, Some("JWT"), &c)).await, 401, "token_invalid").await;
    // A properly signed token is accepted: the failures above are about what was changed.
    assert_eq!(app.get_as("/api/v1/me", &sign(Algorithm::HS256, Some("at+jwt"), &c)).await.status(), 200);

    let none = format!("{}.{}.", B64.encode(br#"{"alg":"none","typ":"at+jwt"}"#), B64.encode(c.to_string()));
    assert_problem(app.get_as("/api/v1/me", &none).await, 401, "token_invalid").await;
    assert_problem(app.get_as("/api/v1/me", "not-a-jwt").await, 401, "token_invalid").await;
    let res = app.get("/api/v1/me").await;
    assert_problem(res, 401, "unauthorized").await;
}

#[tokio::test]
async fn roles_are_enforced_both_ways() {
    let app = spawn_app().await;
    let talent = app.talent("role").await;
    let operator = app.admin(Role::Operator).await;
    let superadmin = app.admin(Role::SuperAdmin).await;
    assert_problem(app.get_as("/api/v1/admin/users", &talent.access).await, 403, "forbidden").await;
    assert_problem(app.get_as("/api/v1/admin/users", &operator.access).await, 403, "forbidden").await;
    assert_eq!(app.get_as("/api/v1/admin/users", &superadmin.access).await.status(), 200);
    assert_problem(app.post_as("/api/v1/auth/wechat/phone", &superadmin.access, &json!({"code": "phone.1"})).await, 403, "forbidden").await;
}

#[tokio::test]
async fn an_initial_password_must_be_changed_before_anything_else() {
    let app = spawn_app().await;
    let root = app.admin(Role::SuperAdmin).await;
    let res = app
        .post_as(
            "/api/v1/admin/users",
            &root.access,
            &json!({"username": "new.reviewer", "password": "Initial-pass-1", "role": "super_admin"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let (status, body) = json(app.password_login("new.reviewer", "Initial-pass-1").await).await;
    assert_eq!(status, 200);
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_problem(app.get_as("/api/v1/admin/users", &access).await, 403, "password_change_required").await;
    let (_, me) = json(app.get_as("/api/v1/me", &access).await).await;
    assert_eq!(me["must_change_password"], true);

    let weak = app.post_as("/api/v1/me/password", &access, &json!({"current_password": "Initial-pass-1", "new_password": "short"})).await;
    let body = assert_problem(weak, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "new_password");
    let wrong =
        app.post_as("/api/v1/me/password", &access, &json!({"current_password": "nope-nope-1", "new_password": "Brand-new-pass-2"})).await;
    assert_problem(wrong, 422, "validation_failed").await;
    let res = app
        .post_as("/api/v1/me/password", &access, &json!({"current_password": "Initial-pass-1", "new_password": "Brand-new-pass-2"}))
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(app.get_as("/api/v1/admin/users", &access).await.status(), 200);
    assert_eq!(app.password_login("new.reviewer", "Brand-new-pass-2").await.status(), 200);
    assert_eq!(app.password_login("new.reviewer", "Initial-pass-1").await.status(), 401);
}

#[tokio::test]
async fn changing_the_password_signs_out_other_sessions() {
    let app = spawn_app().await;
    let (username, first) = app.account(Role::Operator, None).await;
    let (_, second) = json(app.password_login(&username, PASSWORD).await).await;
    let second = second["access_token"].as_str().unwrap().to_owned();
    let res =
        app.post_as("/api/v1/me/password", &first.access, &json!({"current_password": PASSWORD, "new_password": "Another-pass-3"})).await;
    assert_eq!(res.status(), 204);
    assert_eq!(app.get_as("/api/v1/me", &first.access).await.status(), 200);
    assert_problem(app.get_as("/api/v1/me", &second).await, 401, "session_revoked").await;
}

#[tokio::test]
async fn malformed_and_oversized_login_bodies_are_problems() {
    let app = spawn_app().await;
    let url = app.url("/api/v1/auth/password/login");
    let res = app.client.post(&url).header("content-type", "application/json").body("{\"username\": ").send().await.unwrap();
    assert_problem(res, 400, "malformed_json").await;
    let res = app.client.post(&url).header("content-type", "text/plain").body("username=a").send().await.unwrap();
    assert_problem(res, 415, "unsupported_media_type").await;
    let res = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(format!("{{\"username\": \"{}\"}}", "a".repeat(100_000)))
        .send()
        .await
        .unwrap();
    assert_problem(res, 413, "payload_too_large").await;
    let body =
        assert_problem(app.post_json("/api/v1/auth/password/login", &json!({"username": "x"})).await, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "password");
    assert_eq!(body["errors"][0]["code"], "required");
    let body = assert_problem(
        app.post_json("/api/v1/auth/password/login", &json!({"username": "a".repeat(65), "password": "p"})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "username");
    let res = app.post_json("/api/v1/auth/password/login", &json!({"username": 5, "password": []})).await;
    assert_problem(res, 422, "validation_failed").await;
    let res =
        app.client.post(&url).header("content-type", "application/json").header("accept-language", "en").body("[").send().await.unwrap();
    let body = assert_problem(res, 400, "malformed_json").await;
    assert_eq!(body["title"], "Malformed JSON body");
}
