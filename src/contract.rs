//! The OpenAPI document is a contract that other teams generate clients from (STYLE 14):
//! it must list every answer a client can get. Most of those answers do not come from the
//! handler but from what every route shares: the bearer extractors (401, and 403 for a
//! role the route does not serve or a pending password change), the path extractor (404
//! for an id that does not parse or names nothing), the query extractor (422), the JSON
//! and multipart bodies (400, 413, 415, 422). Writing them on each of 70 operations by
//! hand drifts; [`complete`] derives them, once, from what the operation declares:
//! its security requirement (whose scopes name the roles it serves), its parameters and
//! its request body. It also serves problems as `application/problem+json`, types
//! binary bodies as binary strings, documents `HEAD` beside every `GET` (the server
//! answers it, see `startup::head_as_get`), and gives every response a description.

use std::collections::BTreeSet;

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{
    Content, ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder, Schema, schema::ObjectBuilder, schema::SchemaFormat,
    schema::SchemaType, schema::Type,
};

use crate::auth::roles::Role;
use crate::error::PROBLEM_JSON;

const JSON: &str = "application/json";
const MULTIPART: &str = "multipart/form-data";
const PROBLEM_REF: &str = "#/components/schemas/Problem";

/// Completes the generated document; see the module docs.
pub fn complete(api: &mut OpenApi) {
    for item in api.paths.paths.values_mut() {
        for operation in operations(item) {
            shared_problems(operation);
            problems_as_problem_json(operation);
            binary_bodies(operation);
            describe_responses(operation);
        }
        if let Some(get) = &item.get
            && item.head.is_none()
        {
            item.head = Some(head_of(get));
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.options, &mut item.head, &mut item.patch, &mut item.trace]
        .into_iter()
        .flatten()
}

/// The roles an operation's `bearer` requirement names; `None` when it needs no token.
fn bearer_roles(operation: &Operation) -> Option<BTreeSet<String>> {
    let requirements = operation.security.as_ref()?;
    let value = serde_json::to_value(requirements).ok()?;
    let scopes = value.as_array()?.iter().find_map(|r| r.get("bearer"))?;
    Some(scopes.as_array()?.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
}

/// The problems every operation of a kind can answer, added where the operation does not
/// declare them itself (a declared one keeps its own, more precise, description).
fn shared_problems(operation: &mut Operation) {
    let mut shared: Vec<(&str, String)> = Vec::new();
    if let Some(roles) = bearer_roles(operation) {
        shared.push(("401", "`unauthorized`, `token_invalid`, `token_expired` or `session_revoked`: no valid access token".into()));
        let every_role = Role::ALL.iter().all(|r| roles.contains(r.as_str()));
        if !every_role {
            let allowed = if roles.is_empty() {
                "the roles this operation serves".to_owned()
            } else {
                roles.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
            };
            let mut text = format!("`forbidden`: only {allowed} may call this");
            if roles.iter().any(|r| r != Role::Talent.as_str()) || roles.is_empty() {
                text.push_str("; `password_change_required`: the account must change its initial password first");
            }
            shared.push(("403", text));
        }
    }
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let parameter_in = |place: ParameterIn| parameters.iter().any(|p| matches!(p, RefOr::T(p) if p.parameter_in == place));
    if parameter_in(ParameterIn::Path) {
        shared.push(("404", "`not_found`: nothing with this id (or the id is not one)".into()));
    }
    if parameter_in(ParameterIn::Query) {
        shared.push(("422", "`validation_failed`: a query parameter is invalid; `errors` names it".into()));
    }
    let body_types: Vec<String> = match &operation.request_body {
        Some(RefOr::T(body)) => body.content.keys().cloned().collect(),
        _ => Vec::new(),
    };
    if body_types.iter().any(|t| t == JSON) {
        shared.push(("400", "`malformed_json`: the body is not well-formed JSON (`bad_request`: it could not be read)".into()));
        shared.push(("413", "`payload_too_large`: the body is larger than the JSON limit".into()));
        shared.push(("415", "`unsupported_media_type`: the body is not `application/json`".into()));
        shared.push((
            "422",
            "`validation_failed`: the body is not a JSON object, or a field is missing or invalid; `errors` names them".into(),
        ));
    }
    if body_types.iter().any(|t| t == MULTIPART) {
        shared.push(("400", "`bad_request`: the body is not `multipart/form-data` with a `file` part".into()));
        shared.push(("413", "`payload_too_large`".into()));
        shared.push(("415", "`unsupported_media_type`".into()));
        shared.push(("422", "`validation_failed`: there is no `file` part".into()));
    }
    for (status, description) in shared {
        let responses = &mut operation.responses.responses;
        match responses.get_mut(status) {
            Some(RefOr::T(existing)) => {
                if existing.description.is_empty() {
                    existing.description = description;
                }
            }
            Some(RefOr::Ref(_)) => {}
            None => {
                responses.insert(status.to_owned(), problem_response(description));
            }
        }
    }
}

fn problem_response(description: String) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(PROBLEM_JSON, ContentBuilder::new().schema(Some(Ref::new(PROBLEM_REF))).build())
            .build(),
    )
}

