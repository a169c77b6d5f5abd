//! The shared key-value store behind sessions, rate limits and cached lists.
//!
//! Two backends answer the same contract: Redis for production (shared by every instance)
//! and an in-process map for the embedded default. Redis is only ever a cache (SPEC §5):
//! every caller must treat [`CacheError`] as "unknown" and fall back to the database or to
//! [`Cache::local`], never as a reason to fail the request.

mod breaker;
mod memory;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use self::breaker::Breaker;
pub use self::breaker::{PROBE_EVERY, TRIP_AFTER};
pub use self::memory::MemoryCache;
pub use self::redis::{ClusterHealth, RedisCache};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// The circuit breaker is open: Redis was not asked (see [`breaker`]).
    #[error("redis not asked: circuit breaker open")]
    CircuitOpen,
}

impl CacheError {
    /// Whether the error says Redis is unreachable or unable to serve (what the circuit
    /// breaker counts), rather than that it answered and refused this one command.
    fn is_outage(&self) -> bool {
        use ::redis::{ErrorKind as K, ServerErrorKind as S};
        match self {
            CacheError::CircuitOpen => false,
            CacheError::Redis(e) => !matches!(
                e.kind(),
                K::Parse
                    | K::UnexpectedReturnType
                    | K::Extension
                    | K::Server(S::ResponseError | S::ExecAbort | S::NoScript | S::CrossSlot | S::NoSub | S::NotBusy)
            ),
        }
    }
}

#[derive(Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "a handful of caches per process, built once; boxing would add an indirection to every cache call"
)]
enum Backend {
    Memory(Arc<MemoryCache>),
    Redis(RedisCache, Arc<Breaker>),
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
    circuit_trips: IntCounter,
    circuit_open: IntGauge,
}

