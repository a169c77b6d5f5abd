//! Typed settings: defaults → optional TOML file → environment.
//!
//! The environment names are the ones in SPEC §8 and the README (`DATABASE_URL`,
//! `REDIS_URL`, `ZHUGE_*`): a setting `a.b_c` is read from `ZHUGE_A_B_C` (or the nested
//! form `ZHUGE_A__B_C`), and from the key `b_c` of the table `[a]` of the TOML file.
//! Secrets are [`SecretString`]s so that `Debug` never prints them, and
//! [`Settings::effective`] shows every setting with its source and secrets redacted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::{Figment, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use crate::classification::Tier;

/// The master key that earlier versions compiled into the binary for the dev profile. It
/// is public, so it is refused everywhere; it is kept only to recognise it.
pub const LEGACY_DEV_MASTER_KEY: &str = "dev-only-master-key-do-not-use-in-production";

/// Where the dev profile keeps the master key it generated on first start.
pub const DEV_KEY_FILE: &str = "master.key";

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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub profile: Profile,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite://…`; empty means SQLite under `data_dir`.
    #[serde(serialize_with = "redacted_url")]
    pub database_url: Option<SecretString>,
    /// `redis://…`; empty means the in-process cache.
    #[serde(serialize_with = "redacted_url")]
    pub redis_url: Option<SecretString>,
    /// Prefix for every cache key (lets several deployments or tests share one Redis).
    pub cache_prefix: String,
    /// Encrypts personal data and wraps signing keys. Unset in the dev profile: a random
    /// key generated on first start and kept in `data_dir` (owner-only).
    #[serde(serialize_with = "redacted")]
    pub master_key: Option<SecretString>,
    /// Earlier master keys, still readable (comma-separated in the environment), while
    /// `rotate-master-key` moves everything to the current one.
    #[serde(deserialize_with = "secret_list", serialize_with = "redacted_list")]
    pub master_keys_previous: Vec<SecretString>,
    pub log_format: Option<LogFormat>,
    /// Origins allowed by CORS; empty disables CORS headers entirely.
    /// From the environment as a comma-separated list.
    #[serde(deserialize_with = "comma_list")]
    pub cors_origins: Vec<String>,
    /// Largest accepted JSON body in bytes.
    pub json_limit: usize,
    pub db_max_connections: u32,
    /// Milliseconds any one SQL statement of a request may run on PostgreSQL before the
    /// server cancels it (`statement_timeout`); also bounds a transaction left idle.
    pub db_statement_timeout_ms: u64,
    /// Connections of the separate pool that expensive reports (admin statistics, CSV
    /// exports) use, so that they can never take the connections requests need.
    pub db_report_connections: u32,
    /// Milliseconds one statement of a report may run.
    pub db_report_timeout_ms: u64,
    /// Seconds between two folds of new redemptions into the daily statistics rollup.
    pub stats_fold_secs: u64,
    /// Days verification visits are kept (they are the record of who scanned which card
    /// when, for audit); older ones are pruned on schedule.
    pub visit_retention_days: i64,
    /// Seconds a SIGTERM waits for in-flight requests.
    pub shutdown_timeout_secs: u64,
    /// Seconds between SIGTERM and closing the listener, while `/readyz` already answers
    /// 503 so that load balancers stop sending new requests. Default: 5 in production,
    /// 0 in dev.
    pub shutdown_delay_secs: Option<u64>,
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
    /// Seconds after a redemption during which its partner may void it (SPEC §3).
    pub void_window_secs: i64,
    /// Years a card is valid when issued or renewed without an explicit `valid_years`, by
    /// tier: `"A=5,B=5,C=3,D=3,E=3"` (tiers left out: 3).
    pub card_valid_years: CardValidity,
    pub wechat: WechatSettings,
    #[serde(skip)]
    pub demo: bool,
    /// `ZHUGE_*` variables and file keys that name no setting (typos): warned about at
    /// start, refused in production.
    #[serde(skip)]
    pub unknown: Vec<String>,
    /// Where each provided setting came from, by dotted key (absent: the default).
    #[serde(skip)]
    pub sources: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WechatSettings {
    pub base_url: String,
    pub appid: String,
    #[serde(serialize_with = "redacted")]
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
            master_keys_previous: Vec::new(),
            log_format: None,
            cors_origins: Vec::new(),
            json_limit: 64 * 1024,
            db_max_connections: 16,
            db_statement_timeout_ms: 5000,
            db_report_connections: 2,
            db_report_timeout_ms: 30_000,
            stats_fold_secs: 60,
            visit_retention_days: 730,
            shutdown_timeout_secs: 30,
            shutdown_delay_secs: None,
            idempotency_lease_secs: 30,
            outbox_worker: true,
            trust_proxy: false,
            workers: None,
            redis_timeout_ms: 500,
            void_window_secs: 24 * 3600,
            card_valid_years: CardValidity::default(),
            wechat: WechatSettings::default(),
            demo: false,
            unknown: Vec::new(),
            sources: BTreeMap::new(),
        }
    }
}

