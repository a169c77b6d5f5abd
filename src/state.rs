//! Everything a request handler may need, built once at start.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::auth::tokens::TokenService;
use crate::cache::{Cache, CacheMetrics, RedisCache};
use crate::cards::keys::Keys;
use crate::catalog::cache::CatalogCache;
use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::Keyring;
use crate::db;
use crate::redemption::scan::Scans;
use crate::telemetry::Metrics;
use crate::wechat::WechatClient;

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    /// Commits that need not wait for the disk; see [`db::pools_for_this_thread`].
    pub db_relaxed: DatabaseConnection,
    /// Expensive reports; see [`db::report_pool`].
    pub db_reports: DatabaseConnection,
    pub cache: Cache,
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    pub clock: Clock,
    pub keyring: Arc<Keyring>,
    pub tokens: Arc<TokenService>,
    pub wechat: Arc<WechatClient>,
    pub catalog_cache: Arc<CatalogCache>,
    pub qr_keys: Arc<Keys>,
    /// Verifications, written in batches on `db` (see [`crate::redemption::scan`]).
    pub scans: Arc<Scans>,
    /// Set on SIGTERM (see [`AppState::start_draining`]); shared by every worker.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    /// Connects to the database (applying migrations) and to the cache.
    pub async fn build(settings: Settings, clock: Clock) -> anyhow::Result<Self> {
        let db = db::connect(&settings).await?;
        db::migrate_for(&settings, &db).await?;
        let db_reports = db::report_pool(&settings, &db);
        let metrics = Metrics::new(db.clone())?;
        let cache = build_cache(&settings, CacheMetrics::register(&metrics.registry)?)?;
        tracing::info!(database = db::backend_name(&db), cache = cache.backend_name(), "storage ready");
        let keyring = keyring(&settings)?;
        let tokens = TokenService::from_keyring(&keyring);
        let wechat = WechatClient::new(&settings.wechat, cache.clone())?;
        crate::cards::keys::ensure(&db, &keyring, clock.now()).await?;
        crate::audit::upgrade(&db, &keyring, clock.now()).await?;
        let scans = Arc::new(Scans::new(db.clone()));
        Ok(Self {
            db_relaxed: db.clone(),
            db_reports,
            db,
            cache,
            settings: Arc::new(settings),
            metrics,
            clock,
            keyring: Arc::new(keyring),
            tokens: Arc::new(tokens),
            wechat: Arc::new(wechat),
            catalog_cache: Arc::new(CatalogCache::default()),
            qr_keys: Arc::new(Keys::default()),
            scans,
            draining: Arc::default(),
        })
    }

    /// Whether a SIGTERM has been received: readiness is off while requests drain.
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// This state with the worker thread's own connections (see [`db::pools_for_this_thread`]).
    pub fn for_this_thread(&self, db_connections: u32) -> Self {
        let (db, db_relaxed) = match self.db.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                db::pools_for_this_thread(&self.settings.database_url(), db_connections, self.settings.statement_timeout())
            }
            _ => None,
        }
        .unwrap_or_else(|| (self.db.clone(), self.db_relaxed.clone()));
        let scans = Arc::new(Scans::new(db.clone()));
        Self { db, db_relaxed, scans, cache: self.cache.for_this_thread(), ..self.clone() }
    }
}

/// The keyring of the configured master keys (see [`Settings::master_keys`]).
pub fn keyring(settings: &Settings) -> anyhow::Result<Keyring> {
    use secrecy::ExposeSecret;
    let (current, previous) = settings.master_keys()?;
    let previous: Vec<&str> = previous.iter().map(|k| k.expose_secret()).collect();
    Ok(Keyring::new(current.expose_secret(), &previous))
}

pub fn build_cache(settings: &Settings, metrics: CacheMetrics) -> anyhow::Result<Cache> {
    use secrecy::ExposeSecret;
    Ok(match &settings.redis_url {
        Some(url) => Cache::redis(RedisCache::new(url.expose_secret(), &settings.cache_prefix, settings.redis_timeout())?, metrics),
        None => Cache::memory(metrics),
    })
}
