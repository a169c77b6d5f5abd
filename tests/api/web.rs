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
async fn pages_are_compressed_and_unknown_files_are_404_problems() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/assets/vendor/jsqr-1.4.0/jsQR.js")).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let res = app.get("/scan/nothing.js").await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = app.get("/assets/../Cargo.toml").await;
    assert_ne!(res.status(), 200);
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