/// Card validity in years for each tier (see [`Settings::card_valid_years`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardValidity([i32; 5]);

impl CardValidity {
    pub const DEFAULT_YEARS: i32 = 3;

    pub fn for_tier(&self, tier: Tier) -> i32 {
        let index = Tier::ALL.iter().position(|t| *t == tier).unwrap_or(0);
        self.0[index]
    }
}

impl Default for CardValidity {
    fn default() -> Self {
        Self([Self::DEFAULT_YEARS; 5])
    }
}

impl std::str::FromStr for CardValidity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut years = Self::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (tier, n) = item.split_once('=').ok_or_else(|| format!("{item:?} is not TIER=YEARS"))?;
            let tier = tier.trim().chars().next().and_then(Tier::from_letter).filter(|_| tier.trim().len() == 1);
            let tier = tier.ok_or_else(|| format!("{item:?}: the tier is one of A, B, C, D, E"))?;
            let n: i32 = n.trim().parse().map_err(|_| format!("{item:?}: years must be a whole number"))?;
            if !(1..=10).contains(&n) {
                return Err(format!("{item:?}: years must be 1 to 10"));
            }
            years.0[Tier::ALL.iter().position(|t| *t == tier).unwrap_or(0)] = n;
        }
        Ok(years)
    }
}

impl std::fmt::Display for CardValidity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = Tier::ALL.iter().zip(self.0).map(|(t, n)| format!("{}={n}", t.letter())).collect();
        f.write_str(&parts.join(","))
    }
}

impl Serialize for CardValidity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for CardValidity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(self) -> impl Iterator<Item = String> {
        let items: Vec<String> = match self {
            OneOrMany::One(s) => s.split(',').map(str::to_owned).collect(),
            OneOrMany::Many(v) => v,
        };
        items.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
    }
}

fn comma_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(OneOrMany::deserialize(d)?.items().collect())
}

fn secret_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SecretString>, D::Error> {
    Ok(OneOrMany::deserialize(d)?.items().map(SecretString::from).collect())
}

const REDACTED: &str = "<redacted>";

fn redacted<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    v.as_ref().map(|_| REDACTED).serialize(s)
}

fn redacted_list<S: Serializer>(v: &[SecretString], s: S) -> Result<S::Ok, S::Error> {
    v.iter().map(|_| REDACTED).collect::<Vec<_>>().serialize(s)
}

/// A URL with its password (if any) replaced: the host and database are worth seeing.
fn redacted_url<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    v.as_ref().map(|url| redact_url(url.expose_secret())).serialize(s)
}

