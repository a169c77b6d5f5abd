//! Caching of the public catalogue. Rendered list pages, and each partner's benefits for
//! verification, are kept in each instance's memory under a catalogue version that lives
//! in the shared cache. Every admin write sets a new version, so the next request on every
//! instance misses and reads the database. While the shared cache is unreachable nothing is
//! served from memory, so a change is never hidden by an instance that missed the new
//! version.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;

use super::dto::BenefitView;
use crate::cache::Cache;

const VERSION_KEY: &str = "catalog:version";
const VERSION_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// A safety net: an entry is not served longer than this even if the version never moves.
const ENTRY_TTL: Duration = Duration::from_secs(60);
/// Bounded memory: distinct queries (`near=` coordinates) are unbounded.
const MAX_ENTRIES: usize = 20_000;

/// Values by key, each under the catalogue version it was read at (the key's prefix).
pub struct ListCache<V = Bytes> {
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V> Default for ListCache<V> {
    fn default() -> Self {
        Self { entries: Mutex::default() }
    }
}

impl<V: Clone> ListCache<V> {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (Instant, V)>) -> T) -> T {
        f(&mut self.entries.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The value kept under `key` at the current catalogue version; otherwise `build`'s,
    /// kept for the next request. Builds every time while the version is unknown.
    pub async fn through<E>(&self, shared: &Cache, key: &str, build: impl Future<Output = Result<V, E>>) -> Result<V, E> {
        let versioned = version(shared).await.map(|v| format!("{v}|{key}"));
        if let Some(hit) = versioned.as_deref().and_then(|k| self.get(k)) {
            return Ok(hit);
        }
        let fresh = build.await?;
        if let Some(k) = versioned {
            self.put(k, fresh.clone());
        }
        Ok(fresh)
    }

    fn get(&self, key: &str) -> Option<V> {
        self.with(|m| m.get(key).filter(|(at, _)| at.elapsed() < ENTRY_TTL).map(|(_, b)| b.clone()))
    }

    fn put(&self, key: String, body: V) {
        self.with(|m| {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(key, (Instant::now(), body));
        });
    }

    pub fn clear(&self) {
        self.with(HashMap::clear);
    }
}

/// What one instance keeps of the catalogue.
#[derive(Default)]
pub struct CatalogCache {
    /// Rendered public list pages.
    pub pages: ListCache,
    /// Each partner's active benefits, for verification.
    /// Each partner's active benefits; `None` while the partner is inactive.
    pub benefits: ListCache<Option<Arc<[BenefitView]>>>,
}

impl CatalogCache {
    pub fn clear(&self) {
        self.pages.clear();
        self.benefits.clear();
    }
}

/// The current catalogue version, or `None` when the shared cache cannot say.
pub async fn version(cache: &Cache) -> Option<String> {
    match cache.get(VERSION_KEY).await {
        Ok(Some(v)) => String::from_utf8(v).ok(),
        Ok(None) => {
            // First use, or the cache was flushed: start a version no entry was made under.
            let fresh = uuid::Uuid::now_v7().to_string();
            cache.set_nx(VERSION_KEY, fresh.as_bytes(), VERSION_TTL).await.ok()?;
            cache.get(VERSION_KEY).await.ok().flatten().and_then(|v| String::from_utf8(v).ok())
        }
        Err(_) => None,
    }
}

/// Announces a catalogue change to every instance.
pub async fn bump(cache: &Cache, local: &CatalogCache) {
    local.clear();
    // Past the circuit breaker, retried for two minutes: another instance serving from
    // memory learns of the change only here.
    let fresh = uuid::Uuid::now_v7().to_string().into_bytes();
    cache.set_all_eventually(vec![(VERSION_KEY.to_owned(), fresh)], VERSION_TTL, Duration::from_secs(120)).await;
}
