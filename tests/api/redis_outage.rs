//! Losing Redis makes the service slower, never unavailable; Redis coming back is used
//! again without a restart. These tests run their own `redis-server`.

use std::time::{Duration, Instant};

use crate::support::redis_server::{self, RedisCluster, RedisServer};
use crate::support::{json, spawn_app_with};

async fn cache_status(app: &crate::support::TestApp) -> (u16, String) {
    let (status, body) = json(app.get("/readyz").await).await;
    (status, body["cache"]["status"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn service_keeps_answering_without_redis_and_recovers_when_it_returns() {
    if !redis_server::available() {
        return;
    }
    let mut redis = RedisServer::start();
    let url = redis.url();
    let app = spawn_app_with(|s| s.redis_url = Some(url.into())).await;
    assert_eq!(cache_status(&app).await, (200, "up".to_owned()));
    app.state.cache.set("k", b"v", Duration::from_secs(60)).await.unwrap();

    redis.stop();
    let started = Instant::now();
    assert_eq!(cache_status(&app).await, (200, "down".to_owned()));
    assert!(started.elapsed() < Duration::from_secs(3), "a dead Redis must not hang requests");
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert!(app.state.cache.get("k").await.is_err());
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(r#"zhuge_cache_errors_total{backend="redis"}"#), "{metrics}");

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if cache_status(&app).await == (200, "up".to_owned()) {
            break;
        }
        assert!(Instant::now() < deadline, "Redis was not picked up again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The restarted Redis kept nothing; the service uses it again.
    app.state.cache.set("k2", b"v2", Duration::from_secs(60)).await.unwrap();
    assert_eq!(app.state.cache.get("k2").await.unwrap().as_deref(), Some(&b"v2"[..]));
}

#[tokio::test]
async fn the_service_starts_while_redis_is_down() {
    if !redis_server::available() {
        return;
    }
    let mut redis = RedisServer::start();
    redis.stop();
    let url = redis.url();
    let app = spawn_app_with(|s| s.redis_url = Some(url.into())).await;
    assert_eq!(cache_status(&app).await, (200, "down".to_owned()));
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while cache_status(&app).await != (200, "up".to_owned()) {
        assert!(Instant::now() < deadline, "Redis was not picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Redis Cluster: `/readyz` reports its state; a dead master costs Redis (the breaker
/// opens, requests go to the database) but no request; the restarted master is used again.
#[tokio::test]
async fn a_cluster_master_dies_and_returns_and_readyz_follows_it() {
    if !redis_server::available() {
        return;
    }
    let mut cluster = RedisCluster::start();
    let url = cluster.url();
    let app = spawn_app_with(|s| s.redis_url = Some(url.into())).await;
    let (status, ready) = json(app.get("/readyz").await).await;
    assert_eq!(status, 200);
    assert_eq!(ready["cache"]["status"], "up", "{ready}");
    assert_eq!(ready["cache"]["circuit"], "closed", "{ready}");
    assert_eq!(ready["cache"]["cluster"]["state"], "ok", "{ready}");
    assert_eq!(ready["cache"]["cluster"]["masters_answering"], 3, "{ready}");
    assert_eq!(ready["cache"]["cluster"]["slots_ok"], 16384, "{ready}");
    let talents = futures_util::future::join_all((0..12).map(|i| {
        let app = &app;
        async move { app.talent(&format!("t{i}")).await }
    }))
    .await;

    cluster.kill(1);
    let started = Instant::now();
    for t in &talents {
        assert_eq!(app.get_as("/api/v1/me", &t.access).await.status(), 200);
    }
    let (status, ready) = json(app.get("/readyz").await).await;
    assert_eq!(status, 200, "the cache never makes the service unready: {ready}");
    assert_eq!(ready["cache"]["status"], "down", "{ready}");
    assert_ne!(ready["cache"]["cluster"]["state"], "ok", "{ready}");
    assert!(started.elapsed() < Duration::from_secs(10), "a dead master held requests up: {:?}", started.elapsed());
    // A new sign-in works without the third of the slots that master served.
    assert_eq!(app.get_as("/api/v1/me", &app.talent("late").await.access).await.status(), 200);

    cluster.restart(1);
    cluster.wait_ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, ready) = json(app.get("/readyz").await).await;
        if ready["cache"]["status"] == "up" && ready["cache"]["cluster"]["state"] == "ok" && ready["cache"]["circuit"] == "closed" {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted master was not picked up: {ready}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.state.cache.set("after", b"v", Duration::from_secs(60)).await.unwrap();
    for t in &talents {
        assert_eq!(app.get_as("/api/v1/me", &t.access).await.status(), 200);
    }
}
