//! The in-process store: a map behind a mutex, with lazy expiry and a periodic sweep so
//! that expired keys do not accumulate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SWEEP_EVERY: u64 = 4096;

struct Entry {
    value: Vec<u8>,
    expires_at: Instant,
}

#[derive(Default)]
pub struct MemoryCache {
    map: Mutex<HashMap<String, Entry>>,
    writes: AtomicU64,
}

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_map<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>, Instant) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-operation on plain data;
        // the map is still usable.
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut map, Instant::now())
    }

    fn wrote(&self, map: &mut HashMap<String, Entry>, now: Instant) {
        if self.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            map.retain(|_, e| e.expires_at > now);
        }
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.with_map(|map, now| map.get(key).filter(|e| e.expires_at > now).map(|e| e.value.clone()))
    }

    pub fn set(&self, key: &str, value: &[u8], ttl: Duration) {
        self.with_map(|map, now| {
            map.insert(key.to_owned(), Entry { value: value.to_vec(), expires_at: now + ttl });
            self.wrote(map, now);
        })
    }

    pub fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> bool {
        self.with_map(|map, now| {
            if map.get(key).is_some_and(|e| e.expires_at > now) {
                return false;
            }
            map.insert(key.to_owned(), Entry { value: value.to_vec(), expires_at: now + ttl });
            self.wrote(map, now);
            true
        })
    }

    pub fn set_unless(&self, key: &str, value: &[u8], unless: &[u8], ttl: Duration) -> bool {
        self.with_map(|map, now| {
            if map.get(key).is_some_and(|e| e.expires_at > now && e.value == unless) {
                return false;
            }
            map.insert(key.to_owned(), Entry { value: value.to_vec(), expires_at: now + ttl });
            self.wrote(map, now);
            true
        })
    }

    pub fn incr(&self, key: &str, ttl: Duration) -> i64 {
        self.with_map(|map, now| {
            let count = match map.get_mut(key) {
                Some(e) if e.expires_at > now => {
                    let n = parse_count(&e.value).saturating_add(1);
                    e.value = n.to_string().into_bytes();
                    n
                }
                _ => {
                    map.insert(key.to_owned(), Entry { value: b"1".to_vec(), expires_at: now + ttl });
                    1
                }
            };
            self.wrote(map, now);
            count
        })
    }

    pub fn ttl(&self, key: &str) -> Option<Duration> {
        self.with_map(|map, now| map.get(key).filter(|e| e.expires_at > now).map(|e| e.expires_at - now))
    }

    pub fn delete(&self, key: &str) -> bool {
        self.with_map(|map, now| map.remove(key).is_some_and(|e| e.expires_at > now))
    }

    pub fn len(&self) -> usize {
        self.with_map(|map, now| map.values().filter(|e| e.expires_at > now).count())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn parse_count(bytes: &[u8]) -> i64 {
    std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_entries_are_gone() {
        let c = MemoryCache::new();
        c.set("k", b"v", Duration::from_millis(0));
        assert_eq!(c.get("k"), None);
        assert!(c.set_nx("k", b"w", Duration::from_secs(60)));
        assert_eq!(c.get("k").as_deref(), Some(&b"w"[..]));
    }

    #[test]
    fn sweeping_drops_expired_keys() {
        let c = MemoryCache::new();
        for i in 0..SWEEP_EVERY {
            c.set(&format!("k{i}"), b"v", Duration::ZERO);
        }
        let stored = c.with_map(|m, _| m.len());
        assert!(stored < 2, "expired keys kept: {stored}");
    }
}
