//! The shared key-value store behind sessions, rate limits, QR nonces and cached lists.
//!
//! Two backends answer the same contract: Redis for production (shared by every instance)
//! and an in-process map for the embedded default. Redis is only ever a cache (SPEC §5):
//! every caller must treat [`CacheError`] as "unknown" and fall back to the database or to
//! [`Cache::local`], never as a reason to fail the request.

mod memory;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

pub use self::memory::MemoryCache;
pub use self::redis::RedisCache;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
}

#[derive(Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "a handful of caches per process, built once; boxing would add an indirection to every cache call"
)]
enum Backend {
    Memory(Arc<MemoryCache>),
    Redis(RedisCache),
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Cache {
    backend: Backend,
    /// Always in-process: the fallback for state that must not wait for Redis.
    local: Arc<MemoryCache>,
    metrics: CacheMetrics,
}

#[derive(Clone)]
pub struct CacheMetrics {
    hits: IntCounter,
    misses: IntCounter,
    errors: IntCounterVec,
}

impl CacheMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let hits = IntCounter::new("cache_hits_total", "Cache reads that found a value")?;
        let misses = IntCounter::new("cache_misses_total", "Cache reads that found nothing")?;
        let errors = IntCounterVec::new(Opts::new("cache_errors_total", "Cache operations that failed"), &["backend"])?;
        registry.register(Box::new(hits.clone()))?;
        registry.register(Box::new(misses.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        Ok(Self { hits, misses, errors })
    }

    /// Metrics that go nowhere, for tools and unit tests.
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).unwrap_or_else(|_| unreachable!("a fresh registry accepts every metric"))
    }
}

impl Cache {
    pub fn memory(metrics: CacheMetrics) -> Self {
        Self { backend: Backend::Memory(Arc::new(MemoryCache::new())), local: Arc::new(MemoryCache::new()), metrics }
    }

    pub fn redis(redis: RedisCache, metrics: CacheMetrics) -> Self {
        Self { backend: Backend::Redis(redis), local: Arc::new(MemoryCache::new()), metrics }
    }

    /// A handle for an HTTP worker thread (see [`RedisCache::for_this_thread`]); the
    /// in-process stores stay shared by the whole instance.
    pub fn for_this_thread(&self) -> Self {
        let backend = match &self.backend {
            Backend::Redis(r) => match r.for_this_thread() {
                Ok(own) => Backend::Redis(own),
                Err(e) => {
                    tracing::warn!(error = %e, "no per-worker Redis connection; sharing the instance's");
                    Backend::Redis(r.clone())
                }
            },
            Backend::Memory(m) => Backend::Memory(m.clone()),
        };
        Self { backend, local: self.local.clone(), metrics: self.metrics.clone() }
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    /// This instance's own in-process store, for fallbacks when the shared one fails.
    pub fn local(&self) -> &MemoryCache {
        &self.local
    }

    fn observe<T>(&self, result: Result<T, CacheError>) -> Result<T, CacheError> {
        if let Err(e) = &result {
            self.metrics.errors.with_label_values(&[self.backend_name()]).inc();
            tracing::warn!(error = %e, "cache operation failed");
        }
        result
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let found = match &self.backend {
            Backend::Memory(m) => Ok(m.get(key)),
            Backend::Redis(r) => r.get(key).await,
        };
        let found = self.observe(found)?;
        if found.is_some() { &self.metrics.hits } else { &self.metrics.misses }.inc();
        Ok(found)
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let done = match &self.backend {
            Backend::Memory(m) => {
                m.set(key, value, ttl);
                Ok(())
            }
            Backend::Redis(r) => r.set(key, value, ttl).await,
        };
        self.observe(done)
    }

    /// Stores `value` only if `key` holds nothing; true when this call stored it.
    pub async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let done = match &self.backend {
            Backend::Memory(m) => Ok(m.set_nx(key, value, ttl)),
            Backend::Redis(r) => r.set_nx(key, value, ttl).await,
        };
        self.observe(done)
    }

    /// Atomically adds one and returns the new count; the first increment starts a
    /// window of `ttl` after which the counter disappears.
    pub async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        let done = match &self.backend {
            Backend::Memory(m) => Ok(m.incr(key, ttl)),
            Backend::Redis(r) => r.incr(key, ttl).await,
        };
        self.observe(done)
    }

    /// Time left before `key` expires; `None` when it is absent.
    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        let done = match &self.backend {
            Backend::Memory(m) => Ok(m.ttl(key)),
            Backend::Redis(r) => r.ttl(key).await,
        };
        self.observe(done)
    }

    /// True when the key existed.
    pub async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let done = match &self.backend {
            Backend::Memory(m) => Ok(m.delete(key)),
            Backend::Redis(r) => r.delete(key).await,
        };
        self.observe(done)
    }

    /// Whether the shared store answers right now.
    pub async fn ping(&self) -> Result<(), CacheError> {
        match &self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(r) => r.ping().await,
        }
    }
}
