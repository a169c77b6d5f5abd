//! The WeChat stand-in (`zhuge_card::wechat::standin`) on a port of its own, for the
//! rehearsal (`deploy/rehearsal/`) and other runs of the real binary without WeChat.
//!
//!     cargo run --release --example wechat_standin -- 127.0.0.1:18090 APPID SECRET
//!
//! Point the service at it with `ZHUGE_WECHAT_BASE_URL=http://127.0.0.1:18090` and the same
//! `ZHUGE_WECHAT_APPID` / `ZHUGE_WECHAT_SECRET`.

use zhuge_card::wechat::standin::StandIn;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18090".to_owned());
    let appid = args.next().unwrap_or_else(|| "wx_rehearsal".to_owned());
    let secret = args.next().unwrap_or_else(|| "rehearsal-secret".to_owned());
    let standin = StandIn::new(&appid, &secret);
    let server = actix_web::HttpServer::new(move || {
        let s = standin.clone();
        actix_web::App::new().configure(move |cfg| s.configure(cfg))
    })
    .workers(2)
    .bind(&listen)?;
    eprintln!("WeChat stand-in on http://{listen} (appid {appid})");
    server.run().await?;
    Ok(())
}