/// Problems are served as `application/problem+json` (see `error.rs`); operations declare
/// them with `body = ProblemBody`, which utoipa files under `application/json`.
fn problems_as_problem_json(operation: &mut Operation) {
    let is_problem = |content: &RefOr<Content>| matches!(content, RefOr::T(c) if matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location == PROBLEM_REF));
    for response in operation.responses.responses.values_mut() {
        let RefOr::T(response) = response else { continue };
        if response.content.get(JSON).is_some_and(is_problem) {
            response.content = std::mem::take(&mut response.content)
                .into_iter()
                .map(|(kind, content)| (if kind == JSON { PROBLEM_JSON.to_owned() } else { kind }, content))
                .collect();
        }
    }
}

/// Bytes that are not JSON (`Vec<u8>` bodies: images, documents) are binary strings, not
/// arrays of integers.
fn binary_bodies(operation: &mut Operation) {
    for response in operation.responses.responses.values_mut() {
        let RefOr::T(response) = response else { continue };
        for (kind, content) in response.content.iter_mut() {
            let RefOr::T(content) = content else { continue };
            if kind != JSON && kind != PROBLEM_JSON && is_byte_array(content.schema.as_ref()) {
                content.schema = Some(binary_string());
            }
        }
    }
}

fn is_byte_array(schema: Option<&RefOr<Schema>>) -> bool {
    let Some(RefOr::T(Schema::Array(array))) = schema else { return false };
    matches!(&array.items, utoipa::openapi::schema::ArrayItems::RefOrSchema(item)
        if matches!(item.as_ref(), RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Integer)))
}

pub fn binary_string() -> RefOr<Schema> {
    RefOr::T(Schema::Object(ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::Custom("binary".into()))).build()))
}

/// Every response has a description (OpenAPI requires one); those no one wrote get the
/// status's reason phrase.
fn describe_responses(operation: &mut Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = response else { continue };
        if response.description.is_empty() {
            response.description = status
                .parse::<u16>()
                .ok()
                .and_then(|s| actix_web::http::StatusCode::from_u16(s).ok())
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Response")
                .to_owned();
        }
    }
}

/// `HEAD` answers what `GET` answers, without a body.
fn head_of(get: &Operation) -> Operation {
    let mut head = get.clone();
    head.operation_id = get.operation_id.as_ref().map(|id| format!("{id}_head"));
    head.summary = get.summary.as_ref().map(|s| format!("{s} (headers only)"));
    head.description = Some("The headers `GET` answers, without its body.".to_owned());
    for response in head.responses.responses.values_mut() {
        if let RefOr::T(response) = response {
            response.content.clear();
        }
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> serde_json::Value {
        serde_json::to_value(crate::startup::openapi()).unwrap_or_default()
    }

    #[test]
    fn operation_ids_are_unique_and_every_response_is_described() {
        let doc = document();
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let id = operation["operationId"].as_str().unwrap_or_default().to_owned();
                assert!(!id.is_empty(), "{method} {path} has no operationId");
                assert!(ids.insert(id.clone()), "operationId {id} is used twice ({method} {path})");
                for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                    let description = response["description"].as_str().unwrap_or_default();
                    assert!(!description.is_empty(), "{method} {path} {status} has no description");
                }
            }
        }
    }

    #[test]
    fn authenticated_operations_document_401_and_role_refusals() {
        let doc = document();
        let me = &doc["paths"]["/api/v1/me"]["get"]["responses"];
        assert!(me.get("401").is_some() && me.get("403").is_none(), "every role may read /me");
        let search = &doc["paths"]["/api/v1/admin/cards"]["get"]["responses"];
        for status in ["401", "403", "422"] {
            assert!(search.get(status).is_some(), "GET /admin/cards lacks {status}");
            assert_eq!(search[status]["content"][PROBLEM_JSON]["schema"]["$ref"], PROBLEM_REF);
        }
        let approve = &doc["paths"]["/api/v1/admin/applications/{id}/approve"]["post"]["responses"];
        for status in ["400", "401", "403", "404", "413", "415", "422"] {
            assert!(approve.get(status).is_some(), "approve lacks {status}");
        }
    }

    #[test]
    fn binary_bodies_are_binary_strings_and_head_is_documented() {
        let doc = document();
        let png = &doc["paths"]["/api/v1/me/card/qr.png"];
        assert_eq!(png["get"]["responses"]["200"]["content"]["image/png"]["schema"]["format"], "binary");
        assert!(png["head"]["responses"]["200"].get("content").is_none());
        assert_eq!(png["head"]["operationId"], "my_qr_png_head");
    }
}
