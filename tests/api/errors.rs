//! Bad input of every kind gets problem+json, never HTML and never a 500.

use crate::support::{assert_problem, spawn_app};

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let app = spawn_app().await;
    let body = assert_problem(app.get("/api/v1/no-such-thing").await, 404, "not_found").await;
    assert_eq!(body["title"], "资源不存在");
    assert_eq!(body["type"], "urn:zhuge-card:problem:not_found");
}

#[tokio::test]
async fn english_is_answered_when_asked_for() {
    let app = spawn_app().await;
    let res = app.request(reqwest::Method::GET, "/nope").header("accept-language", "en-US,en;q=0.9").send().await.unwrap();
    let body = assert_problem(res, 404, "not_found").await;
    assert_eq!(body["title"], "Not found");
    assert_eq!(body["detail"], "Not found");
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow() {
    let app = spawn_app().await;
    let res = app.request(reqwest::Method::DELETE, "/healthz").send().await.unwrap();
    assert_eq!(res.headers().get("allow").unwrap(), "GET, HEAD");
    assert_problem(res, 405, "method_not_allowed").await;
}
