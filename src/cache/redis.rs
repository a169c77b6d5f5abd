//! The Redis backend, standalone or Redis Cluster: a response timeout so a hung Redis
//! cannot hang a request, and a key prefix per deployment or test.
//!
//! One URL is a standalone server behind a `ConnectionManager` (it reconnects by itself).
//! Several comma-separated URLs are seed nodes of a Redis Cluster, reached through the
//! crate's async cluster connection, which follows the slot map, `MOVED`/`ASK` and failovers.
//!
//! Cluster rule: the keys that one script or transaction touches must hash to one slot, so
//! they must share a hash tag (`{…}`). Today every script touches exactly one key
//! ([`INCR_WITH_TTL`], [`SET_UNLESS`]) and there are no transactions; a test runs each of
//! them on a real cluster. A future multi-key script must put its keys under one tag.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{Cmd, FromRedisValue, Script};

use super::CacheError;

/// INCR that starts the expiry window on the first increment, in one round trip.
const INCR_WITH_TTL: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
";

/// SET with an expiry, unless the key already holds `ARGV[2]`; 1 when it stored.
const SET_UNLESS: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
";

#[derive(Clone)]
enum Conn {
    Standalone { conn: ConnectionManager, client: redis::Client },
    Cluster { conn: ClusterConnection, client: Box<ClusterClient> },
}

#[derive(Clone)]
pub struct RedisCache {
    conn: Conn,
    timeout: Duration,
    prefix: String,
    incr: Script,
    set_unless: Script,
}

/// What the cluster says of itself (`CLUSTER INFO`, asked of every master).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterHealth {
    /// `ok` when every master answered `cluster_state:ok` and as many answered as the
    /// cluster has (`cluster_size`); otherwise `fail`.
    pub state: String,
    /// Masters serving slots, as the cluster itself counts them (`cluster_size`).
    pub size: u32,
    /// Masters that answered `CLUSTER INFO`.
    pub masters_answering: usize,
    /// Slots served (`cluster_slots_ok`), 16384 when the cluster is whole.
    pub slots_ok: u32,
    /// Nodes the cluster knows (`cluster_known_nodes`), as the first master saw it.
    pub known_nodes: u32,
}

fn manager(client: &redis::Client, timeout: Duration) -> Result<ConnectionManager, CacheError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    Ok(ConnectionManager::new_lazy_with_config(client.clone(), config)?)
}

/// A cluster connection that connects in the background: the service starts while the
/// cluster is down and uses it as soon as it answers.
fn cluster_connection(client: &ClusterClient, timeout: Duration) -> ClusterConnection {
    let config = ClusterConfig::new().set_connection_timeout(timeout).set_response_timeout(timeout);
    client.get_pending_async_connection_with_config(config)
}

/// The seed nodes of `url`: several comma-separated URLs mean Redis Cluster.
pub fn cluster_seeds(url: &str) -> Option<Vec<&str>> {
    let nodes: Vec<&str> = url.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    (nodes.len() > 1).then_some(nodes)
}

