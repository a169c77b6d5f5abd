//! Test harness: the real application on `127.0.0.1:0` with a fresh database per test.
//!
//! - By default: a temporary SQLite file and the in-process cache.
//! - `TEST_DATABASE_URL=postgres://…/postgres`: a fresh PostgreSQL database per test,
//!   cloned from a template migrated once (`CREATE DATABASE … TEMPLATE …`), dropped after.
//! - `TEST_REDIS_URL=redis://…`: the Redis cache, with a key prefix per test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod binary;
pub mod cards;
pub mod catalog;
pub mod redis_server;
pub mod users;

use std::future::Future;
use std::sync::Once;

use actix_web::dev::ServerHandle;
use reqwest::{Method, Response};
use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::OnceCell;
use zhuge_card::clock::Clock;
use zhuge_card::config::{Settings, WechatSettings};
use zhuge_card::startup::Application;
use zhuge_card::state::AppState;
use zhuge_card::wechat::standin::StandIn;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub wechat: Arc<StandIn>,
    handle: ServerHandle,
    _wechat_server: ServerHandle,
    _db: Option<TestDatabase>,
}

pub const WX_APPID: &str = "wx_test_app";
pub const WX_SECRET: &str = "wx-test-secret";

/// The WeChat stand-in on a port of its own.
pub async fn spawn_wechat() -> (Arc<StandIn>, String, ServerHandle) {
    init_process();
    let standin = StandIn::new(WX_APPID, WX_SECRET);
    let s = standin.clone();
    let server =
        actix_web::HttpServer::new(move || actix_web::App::new().configure(|cfg| s.configure(cfg))).workers(1).bind("127.0.0.1:0").unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (standin, format!("http://127.0.0.1:{port}"), handle)
}

/// Process-wide setup: one TLS provider, quiet logs unless `TEST_LOG` is set. Every
/// entry point of the harness calls it, so a test run alone works as in the full suite.
pub fn init_process() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        drop(rustls::crypto::ring::default_provider().install_default());
        if std::env::var_os("TEST_LOG").is_some() {
            zhuge_card::telemetry::init(zhuge_card::config::LogFormat::Text);
        }
    });
}

pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

pub fn redis_url() -> Option<String> {
    std::env::var("TEST_REDIS_URL").ok().filter(|u| !u.is_empty())
}

/// Settings for a test app: port 0, one worker, a private data dir and database.
pub async fn test_settings() -> (Settings, TestDatabase) {
    init_process();
    let db = TestDatabase::create().await;
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: db.dir.path().to_path_buf(),
        database_url: Some(db.url.clone().into()),
        redis_url: redis_url().map(Into::into),
        cache_prefix: format!("test:{}:", uuid::Uuid::new_v4().simple()),
        workers: Some(1),
        db_max_connections: 5,
        shutdown_timeout_secs: 1,
        wechat: WechatSettings {
            base_url: String::new(),
            appid: WX_APPID.into(),
            secret: Some(WX_SECRET.into()),
            timeout_ms: 1000,
            ..WechatSettings::default()
        },
        ..Settings::default()
    };
    (settings, db)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    let (mut settings, db) = test_settings().await;
    customise(&mut settings);
    spawn_with_settings(settings, db, Clock::system()).await
}

pub async fn spawn_with_settings(mut settings: Settings, db: TestDatabase, clock: Clock) -> TestApp {
    let (wechat, base, wechat_server) = spawn_wechat().await;
    if settings.wechat.base_url.is_empty() {
        settings.wechat.base_url = base;
    }
    start(settings, Some(db), clock, wechat, wechat_server).await
}

async fn start(settings: Settings, db: Option<TestDatabase>, clock: Clock, wechat: Arc<StandIn>, wechat_server: ServerHandle) -> TestApp {
    let state = AppState::build(settings, clock).await.expect("app state");
    let app = Application::from_state(state.clone()).expect("application");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    TestApp { address, client, state, wechat, handle, _wechat_server: wechat_server, _db: db }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
        drop(self._wechat_server.stop(false));
    }
}

impl TestApp {
    /// A second instance of the service on the same database and cache (and the same
    /// WeChat stand-in), as behind a load balancer.
    pub async fn sibling(&self) -> TestApp {
        self.sibling_with(|_| {}).await
    }

    pub async fn sibling_with(&self, customise: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = (*self.state.settings).clone();
        customise(&mut settings);
        let (_, _, wechat_server) = spawn_wechat().await;
        start(settings, None, self.state.clock.clone(), self.wechat.clone(), wechat_server).await
    }

