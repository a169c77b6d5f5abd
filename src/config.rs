//! Typed settings: defaults → optional TOML file → environment.
//!
//! The environment names are the ones in SPEC §8 (`DATABASE_URL`, `REDIS_URL`, `ZHUGE_*`).
//! Secrets are [`SecretString`]s so that `Debug` never prints them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The master key used when none is configured. Only acceptable in the dev profile.
pub const DEV_MASTER_KEY: &str = "dev-only-master-key-do-not-use-in-production";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    #[default]
    Dev,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub profile: Profile,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite://…`; empty means SQLite under `data_dir`.
    pub database_url: Option<SecretString>,
    /// `redis://…`; empty means the in-process cache.
    pub redis_url: Option<SecretString>,
    /// Prefix for every cache key (lets several deployments or tests share one Redis).
    pub cache_prefix: String,
    pub master_key: Option<SecretString>,
    pub log_format: Option<LogFormat>,
    /// Origins allowed by CORS; empty disables CORS headers entirely.
    /// From the environment as a comma-separated list.
    #[serde(deserialize_with = "comma_list")]
    pub cors_origins: Vec<String>,
    /// Largest accepted JSON body in bytes.
    pub json_limit: usize,
    pub db_max_connections: u32,
    /// Seconds a SIGTERM waits for in-flight requests.
    pub shutdown_timeout_secs: u64,
    /// Seconds a redemption's idempotency key stays claimed by a request that may have
    /// died; after that a retry runs the request again.
    pub idempotency_lease_secs: i64,
    /// Run the outbox worker in this process (notifications).
    pub outbox_worker: bool,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_proxy: bool,
    /// HTTP worker threads; default one per core.
    pub workers: Option<usize>,
    /// Milliseconds one Redis command may take before it counts as failed.
    pub redis_timeout_ms: u64,
    pub wechat: WechatSettings,
    #[serde(skip)]
    pub demo: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WechatSettings {
    pub base_url: String,
    pub appid: String,
    pub secret: Option<SecretString>,
    /// Milliseconds one call to WeChat may take.
    pub timeout_ms: u64,
    /// Subscribe-message template ids.
    pub template_card_issued: String,
    pub template_application_rejected: String,
}