pub fn redact_url(url: &str) -> String {
    // Several comma-separated URLs (Redis Cluster seeds): each on its own.
    if url.contains(",redis://") || url.contains(",rediss://") {
        return url.split(',').map(redact_url).collect::<Vec<_>>().join(",");
    }
    let Some((scheme, rest)) = url.split_once("://") else { return REDACTED.into() };
    // The user info ends at the last `@`: a password may hold `,`, `/` or `@` itself.
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, rest),
    };
    let (hosts, tail) = rest.split_once('/').map_or((rest, None), |(a, t)| (a, Some(t)));
    let authority = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, _)) => format!("{user}:{REDACTED}@{hosts}"),
            None => format!("{u}@{hosts}"),
        },
        None => hosts.to_owned(),
    };
    // Query parameters may carry passwords too (`?password=`): keep only their names.
    let tail = tail.map(|t| match t.split_once('?') {
        Some((path, query)) => {
            let names: Vec<&str> = query.split('&').map(|kv| kv.split('=').next().unwrap_or_default()).collect();
            format!("{path}?{}", names.iter().map(|n| format!("{n}=…")).collect::<Vec<_>>().join("&"))
        }
        None => t.to_owned(),
    });
    match tail {
        Some(t) => format!("{scheme}://{authority}/{t}"),
        None => format!("{scheme}://{authority}"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(Box<figment::Error>),
    #[error("production profile refused: {0}")]
    Production(String),
    #[error("development master key in {path}: {source}")]
    DevKey { path: PathBuf, source: std::io::Error },
}

/// Variables outside the `ZHUGE_` prefix that the service reads.
const PLAIN_VARIABLES: [&str; 2] = ["DATABASE_URL", "REDIS_URL"];
/// `ZHUGE_` variables that are not settings but are read all the same.
const META_VARIABLES: [&str; 1] = ["ZHUGE_CONFIG"];

/// The dotted setting a `ZHUGE_` variable (without the prefix) names: `WECHAT_APPID` and
/// `WECHAT__APPID` are `wechat.appid`. Case does not matter.
fn setting_key(variable: &str) -> String {
    let key = variable.to_ascii_lowercase().replace("__", ".");
    match key.strip_prefix("wechat_") {
        Some(rest) => format!("wechat.{rest}"),
        None => key,
    }
}

/// The environment variable that sets a dotted setting.
pub fn variable_of(key: &str) -> String {
    if PLAIN_VARIABLES.iter().any(|v| v.eq_ignore_ascii_case(key)) {
        key.to_ascii_uppercase()
    } else {
        format!("ZHUGE_{}", key.replace('.', "_").to_ascii_uppercase())
    }
}

/// `{a: {b: 1}}` → `["a.b"]`.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

/// One setting as `zhuge-card config` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Effective {
    pub key: String,
    pub variable: String,
    /// The value, secrets redacted; `null` when unset.
    pub value: serde_json::Value,
    /// `default`, `environment` or `file`.
    pub source: String,
}

impl Settings {
    /// Every dotted key a file or the environment may set.
    pub fn known_keys() -> Vec<String> {
        let mut out = Vec::new();
        flatten("", &serde_json::to_value(Settings::default()).unwrap_or_default(), &mut out);
        out.into_iter().map(|(k, _)| k).collect()
    }