impl RedisCache {
    /// Builds the client without connecting: the service starts even while Redis is down
    /// and uses it as soon as it answers. Several comma-separated URLs mean Redis Cluster.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, CacheError> {
        let conn = match cluster_seeds(url) {
            Some(seeds) => {
                let client = ClusterClientBuilder::new(seeds)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(100)
                    .build()?;
                Conn::Cluster { conn: cluster_connection(&client, timeout), client: Box::new(client) }
            }
            None => {
                let client = redis::Client::open(url.trim())?;
                Conn::Standalone { conn: manager(&client, timeout)?, client }
            }
        };
        Ok(Self { conn, timeout, prefix: prefix.to_owned(), incr: Script::new(INCR_WITH_TTL), set_unless: Script::new(SET_UNLESS) })
    }

    /// The same store through a connection driven by the calling thread's runtime. Each
    /// HTTP worker runs its own single-threaded runtime; a connection of its own saves
    /// every command two cross-thread wake-ups.
    pub fn for_this_thread(&self) -> Result<Self, CacheError> {
        let conn = match &self.conn {
            Conn::Standalone { client, .. } => Conn::Standalone { conn: manager(client, self.timeout)?, client: client.clone() },
            Conn::Cluster { client, .. } => Conn::Cluster { conn: cluster_connection(client, self.timeout), client: client.clone() },
        };
        Ok(Self { conn, ..self.clone() })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster { .. })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, CacheError> {
        Ok(match &self.conn {
            Conn::Standalone { conn, .. } => cmd.query_async(&mut conn.clone()).await?,
            Conn::Cluster { conn, .. } => cmd.query_async(&mut conn.clone()).await?,
        })
    }

    async fn invoke<T: FromRedisValue>(&self, script: &redis::ScriptInvocation<'_>) -> Result<T, CacheError> {
        Ok(match &self.conn {
            Conn::Standalone { conn, .. } => script.invoke_async(&mut conn.clone()).await?,
            Conn::Cluster { conn, .. } => script.invoke_async(&mut conn.clone()).await?,
        })
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.query(redis::cmd("GET").arg(self.key(key))).await
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        self.query(redis::cmd("SET").arg(self.key(key)).arg(value).arg("PX").arg(millis(ttl))).await
    }

    pub async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let stored: Option<String> =
            self.query(redis::cmd("SET").arg(self.key(key)).arg(value).arg("NX").arg("PX").arg(millis(ttl))).await?;
        Ok(stored.is_some())
    }

    pub async fn set_unless(&self, key: &str, value: &[u8], unless: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let stored: i64 = self.invoke(self.set_unless.key(self.key(key)).arg(value).arg(unless).arg(millis(ttl))).await?;
        Ok(stored == 1)
    }

    pub async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        self.invoke(self.incr.key(self.key(key)).arg(millis(ttl))).await
    }

    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        let ms: i64 = self.query(redis::cmd("PTTL").arg(self.key(key))).await?;
        // -2: no key; -1: no expiry (never set by this service).
        Ok(match ms {
            -2 => None,
            -1 => Some(Duration::MAX),
            ms => Some(Duration::from_millis(ms.max(0).unsigned_abs())),
        })
    }

    pub async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let removed: i64 = self.query(redis::cmd("DEL").arg(self.key(key))).await?;
        Ok(removed > 0)
    }

    /// Whether the store answers. A cluster answers when every master does.
    pub async fn ping(&self) -> Result<(), CacheError> {
        match &self.conn {
            Conn::Standalone { conn, .. } => {
                let _: String = redis::cmd("PING").query_async(&mut conn.clone()).await?;
            }
            Conn::Cluster { .. } => {
                // A master that is down is simply left out of "all masters" by the client:
                // count them against the cluster's own size.
                if let Some(health) = self.cluster_health().await {
                    let health = health?;
                    if health.state != "ok" {
                        return Err(CacheError::Redis(redis::RedisError::from((
                            redis::ErrorKind::Io,
                            "cluster not whole",
                            format!("{} of {} masters answer, slots ok {}", health.masters_answering, health.size, health.slots_ok),
                        ))));
                    }
                }
            }
        }
        Ok(())
    }

    /// `CLUSTER INFO` from every master; `None` for a standalone server.
    pub async fn cluster_health(&self) -> Option<Result<ClusterHealth, CacheError>> {
        let Conn::Cluster { conn, .. } = &self.conn else { return None };
        let mut conn = conn.clone();
        let info = async move {
            // Each master on its own, so that one that is down does not hide the others.
            let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            let replies = conn.route_command(redis::cmd("CLUSTER").arg("INFO").clone(), routing).await?;
            let texts: Vec<String> = match replies {
                redis::Value::Map(pairs) => pairs.into_iter().filter_map(|(_, v)| String::from_redis_value(v).ok()).collect(),
                other => String::from_redis_value(other).into_iter().collect(),
            };
            Ok::<_, CacheError>(texts)
        };
        Some(info.await.map(|texts| ClusterHealth::from_infos(&texts)))
    }
}

impl ClusterHealth {
    fn from_infos(infos: &[String]) -> Self {
        let field = |text: &str, name: &str| {
            text.lines().find_map(|l| l.trim().strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(str::to_owned))
        };
        let number = |text: &str, name: &str| field(text, name).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        let size = infos.iter().map(|t| number(t, "cluster_size")).max().unwrap_or(0);
        let answering = u32::try_from(infos.len()).unwrap_or(u32::MAX);
        let all_ok = !infos.is_empty() && answering >= size && infos.iter().all(|t| field(t, "cluster_state").as_deref() == Some("ok"));
        let first = infos.first().map(String::as_str).unwrap_or_default();
        Self {
            state: if all_ok { "ok" } else { "fail" }.to_owned(),
            size,
            masters_answering: infos.len(),
            slots_ok: infos.iter().map(|t| number(t, "cluster_slots_ok")).min().unwrap_or(0),
            known_nodes: number(first, "cluster_known_nodes"),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_urls_are_cluster_seeds() {
        assert_eq!(cluster_seeds("redis://a:1"), None);
        assert_eq!(cluster_seeds("redis://a:1,"), None);
        assert_eq!(cluster_seeds("redis://a:1, redis://b:2"), Some(vec!["redis://a:1", "redis://b:2"]));
    }

    #[test]
    fn cluster_info_is_read() {
        let ok = "cluster_state:ok\r\ncluster_slots_ok:16384\r\ncluster_known_nodes:3\r\ncluster_size:3\r\n".to_owned();
        let bad = "cluster_state:fail\r\ncluster_slots_ok:10923\r\ncluster_known_nodes:3\r\ncluster_size:3\r\n".to_owned();
        let whole = ClusterHealth::from_infos(&[ok.clone(), ok.clone(), ok.clone()]);
        assert_eq!(whole, ClusterHealth { state: "ok".into(), size: 3, masters_answering: 3, slots_ok: 16384, known_nodes: 3 });
        let broken = ClusterHealth::from_infos(&[ok.clone(), bad]);
        assert_eq!((broken.state.as_str(), broken.slots_ok, broken.masters_answering), ("fail", 10923, 2));
        // Two masters that still say ok, while the third is gone, are not the whole cluster.
        assert_eq!(ClusterHealth::from_infos(&[ok.clone(), ok]).state, "fail");
        assert_eq!(ClusterHealth::from_infos(&[]).state, "fail");
    }
}
