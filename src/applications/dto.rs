use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::classification::{Category, Tier};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationStatus {
    Submitted,
    Approved,
    Rejected,
    Withdrawn,
}

impl ApplicationStatus {
    pub const ALL: [ApplicationStatus; 4] =
        [ApplicationStatus::Submitted, ApplicationStatus::Approved, ApplicationStatus::Rejected, ApplicationStatus::Withdrawn];

    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationStatus::Submitted => "submitted",
            ApplicationStatus::Approved => "approved",
            ApplicationStatus::Rejected => "rejected",
            ApplicationStatus::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<ApplicationStatus> {
        Some(match s {
            "submitted" => ApplicationStatus::Submitted,
            "approved" => ApplicationStatus::Approved,
            "rejected" => ApplicationStatus::Rejected,
            "withdrawn" => ApplicationStatus::Withdrawn,
            _ => return None,
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewApplication {
    #[schema(example = "张三明")]
    pub real_name: String,
    /// 18 characters, GB 11643 check character.
    #[schema(example = "411302199001011236", pattern = r"^[1-9][0-9]{16}[0-9Xx]$")]
    pub id_number: String,
    #[schema(example = "南阳理工学院", min_length = 1, max_length = 100, pattern = r"\S")]
    pub employer: String,
    pub category: Category,
    pub claimed_tier: Tier,
    #[schema(example = "博士研究生", min_length = 1, max_length = 50, pattern = r"\S")]
    pub education: String,
    #[schema(example = "副教授", min_length = 1, max_length = 50, pattern = r"\S")]
    pub title: String,
    /// Ids of documents uploaded with `POST /me/documents`.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub document_ids: Vec<Uuid>,
}

/// An application as shown to its applicant and to reviewers: name and ID number masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationView {
    pub id: Uuid,
    #[schema(example = "张*明")]
    pub real_name: String,
    #[schema(example = "4113**********1236")]
    pub id_number: String,
    pub employer: String,
    pub category: Category,
    pub claimed_tier: Tier,
    pub education: String,
    pub title: String,
    pub document_ids: Vec<Uuid>,
    pub status: ApplicationStatus,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// The card issued on approval.
    pub card_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// An applicant's name and ID number in full, for a reviewer; every reveal is audited.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationPii {
    pub application_id: Uuid,
    #[schema(example = "张三明")]
    pub real_name: String,
    #[schema(example = "411302199001011236")]
    pub id_number: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Approve {
    pub tier: Tier,
    pub category: Category,
    /// 1–10; default 3.
    #[schema(minimum = 1, maximum = 10)]
    pub valid_years: Option<i32>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Reject {
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub reason: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApplicationFilter {
    pub status: Option<ApplicationStatus>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CountQuery {
    /// Which applications to count.
    pub status: ApplicationStatus,
}

/// How many applications are in one status (the review queue's length, say).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationCount {
    pub status: ApplicationStatus,
    pub count: u64,
}

/// The body of `POST /me/documents`. It documents the request; the handler reads the
/// multipart stream.
#[derive(ToSchema)]
#[expect(dead_code, reason = "documents the multipart body; the handler reads the stream")]
pub struct DocumentUpload {
    /// PDF, JPEG or PNG (judged by content), at most 5 MiB.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    pub id: Uuid,
    pub filename: String,
    /// `application/pdf`, `image/jpeg` or `image/png`, as found in the content.
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}
