//! Fixed-window rate limits shared across instances through the cache, falling back to
//! this instance's own counters while the shared cache is unavailable.

use std::time::Duration;

use crate::cache::Cache;

/// Counts one hit on `key`; `Err(retry_after_secs)` once more than `limit` hits fall in
/// the current window.
pub async fn hit(cache: &Cache, key: &str, limit: i64, window: Duration) -> Result<(), u64> {
    let key = format!("rl:{key}");
    let (count, ttl) = match cache.incr(&key, window).await {
        Ok(n) => (n, cache.ttl(&key).await.ok().flatten()),
        Err(_) => (cache.local().incr(&key, window), cache.local().ttl(&key)),
    };
    verdict(count, ttl, limit, window)
}

/// Like [`hit`], without counting: `Err(retry_after_secs)` when `key` already had more
/// than `limit` hits in its current window.
pub async fn check(cache: &Cache, key: &str, limit: i64, window: Duration) -> Result<(), u64> {
    let key = format!("rl:{key}");
    let (count, ttl) = match (cache.get(&key).await, cache.ttl(&key).await) {
        (Ok(count), Ok(ttl)) => (count, ttl),
        _ => (cache.local().get(&key), cache.local().ttl(&key)),
    };
    let count = count.and_then(|c| String::from_utf8(c).ok()).and_then(|c| c.parse().ok()).unwrap_or(0);
    verdict(count, ttl, limit, window)
}

fn verdict(count: i64, ttl: Option<Duration>, limit: i64, window: Duration) -> Result<(), u64> {
    if count > limit {
        let secs = ttl.unwrap_or(window).as_secs().clamp(1, window.as_secs().max(1));
        Err(secs)
    } else {
        Ok(())
    }
}