impl Default for WechatSettings {
    fn default() -> Self {
        Self {
            base_url: "https://api.weixin.qq.com".into(),
            appid: String::new(),
            secret: None,
            timeout_ms: 5000,
            template_card_issued: "card_issued".into(),
            template_application_rejected: "application_rejected".into(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            profile: Profile::Dev,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            redis_url: None,
            cache_prefix: "zhuge:".into(),
            master_key: None,
            log_format: None,
            cors_origins: Vec::new(),
            json_limit: 64 * 1024,
            db_max_connections: 16,
            shutdown_timeout_secs: 30,
            idempotency_lease_secs: 30,
            outbox_worker: true,
            trust_proxy: false,
            workers: None,
            redis_timeout_ms: 500,
            wechat: WechatSettings::default(),
            demo: false,
        }
    }
}

fn comma_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let items = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(str::to_owned).collect(),
        OneOrMany::Many(v) => v,
    };
    Ok(items.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(Box<figment::Error>),
    #[error("production profile refused: {0}")]
    Production(&'static str),
}

impl Settings {
    /// Loads defaults, then the file named by `file` (or `ZHUGE_CONFIG`) if any, then the
    /// environment. The process environment is only read here.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let file = file.map(Path::to_path_buf).or_else(|| std::env::var_os("ZHUGE_CONFIG").map(PathBuf::from));
        // Defaults come from `#[serde(default)]`: anything no provider sets keeps its default.
        let mut figment = Figment::new();
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        let figment =
            figment.merge(Env::raw().only(&["DATABASE_URL", "REDIS_URL"])).merge(Env::prefixed("ZHUGE_").ignore(&["CONFIG"]).map(|key| {
                // ZHUGE_WECHAT_BASE_URL → wechat.base_url; ZHUGE_WECHAT__X works too.
                let key = key.as_str().replace("__", ".");
                match key.strip_prefix("wechat_") {
                    Some(rest) => format!("wechat.{rest}").into(),
                    None => key.into(),
                }
            }));
        let settings: Settings = figment.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        Ok(settings.normalised())
    }

    fn normalised(mut self) -> Self {
        fn blank(s: &Option<SecretString>) -> bool {
            s.as_ref().is_none_or(|s| s.expose_secret().trim().is_empty())
        }
        if blank(&self.database_url) {
            self.database_url = None;
        }
        if blank(&self.redis_url) {
            self.redis_url = None;
        }
        if blank(&self.master_key) {
            self.master_key = None;
        }
        self
    }

    /// The database URL actually used: the configured one or SQLite under the data dir.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose_secret().to_owned(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("zhuge.db").display()),
        }
    }

    pub fn master_key(&self) -> &str {
        self.master_key.as_ref().map_or(DEV_MASTER_KEY, |k| k.expose_secret())
    }

    pub fn log_format(&self) -> LogFormat {
        self.log_format.unwrap_or(match self.profile {
            Profile::Production => LogFormat::Json,
            Profile::Dev => LogFormat::Text,
        })
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    /// Production refuses anything that is only fit for a developer's laptop.
    pub fn check_profile(&self) -> Result<(), ConfigError> {
        if self.profile != Profile::Production {
            return Ok(());
        }
        match &self.master_key {
            None => return Err(ConfigError::Production("ZHUGE_MASTER_KEY is not set")),
            Some(k) if k.expose_secret() == DEV_MASTER_KEY => {
                return Err(ConfigError::Production("ZHUGE_MASTER_KEY is the development key"));
            }
            Some(k) if k.expose_secret().len() < 32 => {
                return Err(ConfigError::Production("ZHUGE_MASTER_KEY must be at least 32 characters"));
            }
            Some(_) => {}
        }
        match &self.database_url {
            Some(url) if url.expose_secret().starts_with("postgres") => {}
            _ => return Err(ConfigError::Production("DATABASE_URL must point at PostgreSQL")),
        }
        if self.redis_url.is_none() {
            return Err(ConfigError::Production("REDIS_URL is not set"));
        }
        if self.demo {
            return Err(ConfigError::Production("demo mode is not allowed"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn production() -> Settings {
        Settings {
            profile: Profile::Production,
            master_key: Some("0123456789abcdef0123456789abcdef-real".into()),
            database_url: Some("postgres://db/zhuge".into()),
            redis_url: Some("redis://cache".into()),
            ..Settings::default()
        }
    }

    #[test]
    fn production_accepts_a_complete_configuration() {
        assert!(production().check_profile().is_ok());
    }

    #[test]
    fn production_refuses_missing_or_development_secrets() {
        let cases = [
            Settings { master_key: None, ..production() },
            Settings { master_key: Some(DEV_MASTER_KEY.into()), ..production() },
            Settings { master_key: Some("short".into()), ..production() },
            Settings { database_url: None, ..production() },
            Settings { database_url: Some("sqlite://x.db".into()), ..production() },
            Settings { redis_url: None, ..production() },
            Settings { demo: true, ..production() },
        ];
        for case in cases {
            assert!(matches!(case.check_profile(), Err(ConfigError::Production(_))));
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let printed = format!("{:?}", production());
        assert!(!printed.contains("0123456789abcdef"));
        assert!(!printed.contains("postgres://db"));
    }

    #[test]
    fn default_database_is_sqlite_under_the_data_dir() {
        let s = Settings { data_dir: "/srv/zhuge".into(), ..Settings::default() };
        assert_eq!(s.database_url(), "sqlite:///srv/zhuge/zhuge.db?mode=rwc");
    }
}