    /// Loads defaults, then the file named by `file` (or `ZHUGE_CONFIG`) if any, then the
    /// environment. The process environment is only read here.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// [`Settings::load`] with the environment given (tests).
    pub fn load_from(file: Option<&Path>, vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| vars.iter().find(|(k, v)| k == "ZHUGE_CONFIG" && !v.trim().is_empty()).map(|(_, v)| PathBuf::from(v)));
        let known = Self::known_keys();
        let mut unknown = Vec::new();
        // Defaults come from `#[serde(default)]`: anything no provider sets keeps its default.
        let mut figment = Figment::new();
        if let Some(file) = &file {
            let toml = Toml::file_exact(file);
            let data = toml.data().map_err(|e| ConfigError::Load(Box::new(e)))?;
            for dict in data.values() {
                let mut keys = Vec::new();
                flatten("", &serde_json::to_value(dict).unwrap_or_default(), &mut keys);
                unknown.extend(keys.into_iter().filter(|(k, _)| !known.contains(k)).map(|(k, _)| format!("{k} (in {})", file.display())));
            }
            figment = figment.merge(toml);
        }
        let mut env = BTreeMap::new();
        for (name, value) in &vars {
            if PLAIN_VARIABLES.contains(&name.as_str()) {
                env.insert(name.to_ascii_lowercase(), value.clone());
            } else if let Some(rest) = name.strip_prefix("ZHUGE_") {
                if META_VARIABLES.contains(&name.as_str()) {
                    continue;
                }
                let key = setting_key(rest);
                if known.contains(&key) {
                    env.insert(key, value.clone());
                } else {
                    unknown.push(name.clone());
                }
            }
        }
        let figment = figment.merge(EnvVars(env));
        let mut settings: Settings = figment.extract_lossy().map_err(|e| ConfigError::Load(Box::new(e)))?;
        for key in &known {
            if let Some(meta) = figment.find_metadata(key) {
                let source = if meta.name == ENV_PROVIDER { "environment".to_owned() } else { "file".to_owned() };
                settings.sources.insert(key.clone(), source);
            }
        }
        settings.unknown = unknown;
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
        if blank(&self.wechat.secret) {
            self.wechat.secret = None;
        }
        self
    }

    /// Every setting with its effective value (secrets redacted) and where it came from.
    pub fn effective(&self) -> Vec<Effective> {
        let mut out = Vec::new();
        flatten("", &serde_json::to_value(self).unwrap_or_default(), &mut out);
        out.into_iter()
            .map(|(key, value)| Effective {
                variable: variable_of(&key),
                source: self.sources.get(&key).cloned().unwrap_or_else(|| "default".into()),
                key,
                value,
            })
            .collect()
    }

    /// The database URL actually used: the configured one or SQLite under the data dir.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose_secret().to_owned(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("zhuge.db").display()),
        }
    }

    /// The current master key and the earlier ones. The dev profile without a configured
    /// key uses the one it generated in the data dir on first start (creating it now if
    /// this is the first start).
    pub fn master_keys(&self) -> Result<(SecretString, Vec<SecretString>), ConfigError> {
        let current = match &self.master_key {
            Some(key) => key.clone(),
            None if self.profile == Profile::Dev => dev_master_key(&self.data_dir)?,
            None => return Err(ConfigError::Production("ZHUGE_MASTER_KEY is not set".into())),
        };
        Ok((current, self.master_keys_previous.clone()))
    }

    pub fn log_format(&self) -> LogFormat {
        self.log_format.unwrap_or(match self.profile {
            Profile::Production => LogFormat::Json,
            Profile::Dev => LogFormat::Text,
        })
    }

    /// `None` when disabled (`0`).
    pub fn statement_timeout(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.db_statement_timeout_ms)).filter(|d| !d.is_zero())
    }

    pub fn report_timeout(&self) -> Duration {
        Duration::from_millis(self.db_report_timeout_ms.max(1))
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    /// How long readiness is off before the listener closes, after SIGTERM.
    pub fn shutdown_delay(&self) -> Duration {
        Duration::from_secs(self.shutdown_delay_secs.unwrap_or(match self.profile {
            Profile::Production => 5,
            Profile::Dev => 0,
        }))
    }

    /// Production refuses anything that is only fit for a developer's laptop.
    pub fn check_profile(&self) -> Result<(), ConfigError> {
        let refuse = |why: &str| Err(ConfigError::Production(why.to_owned()));
        // The public key of earlier versions never encrypts anything. A dev database it
        // wrote may name it in ZHUGE_MASTER_KEYS_PREVIOUS, to rotate away from it.
        if self.master_key.as_ref().is_some_and(|k| k.expose_secret() == LEGACY_DEV_MASTER_KEY) {
            return refuse("ZHUGE_MASTER_KEY is the public development key of earlier versions");
        }
        if self.profile != Profile::Production {
            return Ok(());
        }
        if self.master_keys_previous.iter().any(|k| k.expose_secret() == LEGACY_DEV_MASTER_KEY) {
            return refuse("ZHUGE_MASTER_KEYS_PREVIOUS holds the public development key of earlier versions");
        }
        if !self.unknown.is_empty() {
            return Err(ConfigError::Production(format!("unknown settings: {}", self.unknown.join(", "))));
        }
        match &self.master_key {
            None => return refuse("ZHUGE_MASTER_KEY is not set"),
            Some(k) if k.expose_secret().len() < 32 => return refuse("ZHUGE_MASTER_KEY must be at least 32 characters"),
            Some(_) => {}
        }
        if self.master_keys_previous.iter().any(|k| k.expose_secret().len() < 32) {
            return refuse("every key in ZHUGE_MASTER_KEYS_PREVIOUS must be at least 32 characters");
        }
        match &self.database_url {
            Some(url) if url.expose_secret().starts_with("postgres") => {}
            _ => return refuse("DATABASE_URL must point at PostgreSQL"),
        }
        if self.redis_url.is_none() {
            return refuse("REDIS_URL is not set");
        }
        if self.wechat.appid.trim().is_empty() {
            return refuse("ZHUGE_WECHAT_APPID is not set");
        }
        if self.wechat.secret.is_none() {
            return refuse("ZHUGE_WECHAT_SECRET is not set");
        }
        if self.demo {
            return refuse("demo mode is not allowed");
        }
        Ok(())
    }
}

/// The name figment shows for values that came from [`EnvVars`].
const ENV_PROVIDER: &str = "environment";

/// The environment, already mapped to dotted keys (see [`setting_key`]).
struct EnvVars(BTreeMap<String, String>);