    /// Takes the database away from the running service (SQLite: its one shared pool is
    /// closed; PostgreSQL: see [`TestDatabase::cut_off`]).
    pub async fn cut_off_database(&self) {
        self.state.db.clone().close().await.expect("close pool");
        if let Some(db) = &self._db {
            db.cut_off().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub fn get(&self, path: &str) -> impl Future<Output = Response> + use<'_> {
        let req = self.request(Method::GET, path);
        async move { req.send().await.expect("request") }
    }

    /// The body is serialised at once, so the future borrows nothing but the app.
    pub fn post_json(&self, path: &str, body: &Value) -> impl Future<Output = Response> + use<'_> {
        let req = self.request(Method::POST, path).json(body);
        async move { req.send().await.expect("request") }
    }
}

/// Reads a response as JSON, with the status for assertions.
pub async fn json(res: Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, value)
}

/// Asserts that a response is a problem+json with the given status and code.
pub async fn assert_problem(res: Response, status: u16, code: &str) -> Value {
    let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let (got, body) = json(res).await;
    assert_eq!(got, status, "status; body: {body}");
    assert_eq!(content_type.as_deref(), Some("application/problem+json"), "content type; body: {body}");
    assert_eq!(body["code"], code, "code; body: {body}");
    assert_eq!(body["status"], status);
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some());
    assert!(body["type"].as_str().is_some());
    body
}

/// A database that exists for one test.
pub struct TestDatabase {
    pub url: String,
    pub dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    pub async fn create() -> Self {
        init_process();
        let dir = tempfile::tempdir().expect("temp dir");
        match postgres_url() {
            None => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                Self { url, dir, postgres: None }
            }
            Some(admin) => {
                let template = postgres_template(&admin).await;
                let name = format!("zhuge_t_{}", uuid::Uuid::new_v4().simple());
                let conn = Database::connect(&admin).await.expect("connect admin");
                // Two CREATE DATABASE from one template at the same moment can collide;
                // the template is never in use otherwise, so a retry succeeds.
                let mut attempt = 0;
                loop {
                    let sql = format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"");
                    match conn.execute_unprepared(&sql).await {
                        Ok(_) => break,
                        Err(e) if attempt < 50 && e.to_string().contains("being accessed by other users") => {
                            attempt += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("create test database: {e}"),
                    }
                }
                drop(conn.close().await);
                let url = database_url(&admin, &name);
                Self { url, dir, postgres: Some((admin, name)) }
            }
        }
    }
}

impl TestDatabase {
    /// Makes the database unreachable: on PostgreSQL no new connection is accepted and
    /// every open one is ended (the service's pools, one per worker, all see it).
    pub async fn cut_off(&self) {
        let Some((admin, name)) = &self.postgres else { return };
        let conn = Database::connect(admin).await.expect("connect admin");
        conn.execute_unprepared(&format!("ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS false")).await.expect("disallow");
        conn.execute_unprepared(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            .await
            .expect("terminate");
        drop(conn.close().await);
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else { return };
        // Drop runs inside the test's runtime; do the async work on a thread of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(conn) = Database::connect(&admin).await {
                    drop(conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await);
                    drop(conn.close().await);
                }
            });
        });
        drop(done.join());
    }
}

/// `postgres://u@h:p/db?x` with the database part replaced.
pub fn database_url(admin: &str, name: &str) -> String {
    let (base, query) = admin.split_once('?').map_or((admin, None), |(b, q)| (b, Some(q)));
    let base = match base.rsplit_once('/') {
        Some((host, _)) if host.contains("//") && host.len() > "postgres://".len() => host,
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// The migrated template database, made once per migration set across every test process.
async fn postgres_template(admin: &str) -> String {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            use migration::MigratorTrait;
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            for m in migration::Migrator::migrations() {
                m.name().hash(&mut hasher);
            }
            // A migration edited in place (before it was ever released) must not reuse a
            // template built from its old text.
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migration/src");
            let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            for f in files {
                std::fs::read(&f).unwrap().hash(&mut hasher);
            }
            let hash = hasher.finish();
            let name = format!("zhuge_tpl_{hash:016x}");
            let conn = Database::connect(admin).await.expect("connect admin");
            let lock = i64::from_ne_bytes(hash.to_ne_bytes());
            conn.execute_unprepared(&format!("SELECT pg_advisory_lock({lock})")).await.unwrap();
            let exists = conn
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    format!("SELECT 1 AS one FROM pg_database WHERE datname = '{name}'"),
                ))
                .await
                .unwrap()
                .is_some();
            if !exists {
                let building = format!("{name}_building");
                conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)")).await.unwrap();
                conn.execute_unprepared(&format!("CREATE DATABASE \"{building}\"")).await.unwrap();
                let db = zhuge_card::db::connect_url(&database_url(admin, &building), 2).await.unwrap();
                zhuge_card::db::migrate(&db).await.unwrap();
                db.close().await.unwrap();
                conn.execute_unprepared(&format!("ALTER DATABASE \"{building}\" RENAME TO \"{name}\"")).await.unwrap();
            }
            conn.execute_unprepared(&format!("SELECT pg_advisory_unlock({lock})")).await.unwrap();
            drop(conn.close().await);
            name
        })
        .await
        .clone()
}
