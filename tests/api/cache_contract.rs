//! One contract, both backends: what the service relies on from its cache.

use std::time::Duration;

use zhuge_card::cache::{Cache, CacheMetrics, RedisCache};

use crate::support::redis_server::{self, RedisCluster, RedisServer};

async fn contract(cache: &Cache) {
    let ttl = Duration::from_secs(60);
    assert_eq!(cache.get("absent").await.unwrap(), None);

    cache.set("k", b"v1", ttl).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"v1"[..]));
    cache.set("k", b"v2", ttl).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"v2"[..]));
    let left = cache.ttl("k").await.unwrap().unwrap();
    assert!(left > Duration::from_secs(55) && left <= ttl, "{left:?}");

    assert!(cache.set_nx("nx", b"first", ttl).await.unwrap());
    assert!(!cache.set_nx("nx", b"second", ttl).await.unwrap());
    assert_eq!(cache.get("nx").await.unwrap().as_deref(), Some(&b"first"[..]));

    assert_eq!(cache.incr("n", ttl).await.unwrap(), 1);
    assert_eq!(cache.incr("n", ttl).await.unwrap(), 2);
    assert!(cache.ttl("n").await.unwrap().is_some_and(|t| t <= ttl));

    // Set unless it holds a given value (a session's tombstone): refused only then.
    assert!(cache.set_unless("u", b"live", b"dead", ttl).await.unwrap());
    assert!(cache.set_unless("u", b"live2", b"dead", ttl).await.unwrap());
    cache.set("u", b"dead", ttl).await.unwrap();
    assert!(!cache.set_unless("u", b"live3", b"dead", ttl).await.unwrap());
    assert_eq!(cache.get("u").await.unwrap().as_deref(), Some(&b"dead"[..]));

    assert!(cache.delete("k").await.unwrap());
    assert!(!cache.delete("k").await.unwrap());
    assert_eq!(cache.get("k").await.unwrap(), None);
    assert_eq!(cache.ttl("k").await.unwrap(), None);

    // Expiry: the value, the set-if-absent claim and the counter window all lapse.
    let short = Duration::from_millis(150);
    cache.set("e", b"v", short).await.unwrap();
    assert!(cache.set_nx("e-nx", b"v", short).await.unwrap());
    assert_eq!(cache.incr("e-n", short).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cache.get("e").await.unwrap(), None);
    assert!(cache.set_nx("e-nx", b"again", ttl).await.unwrap());
    assert_eq!(cache.incr("e-n", ttl).await.unwrap(), 1);

    // Concurrent set-if-absent: exactly one winner.
    let winners = futures_util::future::join_all((0..32).map(|i| {
        let cache = cache.clone();
        async move { cache.set_nx("race", i.to_string().as_bytes(), ttl).await.unwrap() }
    }))
    .await;
    assert_eq!(winners.iter().filter(|w| **w).count(), 1);

    // Concurrent increments: none lost.
    futures_util::future::join_all((0..50).map(|_| {
        let cache = cache.clone();
        async move { cache.incr("count", ttl).await.unwrap() }
    }))
    .await;
    assert_eq!(cache.incr("count", ttl).await.unwrap(), 51);
}

#[tokio::test]
async fn memory_cache_meets_the_contract() {
    contract(&Cache::memory(CacheMetrics::unregistered())).await;
}

#[tokio::test]
async fn redis_cache_meets_the_contract() {
    let (url, _server) = match crate::support::redis_url() {
        Some(url) => (url, None),
        None if redis_server::available() => {
            let server = RedisServer::start();
            (server.url(), Some(server))
        }
        None => return,
    };
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let redis = RedisCache::new(&url, &prefix, Duration::from_secs(1)).unwrap();
    contract(&Cache::redis(redis, CacheMetrics::unregistered())).await;
}

#[tokio::test]
async fn keys_of_different_prefixes_do_not_meet() {
    let (url, _server) = match crate::support::redis_url() {
        Some(url) => (url, None),
        None if redis_server::available() => {
            let server = RedisServer::start();
            (server.url(), Some(server))
        }
        None => return,
    };
    let a = Cache::redis(RedisCache::new(&url, "test:a:", Duration::from_secs(1)).unwrap(), CacheMetrics::unregistered());
    let b = Cache::redis(RedisCache::new(&url, "test:b:", Duration::from_secs(1)).unwrap(), CacheMetrics::unregistered());
    let key = uuid::Uuid::new_v4().to_string();
    a.set(&key, b"a", Duration::from_secs(5)).await.unwrap();
    assert_eq!(b.get(&key).await.unwrap(), None);
}

/// The same contract on a real three-master Redis Cluster: its keys fall in different
/// slots on different masters, and each script runs on the master of its one key.
#[tokio::test]
async fn redis_cluster_cache_meets_the_contract() {
    if !redis_server::available() {
        return;
    }
    let cluster = RedisCluster::start();
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let redis = RedisCache::new(&cluster.url(), &prefix, Duration::from_secs(1)).unwrap();
    assert!(redis.is_cluster());
    let cache = Cache::redis(redis, CacheMetrics::unregistered());
    contract(&cache).await;
    // The keys did spread over the masters (a cluster of one slot would prove little).
    let holding = (0..3).filter(|&i| cluster.cli(i, &["DBSIZE"]).trim() != "0").count();
    assert!(holding >= 2, "keys on {holding} master(s) only");
    let health = cache.cluster_health().await.unwrap().unwrap();
    assert_eq!((health.state.as_str(), health.masters_answering, health.slots_ok), ("ok", 3, 16384));
}