impl CacheMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let hits = IntCounter::new("cache_hits_total", "Cache reads that found a value")?;
        let misses = IntCounter::new("cache_misses_total", "Cache reads that found nothing")?;
        let errors = IntCounterVec::new(Opts::new("cache_errors_total", "Cache operations that failed"), &["backend"])?;
        registry.register(Box::new(hits.clone()))?;
        registry.register(Box::new(misses.clone()))?;
        let circuit_trips = IntCounter::new("cache_circuit_trips_total", "Times the circuit breaker around Redis opened")?;
        let circuit_open = IntGauge::new("cache_circuit_open", "1 while the circuit breaker around Redis is open")?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(circuit_trips.clone()))?;
        registry.register(Box::new(circuit_open.clone()))?;
        Ok(Self { hits, misses, errors, circuit_trips, circuit_open })
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
        let breaker = Breaker::new(metrics.circuit_trips.clone(), metrics.circuit_open.clone());
        Self { backend: Backend::Redis(redis, breaker), local: Arc::new(MemoryCache::new()), metrics }
    }

    /// A handle for an HTTP worker thread (see [`RedisCache::for_this_thread`]); the
    /// in-process stores stay shared by the whole instance.
    pub fn for_this_thread(&self) -> Self {
        let backend = match &self.backend {
            Backend::Redis(r, breaker) => match r.for_this_thread() {
                Ok(own) => Backend::Redis(own, breaker.clone()),
                Err(e) => {
                    tracing::warn!(error = %e, "no per-worker Redis connection; sharing the instance's");
                    Backend::Redis(r.clone(), breaker.clone())
                }
            },
            Backend::Memory(m) => Backend::Memory(m.clone()),
        };
        Self { backend, local: self.local.clone(), metrics: self.metrics.clone() }
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(..) => "redis",
        }
    }

    /// Whether the shared store is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(&self.backend, Backend::Redis(r, _) if r.is_cluster())
    }

    /// Whether the circuit breaker around Redis is open (always false in-process).
    pub fn circuit_open(&self) -> bool {
        matches!(&self.backend, Backend::Redis(_, b) if b.is_open())
    }

    /// Runs one Redis operation through the breaker: not at all while it is open, and
    /// counting the outcome otherwise.
    async fn guarded<T>(
        &self,
        redis: &RedisCache,
        breaker: &Arc<Breaker>,
        op: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        if breaker.is_open() {
            // Whatever ended the last probe, an open breaker always has one running.
            probe(redis.clone(), breaker.clone());
            return Err(CacheError::CircuitOpen);
        }
        self.counted(redis, breaker, op).await
    }

    /// Like [`Self::guarded`] but asks Redis even while the breaker is open.
    async fn counted<T>(
        &self,
        redis: &RedisCache,
        breaker: &Arc<Breaker>,
        op: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        let result = op.await;
        match &result {
            Ok(_) => breaker.succeeded(),
            Err(e) if e.is_outage() => {
                if breaker.failed() {
                    probe(redis.clone(), breaker.clone());
                }
            }
            // Redis answered (a wrong type, a script error): it is up.
            Err(_) => breaker.succeeded(),
        }
        result
    }

    /// This instance's own in-process store, for fallbacks when the shared one fails.
    pub fn local(&self) -> &MemoryCache {
        &self.local
    }

    fn observe<T>(&self, result: Result<T, CacheError>) -> Result<T, CacheError> {
        if let Err(e) = &result {
            self.metrics.errors.with_label_values(&[self.backend_name()]).inc();
            // While the breaker is open every call fails this way; it said so once.
            if !matches!(e, CacheError::CircuitOpen) {
                tracing::warn!(error = %e, "cache operation failed");
            }
        }
        result
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let found = match &self.backend {
            Backend::Memory(m) => Ok(m.get(key)),
            Backend::Redis(r, b) => self.guarded(r, b, r.get(key)).await,
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
            Backend::Redis(r, b) => self.guarded(r, b, r.set(key, value, ttl)).await,
        };
        self.observe(done)
    }

    /// Stores `value` only if `key` holds nothing; true when this call stored it.
    pub async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let done = match &self.backend {
            Backend::Memory(m) => Ok(m.set_nx(key, value, ttl)),
            Backend::Redis(r, b) => self.guarded(r, b, r.set_nx(key, value, ttl)).await,
        };
        self.observe(done)
    }

    /// Atomically adds one and returns the new count; the first increment starts a
    /// window of `ttl` after which the counter disappears.
    pub async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        let done = match &self.backend {
            Backend::Memory(m) => Ok(m.incr(key, ttl)),
            Backend::Redis(r, b) => self.guarded(r, b, r.incr(key, ttl)).await,
        };
        self.observe(done)
    }

    /// Time left before `key` expires; `None` when it is absent.
    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        let done = match &self.backend {
            Backend::Memory(m) => Ok(m.ttl(key)),
            Backend::Redis(r, b) => self.guarded(r, b, r.ttl(key)).await,
        };
        self.observe(done)
    }

    /// True when the key existed.
    pub async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let done = match &self.backend {
            Backend::Memory(m) => Ok(m.delete(key)),
            Backend::Redis(r, b) => self.guarded(r, b, r.delete(key)).await,
        };
        self.observe(done)
    }

    /// Stores `value` unless `key` holds `unless` (a tombstone, say); true when stored.
    pub async fn set_unless(&self, key: &str, value: &[u8], unless: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let done = match &self.backend {
            Backend::Memory(m) => Ok(m.set_unless(key, value, unless, ttl)),
            Backend::Redis(r, b) => self.guarded(r, b, r.set_unless(key, value, unless, ttl)).await,
        };
        self.observe(done)
    }

    /// Writes every entry, past the circuit breaker (this instance may have given up on
    /// Redis while other instances still read it), without holding the caller up: the
    /// writes go out together, and those that fail (or all of them, while the breaker is
    /// open) are retried in one background task every second for `retry_for`.
    pub async fn set_all_eventually(&self, entries: Vec<(String, Vec<u8>)>, ttl: Duration, retry_for: Duration) {
        let (r, b) = match &self.backend {
            Backend::Redis(r, b) => (r, b),
            Backend::Memory(m) => {
                for (k, v) in &entries {
                    m.set(k, v, ttl);
                }
                return;
            }
        };
        let failed: Vec<(String, Vec<u8>)> = if b.is_open() {
            entries
        } else {
            let results = futures_util::future::join_all(entries.iter().map(|(k, v)| self.counted(r, b, r.set(k, v, ttl)))).await;
            entries.into_iter().zip(results).filter_map(|(entry, done)| self.observe(done).is_err().then_some(entry)).collect()
        };
        if failed.is_empty() {
            return;
        }
        let (redis, breaker) = (r.clone(), b.clone());
        tokio::spawn(async move {
            let mut left = failed;
            for _ in 0..retry_for.as_secs().max(1) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let mut still = Vec::new();
                for (k, v) in left {
                    if redis.set(&k, &v, ttl).await.is_err() {
                        still.push((k, v));
                    }
                }
                if still.is_empty() {
                    breaker.succeeded();
                    return;
                }
                left = still;
            }
            tracing::warn!(keys = left.len(), "gave up writing to Redis; the entries expire on their own");
        });
    }

    /// Whether the shared store answers right now (asked even while the breaker is open;
    /// a cluster answers when every master does).
    pub async fn ping(&self) -> Result<(), CacheError> {
        match &self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(r, _) => r.ping().await,
        }
    }

    /// What a Redis Cluster says of itself; `None` unless the store is a cluster.
    pub async fn cluster_health(&self) -> Option<Result<ClusterHealth, CacheError>> {
        match &self.backend {
            Backend::Redis(r, _) => r.cluster_health().await,
            Backend::Memory(_) => None,
        }
    }
}

/// Pings Redis in the background until it answers, then closes the breaker.
fn probe(redis: RedisCache, breaker: Arc<Breaker>) {
    if !breaker.start_probing() {
        return;
    }
    tokio::spawn(async move {
        // Ends the probe even if this task is dropped with its runtime, so that another
        // caller can start a new one.
        struct Ended(Arc<Breaker>, bool);
        impl Drop for Ended {
            fn drop(&mut self) {
                self.0.probe_ended(self.1);
            }
        }
        let mut ended = Ended(breaker, false);
        loop {
            tokio::time::sleep(PROBE_EVERY).await;
            if redis.ping().await.is_ok() {
                ended.1 = true;
                return;
            }
        }
    });
}
