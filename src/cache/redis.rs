//! The Redis backend: one cloned `ConnectionManager` (it reconnects by itself), a response
//! timeout so a hung Redis cannot hang a request, and a key prefix per deployment or test.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script, SetExpiry, SetOptions};

use super::CacheError;

/// INCR that starts the expiry window on the first increment, in one round trip.
const INCR_WITH_TTL: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
";

#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    client: redis::Client,
    timeout: Duration,
    prefix: String,
    incr: Script,
}

fn manager(client: &redis::Client, timeout: Duration) -> Result<ConnectionManager, CacheError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    Ok(ConnectionManager::new_lazy_with_config(client.clone(), config)?)
}

impl RedisCache {
    /// Builds the client without connecting: the service starts even while Redis is down
    /// and uses it as soon as it answers.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, CacheError> {
        let client = redis::Client::open(url)?;
        let conn = manager(&client, timeout)?;
        Ok(Self { conn, client, timeout, prefix: prefix.to_owned(), incr: Script::new(INCR_WITH_TTL) })
    }

    /// The same store through a connection driven by the calling thread's runtime. Each
    /// HTTP worker runs its own single-threaded runtime; a connection of its own saves
    /// every command two cross-thread wake-ups.
    pub fn for_this_thread(&self) -> Result<Self, CacheError> {
        Ok(Self { conn: manager(&self.client, self.timeout)?, ..self.clone() })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self.conn.clone().get(self.key(key)).await?)
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let opts = SetOptions::default().with_expiration(SetExpiry::PX(millis(ttl)));
        let _: () = self.conn.clone().set_options(self.key(key), value, opts).await?;
        Ok(())
    }

    pub async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let opts = SetOptions::default().conditional_set(redis::ExistenceCheck::NX).with_expiration(SetExpiry::PX(millis(ttl)));
        let stored: Option<String> = self.conn.clone().set_options(self.key(key), value, opts).await?;
        Ok(stored.is_some())
    }

    pub async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        let mut conn = self.conn.clone();
        Ok(self.incr.key(self.key(key)).arg(millis(ttl)).invoke_async(&mut conn).await?)
    }

    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        let ms: i64 = self.conn.clone().pttl(self.key(key)).await?;
        // -2: no key; -1: no expiry (never set by this service).
        Ok(match ms {
            -2 => None,
            -1 => Some(Duration::MAX),
            ms => Some(Duration::from_millis(ms.max(0).unsigned_abs())),
        })
    }

    pub async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let removed: i64 = self.conn.clone().del(self.key(key)).await?;
        Ok(removed > 0)
    }

    pub async fn ping(&self) -> Result<(), CacheError> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn.clone()).await?;
        Ok(())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
