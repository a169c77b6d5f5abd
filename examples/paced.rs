//! Verifications at a constant rate (issue 15, SPEC §9): latency at a steady load, not only
//! at saturation. Request `n` is due at `n / rate` seconds; its latency is measured from
//! that moment, not from when it was sent, so a stalled server is charged for every request
//! that should have gone out meanwhile (no coordinated omission, as wrk2 and oha's rate
//! limit do). At most `--connections` requests are in flight; a due request waits for one.
//! Requests are released by a thread of their own that sleeps to the microsecond (tokio's
//! timer wakes on whole milliseconds, which would add up to 1 ms to every figure).
//!
//!     paced --base URL --bearer STAFF_TOKEN --tokens FILE --rate 2000 --seconds 20 [--connections 64]
//!
//! Each request verifies a fresh token, one line of FILE (`examples/mint_qr`). Prints one
//! line in bench/report.lua's format.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use tokio::sync::Semaphore;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn need(name: &str) -> anyhow::Result<String> {
    arg(name).ok_or_else(|| anyhow!("{name} is required"))
}

fn main() -> anyhow::Result<()> {
    drop(rustls::crypto::ring::default_provider().install_default());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let _entered = runtime.enter();
    let base = need("--base")?;
    let bearer = need("--bearer")?;
    let rate: u64 = need("--rate")?.parse()?;
    let seconds: u64 = need("--seconds")?.parse()?;
    let connections: usize = arg("--connections").map_or(Ok(64), |c| c.parse())?;
    let tokens = std::fs::read_to_string(need("--tokens")?).context("--tokens")?;
    let tokens: Vec<String> = tokens.lines().map(|t| serde_json::json!({ "qr": t }).to_string()).collect();
    let total = usize::try_from(rate * seconds)?;
    anyhow::ensure!(rate > 0 && tokens.len() >= total, "need {total} tokens for {rate}/s over {seconds} s, have {}", tokens.len());

    let client = reqwest::Client::builder().pool_max_idle_per_host(connections).tcp_nodelay(true).build()?;
    let url = format!("{base}/api/v1/merchant/verify");
    let slots = Arc::new(Semaphore::new(connections));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut sent = Vec::with_capacity(total);
    for (n, body) in tokens.into_iter().take(total).enumerate() {
        let due = start + Duration::from_nanos(u64::try_from(n)? * 1_000_000_000 / rate);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let (client, url, bearer, slots, latencies, errors) =
            (client.clone(), url.clone(), bearer.clone(), slots.clone(), latencies.clone(), errors.clone());
        sent.push(runtime.spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else { return };
            let answer = client
                .post(&url)
                .bearer_auth(bearer)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16());
            let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
            latencies.lock().unwrap_or_else(|p| p.into_inner()).push(micros);
            match answer {
                Ok(200) => {}
                other => errors.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{other:?}")),
            }
        }));
    }
    runtime.block_on(async {
        for s in sent {
            s.await?;
        }
        anyhow::Ok(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    latencies.sort_unstable();
    let ms = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)).map_or(0.0, |&m| m as f64 / 1000.0);
    let errors = errors.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(first) = errors.first() {
        eprintln!("paced: {} failed; the first: {first}", errors.len());
    }
    println!(
        "RESULT rps={:.1} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} p999_ms={:.2} max_ms={:.2} requests={} errors={} non2xx={}",
        latencies.len() as f64 / secs,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        ms(1.0),
        latencies.len(),
        errors.len(),
        errors.len()
    );
    Ok(())
}
