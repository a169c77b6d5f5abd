//! Findings of the attack run (issue 12), each held by the tests that would have caught it.

use reqwest::Method;

use crate::support::{TestApp, spawn_app};

/// The number of series `/metrics` exposes (sample lines, comments aside).
async fn series(app: &TestApp) -> usize {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
}

#[tokio::test]
async fn invented_methods_and_paths_do_not_grow_the_metrics() {
    let app = spawn_app().await;
    // Warm up the label sets a test run has anyway.
    app.get("/healthz").await;
    app.get("/metrics").await;
    let before = series(&app).await;
    for i in 0..300 {
        let method = Method::from_bytes(format!("X{i}METHOD").as_bytes()).unwrap();
        let path = if i % 2 == 0 { "/healthz" } else { "/api/v1/partners" };
        let res = app.request(method, path).send().await.unwrap();
        assert_eq!(res.status(), 405);
    }
    for i in 0..300 {
        let path = format!("/probe/{i}/{}", uuid::Uuid::new_v4().simple());
        let res = app.get(&format!("{path}?q={i}")).await;
        assert_eq!(res.status(), 404);
        let res = app.request(Method::POST, &format!("/api/v1/{i}")).send().await.unwrap();
        assert_eq!(res.status(), 404);
    }
    let after = series(&app).await;
    let text = app.get("/metrics").await.text().await.unwrap();
    // At most four new label sets (method `other` on the two paths, GET and POST on
    // `unmatched`), each one counter and one histogram (12 buckets, +Inf, sum, count).
    assert!(after - before <= 4 * 16, "metrics grew from {before} to {after} series: {text}");
    let other: u64 = text
        .lines()
        .filter(|l| l.starts_with(r#"zhuge_http_requests_total{method="other","#))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(other, 300, "{text}");
    assert!(text.contains(r#"zhuge_http_requests_total{method="GET",route="unmatched",status="404"} 300"#), "{text}");
    assert!(text.contains(r#"zhuge_http_requests_total{method="POST",route="unmatched",status="404"} 300"#), "{text}");
    assert!(!text.contains("METHOD") && !text.contains("/probe/"), "{text}");
}