impl Provider for EnvVars {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(ENV_PROVIDER)
    }

    fn data(&self) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        // Nested keys become nested dictionaries. Values stay strings (a numeric secret or
        // appid is still a string); `extract_lossy` reads "1024" and "true" where a
        // setting is a number or a flag.
        let mut dict = figment::value::Dict::new();
        for (key, value) in &self.0 {
            let value = figment::value::Value::from(value.clone());
            let mut parts: Vec<&str> = key.split('.').collect();
            let last = parts.pop().unwrap_or_default();
            let mut target = &mut dict;
            for part in parts {
                let entry = target.entry(part.to_owned()).or_insert_with(|| figment::value::Dict::new().into());
                let figment::value::Value::Dict(_, inner) = entry else {
                    return Err(figment::Error::from(format!("{key} conflicts with another setting")));
                };
                target = inner;
            }
            target.insert(last.to_owned(), value);
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

/// Reads the dev profile's master key from the data dir, or generates one there: 32
/// random bytes, written owner-only with `create_new`, so two processes starting at once
/// agree on the key one of them wrote.
fn dev_master_key(data_dir: &Path) -> Result<SecretString, ConfigError> {
    use std::io::Write;
    let path = data_dir.join(DEV_KEY_FILE);
    let err = |source| ConfigError::DevKey { path: path.clone(), source };
    std::fs::create_dir_all(data_dir).map_err(err)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            let key = crate::crypto::random_token(32);
            file.write_all(format!("{key}\n").as_bytes()).and_then(|()| file.sync_all()).map_err(err)?;
            tracing::info!(path = %path.display(), "generated a development master key");
            Ok(key.into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // The writer may be between create and write: wait for the key to appear.
            for _ in 0..50 {
                let text = std::fs::read_to_string(&path).map_err(err)?;
                let key = text.trim();
                if key.len() >= 32 {
                    return Ok(key.to_owned().into());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the key file is empty or too short")))
        }
        Err(e) => Err(err(e)),
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
            wechat: WechatSettings { appid: "wx123".into(), secret: Some("wechat-secret".into()), ..WechatSettings::default() },
            ..Settings::default()
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn production_accepts_a_complete_configuration() {
        assert!(production().check_profile().is_ok());
    }

    #[test]
    fn production_refuses_missing_or_development_secrets() {
        let no_wechat_secret = WechatSettings { secret: None, ..production().wechat };
        let no_wechat_appid = WechatSettings { appid: String::new(), ..production().wechat };
        let cases = [
            Settings { master_key: None, ..production() },
            Settings { master_key: Some(LEGACY_DEV_MASTER_KEY.into()), ..production() },
            Settings { master_key: Some("short".into()), ..production() },
            Settings { master_keys_previous: vec!["short".into()], ..production() },
            Settings { master_keys_previous: vec![LEGACY_DEV_MASTER_KEY.into()], ..production() },
            Settings { database_url: None, ..production() },
            Settings { database_url: Some("sqlite://x.db".into()), ..production() },
            Settings { redis_url: None, ..production() },
            Settings { wechat: no_wechat_secret, ..production() },
            Settings { wechat: no_wechat_appid, ..production() },
            Settings { unknown: vec!["ZHUGE_WECHAT_APPIID".into()], ..production() },
            Settings { demo: true, ..production() },
        ];
        for case in cases {
            assert!(matches!(case.check_profile(), Err(ConfigError::Production(_))), "{case:?}");
        }
        // The old public key is refused in dev too.
        let dev = Settings { master_key: Some(LEGACY_DEV_MASTER_KEY.into()), ..Settings::default() };
        assert!(dev.check_profile().is_err());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let printed = format!("{:?}", production());
        assert!(!printed.contains("0123456789abcdef"));
        assert!(!printed.contains("postgres://db"));
        assert!(!printed.contains("wechat-secret"));
    }

    #[test]
    fn default_database_is_sqlite_under_the_data_dir() {
        let s = Settings { data_dir: "/srv/zhuge".into(), ..Settings::default() };
        assert_eq!(s.database_url(), "sqlite:///srv/zhuge/zhuge.db?mode=rwc");
    }

    #[test]
    fn documented_variables_reach_their_settings() {
        let s = Settings::load_from(
            None,
            env(&[
                ("ZHUGE_WECHAT_BASE_URL", "http://127.0.0.1:9/wx"),
                ("ZHUGE_WECHAT_APPID", "12345"),
                ("ZHUGE_WECHAT_SECRET", "0000"),
                ("ZHUGE_JSON_LIMIT", "1024"),
                ("ZHUGE_TRUST_PROXY", "true"),
                ("ZHUGE_CORS_ORIGINS", "https://a.example, https://b.example"),
                ("ZHUGE_MASTER_KEYS_PREVIOUS", "old-one,old-two"),
                ("DATABASE_URL", "postgres://u:pw@db/zhuge"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.wechat.base_url, "http://127.0.0.1:9/wx");
        assert_eq!(s.wechat.appid, "12345");
        assert_eq!(s.wechat.secret.as_ref().map(|k| k.expose_secret().to_owned()).as_deref(), Some("0000"));
        assert_eq!(s.json_limit, 1024);
        assert!(s.trust_proxy);
        assert_eq!(s.cors_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(s.master_keys_previous.len(), 2);
        assert!(s.unknown.is_empty(), "{:?}", s.unknown);
        let nested = Settings::load_from(None, env(&[("ZHUGE_WECHAT__APPID", "wx-nested")])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(nested.wechat.appid, "wx-nested");
    }

    #[test]
    fn unknown_variables_are_named() {
        let s = Settings::load_from(None, env(&[("ZHUGE_WECHAT_APPIID", "wx"), ("ZHUGE_LISTEN", "0.0.0.0:1"), ("ZHUGE_CONFIG", "")]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.unknown, ["ZHUGE_WECHAT_APPIID"]);
        assert_eq!(s.listen.port(), 1);
    }

    #[test]
    fn effective_settings_say_where_each_came_from_and_redact_secrets() {
        let s = Settings::load_from(
            None,
            env(&[("ZHUGE_MASTER_KEY", "a-master-key-that-is-quite-long-enough"), ("REDIS_URL", "redis://:hunter2@cache:6379/0")]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let shown = s.effective();
        let find = |key: &str| shown.iter().find(|e| e.key == key).unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(find("master_key").source, "environment");
        assert_eq!(find("master_key").value, "<redacted>");
        assert_eq!(find("redis_url").value, "redis://:<redacted>@cache:6379/0");
        assert_eq!(find("redis_url").variable, "REDIS_URL");
        assert_eq!(find("listen").source, "default");
        assert_eq!(find("wechat.appid").variable, "ZHUGE_WECHAT_APPID");
        let printed = serde_json::to_string(&shown).unwrap_or_default();
        assert!(!printed.contains("hunter2") && !printed.contains("quite-long"));
    }

    #[test]
    fn card_validity_is_read_per_tier_and_checked() {
        let v: CardValidity = "A=5, B=4".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((v.for_tier(Tier::A), v.for_tier(Tier::B), v.for_tier(Tier::E)), (5, 4, 3));
        assert_eq!(v.to_string(), "A=5,B=4,C=3,D=3,E=3");
        for bad in ["F=2", "A=0", "A=11", "A", "AB=3", "A=x"] {
            assert!(bad.parse::<CardValidity>().is_err(), "{bad} was accepted");
        }
        let s = Settings::load_from(None, env(&[("ZHUGE_CARD_VALID_YEARS", "E=1"), ("ZHUGE_VOID_WINDOW_SECS", "600")]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.card_valid_years.for_tier(Tier::E), s.void_window_secs), (1, 600));
        assert!(Settings::load_from(None, env(&[("ZHUGE_CARD_VALID_YEARS", "Z=1")])).is_err());
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("postgres://zhuge:s3cret@db:5432/zhuge?sslmode=require"),
            "postgres://zhuge:<redacted>@db:5432/zhuge?sslmode=…"
        );
        assert_eq!(redact_url("redis://a:1,redis://b:2"), "redis://a:1,redis://b:2");
        assert_eq!(redact_url("redis://:p1@a:1,redis://:p2@b:2"), "redis://:<redacted>@a:1,redis://:<redacted>@b:2");
        assert_eq!(redact_url("postgres://zhuge:ab,cd/e@f@db:5432/zhuge"), "postgres://zhuge:<redacted>@db:5432/zhuge");
        assert_eq!(redact_url("postgres://h1:5432,h2:5432/zhuge"), "postgres://h1:5432,h2:5432/zhuge");
        assert_eq!(redact_url("not a url"), "<redacted>");
    }

    #[test]
    fn the_dev_key_is_generated_once_per_data_dir_and_owner_only() {
        let (a, b) = (tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")), tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")));
        let key = |dir: &Path| dev_master_key(dir).map(|k| k.expose_secret().to_owned()).unwrap_or_else(|e| panic!("{e}"));
        let first = key(a.path());
        assert!(first.len() >= 32);
        assert_eq!(first, key(a.path()));
        assert_ne!(first, key(b.path()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(a.path().join(DEV_KEY_FILE)).map(|m| m.permissions().mode()).unwrap_or_default();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
