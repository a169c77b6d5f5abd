//! Benchmark helper: mints fresh QR tokens for every active card, one per line, using the
//! service's own keys (same DATABASE_URL and ZHUGE_MASTER_KEY as the service).
//!
//!     cargo run --release --example mint_qr -- 200000 > tokens.txt

use entity::card;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::io::Write;
use zhuge_card::cards::qr;
use zhuge_card::clock::Clock;
use zhuge_card::config::Settings;
use zhuge_card::state::AppState;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    drop(rustls::crypto::ring::default_provider().install_default());
    let count: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let mut settings = Settings::load(None)?;
    settings.outbox_worker = false;
    let state = AppState::build(settings, Clock::system()).await?;
    let keys = state.qr_keys.get(&state.db, &state.keyring, true).await?;
    let key = keys.current().ok_or_else(|| anyhow::anyhow!("no signing key"))?;
    let signing = key.signing.as_ref().ok_or_else(|| anyhow::anyhow!("signing key unreadable"))?;
    let cards: Vec<card::Model> = card::Entity::find().filter(card::Column::Status.eq("active")).all(&state.db).await?;
    anyhow::ensure!(!cards.is_empty(), "no active card");
    let now = state.clock.now();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..count {
        writeln!(out, "{}", qr::mint(key.kid, signing, cards[i % cards.len()].id, now))?;
    }
    Ok(())
}
