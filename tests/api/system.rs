use crate::support::{json, spawn_app};

#[tokio::test]
async fn healthz_answers_ok_with_a_request_id() {
    let app = spawn_app().await;
    let res = app.get("/healthz").await;
    let id = res.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    assert_eq!(res.headers().get("x-content-type-options").unwrap(), "nosniff");
    assert_eq!(json(res).await, (200, serde_json::json!({"status": "ok"})));
}

#[tokio::test]
async fn a_sane_incoming_request_id_is_kept_and_a_hostile_one_replaced() {
    let app = spawn_app().await;
    let res = app.request(reqwest::Method::GET, "/healthz").header("x-request-id", "lb-1234_abc").send().await.unwrap();
    assert_eq!(res.headers().get("x-request-id").unwrap(), "lb-1234_abc");
    let res = app.request(reqwest::Method::GET, "/healthz").header("x-request-id", "a b\"<script>").send().await.unwrap();
    let id = res.headers().get("x-request-id").unwrap().to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

#[tokio::test]
async fn readyz_reports_the_database_and_cache() {
    let app = spawn_app().await;
    let (status, body) = json(app.get("/readyz").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ready");
    assert_eq!(body["database"]["status"], "up");
    let expected_db = if crate::support::postgres_url().is_some() { "postgres" } else { "sqlite" };
    assert_eq!(body["database"]["backend"], expected_db);
    let expected_cache = if crate::support::redis_url().is_some() { "redis" } else { "memory" };
    assert_eq!(body["cache"]["backend"], expected_cache);
    assert_eq!(body["cache"]["status"], "up");
}

#[tokio::test]
async fn readyz_is_503_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.cut_off_database().await;
    let (status, body) = json(app.get("/readyz").await).await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["database"]["status"], "down");
    // Liveness does not depend on the database.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    app.get("/healthz").await;
    app.get("/healthz").await;
    app.get("/no/such/thing").await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/plain"));
    let text = res.text().await.unwrap();
    assert!(text.contains(r#"zhuge_http_requests_total{method="GET",route="/healthz",status="200"} 2"#), "{text}");
    assert!(text.contains(r#"zhuge_http_requests_total{method="GET",route="unmatched",status="404"} 1"#), "{text}");
    assert!(text.contains("zhuge_http_request_duration_seconds_bucket"));
    assert!(text.contains("zhuge_db_pool_connections"));
    assert!(text.contains("zhuge_cache_hits_total"));
}

#[tokio::test]
async fn swagger_ui_and_the_spec_are_served() {
    let app = spawn_app().await;
    let res = app.get("/docs").await;
    assert_eq!(res.status(), 307);
    let res = app.get("/docs/").await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("swagger"));
    // The UI's own assets come from the binary, not the internet.
    let res = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(res.status(), 200);
    let (status, spec) = json(app.get("/openapi.json").await).await;
    assert_eq!(status, 200);
    assert_eq!(spec["info"]["title"], "zhuge-card");
    assert!(spec["paths"]["/healthz"]["get"].is_object());
}
