//! Builders for applications and cards.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use uuid::Uuid;
use zhuge_card::auth::Role;

use super::users::Tokens;
use super::{TestApp, json};

/// A valid ID number (GB 11643) for the `n`-th person, born 1990-01-01.
pub fn id_number(n: u32) -> String {
    let body = format!("41130219900101{:03}", n % 1000);
    let check = zhuge_card::cards::number::mod11_2(&body).unwrap();
    format!("{body}{check}")
}

pub fn application(name: &str, id: &str) -> Value {
    json!({
        "real_name": name,
        "id_number": id,
        "employer": "南阳理工学院",
        "category": "sci_tech",
        "claimed_tier": "B",
        "education": "博士研究生",
        "title": "副教授",
        "document_ids": []
    })
}

pub struct Issued {
    pub talent: Tokens,
    pub application_id: Uuid,
    pub card_id: Uuid,
    pub card_no: String,
}

impl TestApp {
    pub async fn apply(&self, talent: &Tokens, body: &Value) -> Uuid {
        let (status, a) = json(self.post_as("/api/v1/me/applications", &talent.access, body).await).await;
        assert_eq!(status, 201, "{a}");
        a["id"].as_str().unwrap().parse().unwrap()
    }

    /// A talent with an approved application and an active card.
    pub async fn issue_card(&self, who: &str, name: &str, id: &str, tier: &str, category: &str) -> Issued {
        let talent = self.talent(who).await;
        let application_id = self.apply(&talent, &application(name, id)).await;
        let reviewer = self.admin(Role::Reviewer).await;
        let url = format!("/api/v1/admin/applications/{application_id}/approve");
        let (status, a) = json(self.post_as(&url, &reviewer.access, &json!({"tier": tier, "category": category})).await).await;
        assert_eq!(status, 200, "{a}");
        let card_id: Uuid = a["card_id"].as_str().unwrap().parse().unwrap();
        let (_, card) = json(self.get_as("/api/v1/me/card", &talent.access).await).await;
        Issued { talent, application_id, card_id, card_no: card["card_no"].as_str().unwrap().to_owned() }
    }
}
