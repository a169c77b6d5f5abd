//! A TCP proxy between the browser and the service that can drop a connection right
//! after the service answered a redemption, i.e. after it committed it: the browser never
//! gets the answer's body, as when a mobile network drops at the worst moment.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TARGET: &[u8] = b"POST /api/v1/merchant/redemptions ";

pub struct Proxy {
    pub port: u16,
    /// How many more redemption answers to swallow.
    pub drops: Arc<AtomicUsize>,
    /// The Idempotency-Key of every redemption request that went through.
    pub keys: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let drops = Arc::new(AtomicUsize::new(0));
        let keys = Arc::new(Mutex::new(Vec::new()));
        let (d, k) = (drops.clone(), keys.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else { continue };
                tokio::spawn(pipe(client, server, d.clone(), k.clone()));
            }
        });
        Proxy { port, drops, keys }
    }
}

async fn pipe(client: TcpStream, server: TcpStream, drops: Arc<AtomicUsize>, keys: Arc<Mutex<Vec<String>>>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    // Set when a redemption request went up and its answer is to be swallowed.
    let doomed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let up_doomed = doomed.clone();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            if let Some(at) = find(chunk, TARGET) {
                let head = String::from_utf8_lossy(&chunk[at..]).to_string();
                if let Some(key) = head.lines().find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.trim().eq_ignore_ascii_case("idempotency-key").then(|| value.trim().to_owned())
                }) {
                    keys.lock().unwrap().push(key);
                }
                if drops.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1)).is_ok() {
                    up_doomed.store(true, Ordering::SeqCst);
                }
            }
            if sw.write_all(chunk).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if doomed.load(Ordering::SeqCst) {
            // The service has answered (and so committed). The browser gets the head of
            // the answer and then a closed connection: with the head in hand chromium
            // cannot quietly resend (it does when nothing came back), so the page sees
            // the failure and must retry by itself.
            let head = find(&buf[..n], b"\r\n\r\n").map_or(n, |at| at + 4);
            drop(cw.write_all(&buf[..head]).await);
            break;
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
    drop(cw.shutdown().await);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
