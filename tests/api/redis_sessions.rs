//! Sessions when Redis is flushed, stopped, or shared by several instances.

use std::time::Duration;

use zhuge_card::auth::Role;

use crate::support::redis_server::{self, RedisServer};
use crate::support::{assert_problem, spawn_app_with};

#[tokio::test]
async fn a_flushed_or_stopped_redis_logs_no_one_out_and_lets_no_revoked_session_in() {
    if !redis_server::available() {
        return;
    }
    let mut redis = RedisServer::start();
    let url = redis.url();
    let app = spawn_app_with(|s| s.redis_url = Some(url.clone().into())).await;
    let alice = app.talent("alice").await;
    let bob = app.talent("bob").await;
    assert_eq!(app.get_as("/api/v1/me", &alice.access).await.status(), 200);

    // FLUSHALL: the sessions are still live (from the database).
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    assert_eq!(app.get_as("/api/v1/me", &alice.access).await.status(), 200);

    // Redis down: still signed in, and a logout still takes effect at once.
    redis.stop();
    assert_eq!(app.get_as("/api/v1/me", &alice.access).await.status(), 200);
    let res = app.auth(reqwest::Method::POST, "/api/v1/auth/logout", &bob.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_problem(app.get_as("/api/v1/me", &bob.access).await, 401, "session_revoked").await;
    // Password sign-in keeps working (rate limits fall back to this instance).
    let (_, op) = app.account(Role::Operator, None).await;
    assert_eq!(app.get_as("/api/v1/me", &op.access).await.status(), 200);

    redis.restart();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.get_as("/api/v1/me", &alice.access).await.status(), 200);
    assert_problem(app.get_as("/api/v1/me", &bob.access).await, 401, "session_revoked").await;
}

#[tokio::test]
async fn a_logout_on_one_instance_is_refused_by_the_other_at_once() {
    let url = match crate::support::redis_url() {
        Some(url) => url,
        None if redis_server::available() => String::new(),
        None => return,
    };
    let own = url.is_empty().then(RedisServer::start);
    let url = own.as_ref().map_or(url, RedisServer::url);
    let a = spawn_app_with(|s| s.redis_url = Some(url.into())).await;
    let b = a.sibling().await;
    let t = a.talent("carol").await;
    // Both instances have seen (and cached) the live session.
    assert_eq!(a.get_as("/api/v1/me", &t.access).await.status(), 200);
    assert_eq!(b.get_as("/api/v1/me", &t.access).await.status(), 200);
    let res = a.auth(reqwest::Method::POST, "/api/v1/auth/logout", &t.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_problem(b.get_as("/api/v1/me", &t.access).await, 401, "session_revoked").await;
}
