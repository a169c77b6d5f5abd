//! Demo mode seeds a city a newcomer can try end to end.

use serde_json::json;

use crate::support::{json, spawn_app};

#[tokio::test]
async fn the_demo_city_supports_the_whole_flow() {
    let app = spawn_app().await;
    zhuge_card::demo::seed(&app.state).await.unwrap();
    // Seeding again changes nothing.
    zhuge_card::demo::seed(&app.state).await.unwrap();
    let (_, partners) = json(app.get("/api/v1/partners?limit=100").await).await;
    let items = partners["items"].as_array().unwrap();
    assert_eq!(items.len(), 19);
    let districts: std::collections::HashSet<&str> = items.iter().map(|p| p["district"].as_str().unwrap()).collect();
    assert_eq!(districts.len(), 13, "every district and county: {districts:?}");
    for tier in ["A", "B", "C", "D", "E"] {
        let (_, b) = json(app.get(&format!("/api/v1/benefits?tier={tier}")).await).await;
        assert!(!b["items"].as_array().unwrap().is_empty(), "no benefit for tier {tier}");
    }

    let (status, talent) = json(app.wechat_login_raw("demo-talent.1").await).await;
    assert_eq!(status, 200);
    let talent = talent["access_token"].as_str().unwrap().to_owned();
    let (_, card) = json(app.get_as("/api/v1/me/card", &talent).await).await;
    assert_eq!(card["status"], "active");
    let (_, qr) = json(app.get_as("/api/v1/me/card/qr", &talent).await).await;

    let (a, p) = zhuge_card::demo::STAFF;
    let (_, staff) = json(app.password_login(a, p).await).await;
    let staff = staff["access_token"].as_str().unwrap().to_owned();
    let (status, visit) = json(app.post_as("/api/v1/merchant/verify", &staff, &json!({"qr": qr["token"]})).await).await;
    assert_eq!(status, 200, "{visit}");
    assert!(!visit["benefits"].as_array().unwrap().is_empty());
    for (who, password) in [zhuge_card::demo::ADMIN, zhuge_card::demo::REVIEWER, zhuge_card::demo::MANAGER] {
        assert_eq!(app.password_login(who, password).await.status(), 200, "{who}");
    }
}
