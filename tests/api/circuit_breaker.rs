//! A hung Redis (SIGSTOP: connections open, nothing answers) costs a few slow requests,
//! not a slow minute: after a few timeouts the circuit breaker stops asking Redis, requests
//! are served from the database, and a background probe closes the breaker once Redis
//! answers again. Nothing is refused, nothing lost, nothing doubled meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::binary::{Service, free_port};
use crate::support::redis_server::{self, RedisCluster, RedisServer};
use crate::support::{TestDatabase, assert_problem, json, spawn_app_with, spawn_wechat};

/// Latencies of every request made by `clients` loops of `request` until `stop` is set.
async fn load<F, Fut>(clients: usize, stop: Arc<AtomicBool>, request: F) -> Vec<(Duration, u16)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = u16> + Send,
{
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (stop, request) = (stop.clone(), request.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let status = request().await;
                    seen.push((started.elapsed(), status));
                }
                seen
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn summary(seen: &[(Duration, u16)]) -> (usize, usize, Duration) {
    let slow = seen.iter().filter(|(d, _)| *d >= Duration::from_millis(300)).count();
    let failed = seen.iter().filter(|(_, s)| *s != 200).count();
    let mut sorted: Vec<Duration> = seen.iter().map(|(d, _)| *d).collect();
    sorted.sort();
    let p50 = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    (slow, failed, p50)
}

#[tokio::test]
async fn a_hung_redis_costs_a_few_slow_requests_and_no_failure() {
    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    let url = redis.url();
    let a = spawn_app_with(|s| {
        s.redis_url = Some(url.into());
        s.redis_timeout_ms = 500;
    })
    .await;
    let b = a.sibling().await;
    let talents: Vec<_> = futures_util::future::join_all((0..8).map(|i| {
        let a = &a;
        async move { a.talent(&format!("hung{i}")).await }
    }))
    .await;
    let bob = a.talent("bob").await;
    for app in [&a, &b] {
        assert_eq!(app.get_as("/api/v1/me", &bob.access).await.status(), 200);
    }

    redis.pause();
    let stop = Arc::new(AtomicBool::new(false));
    let (client, base) = (a.client.clone(), a.address.clone());
    let tokens: Arc<Vec<String>> = Arc::new(talents.iter().map(|t| t.access.clone()).collect());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let running = tokio::spawn(load(8, stop.clone(), move || {
        let (client, base, tokens, next) = (client.clone(), base.clone(), tokens.clone(), next.clone());
        async move {
            let token = &tokens[next.fetch_add(1, Ordering::Relaxed) % tokens.len()];
            client.get(format!("{base}/api/v1/me")).bearer_auth(token).send().await.map_or(0, |r| r.status().as_u16())
        }
    }));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Bob signs out through B while Redis hangs: A refuses him at once.
    assert_eq!(b.auth(reqwest::Method::POST, "/api/v1/auth/logout", &bob.access).send().await.unwrap().status(), 204);
    assert_problem(a.get_as("/api/v1/me", &bob.access).await, 401, "session_revoked").await;
    // /readyz stays fast: a load balancer whose check times out would take the instance out.
    let asked = Instant::now();
    let (status, ready) = json(a.get("/readyz").await).await;
    assert!(asked.elapsed() < Duration::from_millis(300), "/readyz took {:?} while Redis hangs", asked.elapsed());
    assert_eq!(status, 200, "{ready}");
    assert_eq!((ready["cache"]["status"].as_str(), ready["cache"]["circuit"].as_str()), (Some("down"), Some("open")), "{ready}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let seen = running.await.unwrap();
    let (slow, failed, p50) = summary(&seen);
    eprintln!("hung Redis for 3 s: {} requests, {slow} slow (≥ 300 ms), {failed} failed, p50 {p50:?}", seen.len());
    assert_eq!(failed, 0);
    assert!(seen.len() > 100, "too little load ({}) for the test to mean much", seen.len());
    // The clients in flight when Redis stopped wait out the timeout a few times; the rest
    // do not wait for Redis at all.
    assert!(slow <= 8 * 4, "{slow} slow requests: the breaker did not open");
    assert!(p50 < Duration::from_millis(100), "p50 {p50:?}");

    redis.resume();
    let resumed = Instant::now();
    loop {
        let (_, ready) = json(a.get("/readyz").await).await;
        if ready["cache"]["circuit"] == "closed" && ready["cache"]["status"] == "up" {
            break;
        }
        assert!(resumed.elapsed() < Duration::from_secs(5), "the breaker did not close: {ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("breaker closed {:?} after Redis resumed", resumed.elapsed());
    // Redis is used again, and the sign-out made during the hang holds on both instances.
    a.state.cache.set("after", b"v", Duration::from_secs(60)).await.unwrap();
    for app in [&a, &b] {
        assert_problem(app.get_as("/api/v1/me", &bob.access).await, 401, "session_revoked").await;
        assert_eq!(app.get_as("/api/v1/me", &talents[0].access).await.status(), 200);
    }
    let metrics = a.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("zhuge_cache_circuit_trips_total 1"), "{metrics}");
    assert!(metrics.contains("zhuge_cache_circuit_open 0"), "{metrics}");
}

/// The real binary, configured only by the documented variables, with a Redis Cluster
/// whose one master hangs: requests stay fast, none fails, and the breaker closes after.
#[tokio::test]
async fn the_binary_on_a_cluster_rides_out_a_hung_master() {
    if !redis_server::available() {
        return;
    }
    let cluster = RedisCluster::start();
    let (_standin, wechat_base, _wechat) = spawn_wechat().await;
    let db = TestDatabase::create().await;
    let env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", cluster.url()),
        ("ZHUGE_REDIS_TIMEOUT_MS", "500".to_owned()),
        ("ZHUGE_DATA_DIR", db.dir.path().display().to_string()),
        ("ZHUGE_MASTER_KEY", "a-deployment-master-key-of-enough-length".to_owned()),
        ("ZHUGE_WECHAT_BASE_URL", wechat_base),
        ("ZHUGE_WECHAT_APPID", crate::support::WX_APPID.to_owned()),
        ("ZHUGE_WECHAT_SECRET", crate::support::WX_SECRET.to_owned()),
        ("ZHUGE_WORKERS", "2".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let mut service = Service::start(&env, free_port(), &db.dir.path().join("service.log"));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    service.wait_ready(&client).await;
    let base = service.base.clone();
    let ready = || async { json(client.get(format!("{base}/readyz")).send().await.unwrap()).await.1 };
    let r: Value = ready().await;
    assert_eq!((r["cache"]["backend"].as_str(), r["cache"]["cluster"]["state"].as_str()), (Some("redis"), Some("ok")), "{r}");
    let mut tokens = Vec::new();
    for i in 0..8 {
        let res = client.post(format!("{base}/api/v1/auth/wechat/login")).json(&json!({"code": format!("bin{i}.x")})).send().await.unwrap();
        let (status, body) = json(res).await;
        assert_eq!(status, 200, "{body}\n{}", service.log_text());
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }

    cluster.pause(0);
    let stop = Arc::new(AtomicBool::new(false));
    let tokens = Arc::new(tokens);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (c, b) = (client.clone(), base.clone());
    let running = tokio::spawn(load(8, stop.clone(), move || {
        let (client, base, tokens, next) = (c.clone(), b.clone(), tokens.clone(), next.clone());
        async move {
            let token = &tokens[next.fetch_add(1, Ordering::Relaxed) % tokens.len()];
            client.get(format!("{base}/api/v1/me")).bearer_auth(token).send().await.map_or(0, |r| r.status().as_u16())
        }
    }));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = ready().await;
    assert_eq!(r["cache"]["circuit"], "open", "{r}");
    stop.store(true, Ordering::SeqCst);
    let seen = running.await.unwrap();
    let (slow, failed, p50) = summary(&seen);
    eprintln!("binary, hung cluster master for 3 s: {} requests, {slow} slow, {failed} failed, p50 {p50:?}", seen.len());
    assert_eq!(failed, 0, "{}", service.log_text());
    assert!(slow <= 8 * 4, "{slow} slow requests: the breaker did not open");

    cluster.resume(0);
    let resumed = Instant::now();
    loop {
        let r = ready().await;
        if r["cache"]["circuit"] == "closed" && r["cache"]["cluster"]["state"] == "ok" {
            break;
        }
        assert!(resumed.elapsed() < Duration::from_secs(10), "the breaker did not close: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
