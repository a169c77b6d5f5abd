//! The web clients' pages as served: embedded, compressed, under a strict policy.

use crate::support::{spawn_app, spawn_app_with};

#[tokio::test]
async fn pages_and_assets_are_served_with_a_strict_content_security_policy() {
    let app = spawn_app().await;
    for path in ["/console/", "/scan/", "/assets/api.js", "/scan/scan.js", "/console/console.css", "/assets/vendor/jsqr-1.4.0/jsQR.js"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h.get("strict-transport-security").is_none(), "no HSTS over plain HTTP");
    }
    let page = app.get("/scan/").await;
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let js = app.get("/assets/ui.js").await;
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
}

#[tokio::test]
async fn pages_are_compressed_revalidated_and_unknown_files_are_404_problems() {
    let app = spawn_app().await;
    let raw = app.client.get(app.url("/assets/vendor/jsqr-1.4.0/jsQR.js")).header("accept-encoding", "identity").send().await.unwrap();
    assert!(raw.headers().get("content-encoding").is_none());
    let etag = raw.headers()["etag"].to_str().unwrap().to_owned();
    assert!(raw.headers()["cache-control"].to_str().unwrap().contains("immutable"), "a versioned vendor file");
    let plain = raw.bytes().await.unwrap();
    let res = app.client.get(app.url("/assets/vendor/jsqr-1.4.0/jsQR.js")).header("accept-encoding", "gzip, br").send().await.unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
    let zipped = res.bytes().await.unwrap();
    assert!(zipped.len() * 3 < plain.len(), "{} of {} bytes", zipped.len(), plain.len());
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(zipped.as_ref()), &mut unzipped).unwrap();
    assert_eq!(unzipped, plain);
    // Our own files are revalidated: unchanged, a 304 with no body.
    let page = app.get("/scan/").await;
    assert_eq!(page.headers()["cache-control"], "no-cache");
    let tag = page.headers()["etag"].to_str().unwrap().to_owned();
    let again = app.client.get(app.url("/scan/")).header("if-none-match", &tag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
    let other = app.client.get(app.url("/scan/")).header("if-none-match", "\"something-else\"").send().await.unwrap();
    assert_eq!(other.status(), 200);

    let res = app.get("/scan/nothing.js").await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // A `..` sent as is (an HTTP client would resolve it before sending): not a file.
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&address).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut conn, b"GET /assets/../Cargo.toml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(!answer.contains("[workspace]"));
    let res = app.get("/scan").await;
    assert!(res.status().is_redirection());
    assert_eq!(res.headers()["location"], "/scan/");
}

#[tokio::test]
async fn hsts_when_a_trusted_proxy_says_the_browser_used_https() {
    let app = spawn_app_with(|s| s.trust_proxy = true).await;
    let res = app.client.get(app.url("/console/")).header("x-forwarded-proto", "https").send().await.unwrap();
    assert!(res.headers()["strict-transport-security"].to_str().unwrap().starts_with("max-age="));
    let res = app.client.get(app.url("/console/")).header("x-forwarded-proto", "http").send().await.unwrap();
    assert!(res.headers().get("strict-transport-security").is_none());
    // An untrusted client cannot switch it on (nor off) by sending the header.
    let plain = spawn_app().await;
    let res = plain.client.get(plain.url("/console/")).header("x-forwarded-proto", "https").send().await.unwrap();
    assert!(res.headers().get("strict-transport-security").is_none());
}
