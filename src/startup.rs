//! Building and running the HTTP application. [`routes`] is the one route table: the
//! server, the tests and the OpenAPI document are all made from it.

use std::net::TcpListener;

use actix_cors::Cors;
use actix_web::dev::ResourceDef;
use actix_web::dev::{Server, ServerHandle};
use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::header;
use actix_web::middleware::{Condition, DefaultHeaders, from_fn};
use actix_web::{App, HttpRequest, HttpServer, web};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_swagger_ui::SwaggerUi;

use crate::clock::Clock;
use crate::config::Settings;
use crate::error::{ApiError, ErrorCode, FieldError, ProblemBody, Text};
use crate::state::AppState;
use crate::{accounts, applications, audit, auth, cards, catalog, json_body, redemption, system, telemetry};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "zhuge-card",
        description = "诸葛英才卡 (Nanyang Zhuge talent card) backend API. Errors are RFC 9457 problem+json with a stable `code`.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "system", description = "Probes and metrics"),
        (name = "auth", description = "Sign-in, sessions and the caller's own account"),
        (name = "admin users", description = "Admin accounts (super admins only)"),
        (name = "catalogue", description = "Partners and benefits open to talents (public)"),
        (name = "admin catalogue", description = "Managing partners and benefits (operators)"),
        (name = "staff", description = "Merchant staff accounts"),
        (name = "applications", description = "A talent's card applications and documents"),
        (name = "admin applications", description = "Reviewing applications (reviewers)"),
        (name = "cards", description = "The talent's own card"),
        (name = "admin cards", description = "Card lifecycle (reviewers)"),
        (name = "audit", description = "The hash-chained audit log"),
        (name = "merchant", description = "Verifying cards and redeeming benefits (merchant staff)"),
    ),
    components(schemas(ProblemBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Declares the `bearer` scheme that authenticated operations name.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The route table.
pub fn routes(cfg: &mut ServiceConfig) {
    cfg.configure(system::routes).configure(redemption::routes::root_routes);
    cfg.service(utoipa_actix_web::scope("/api/v1").configure(api_v1));
}

fn api_v1(cfg: &mut ServiceConfig) {
    cfg.configure(auth::routes::routes)
        .configure(accounts::routes::routes)
        .configure(catalog::routes::routes)
        .configure(accounts::staff::routes)
        .configure(applications::routes::routes)
        .configure(cards::routes::routes)
        .configure(audit::routes::routes)
        .configure(redemption::routes::routes);
}

/// The OpenAPI document, generated from the route table.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = App::new().into_utoipa_app().openapi(ApiDoc::openapi()).configure(routes).split_for_parts();
    crate::contract::complete(&mut api);
    api
}

/// The spec as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    let mut json = openapi().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}

pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
}

impl Application {
    /// Connects to storage, applies migrations and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.check_profile()?;
        let state = AppState::build(settings, Clock::system()).await?;
        Self::from_state(state)
    }

    /// Binds `state.settings.listen` (port 0 picks a free port) and prepares the server.
    pub fn from_state(state: AppState) -> anyhow::Result<Self> {
        let settings = state.settings.clone();
        let shared = state.clone();
        let listener = TcpListener::bind(settings.listen)?;
        let port = listener.local_addr()?.port();
        let spec = openapi();
        let methods = web::Data::new(MethodTable::from_spec(&spec));
        // Demo mode plays WeChat's servers on this same server.
        let standin = settings.demo.then(|| crate::wechat::standin::StandIn::new(crate::demo::APPID, crate::demo::SECRET));
        let workers = settings.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let per_worker_connections = settings.db_max_connections.div_ceil(u32::try_from(workers).unwrap_or(1).max(1));
        let mut server = HttpServer::new(move || {
            // Runs once in each worker thread.
            let app_state = web::Data::new(state.for_this_thread(per_worker_connections));
            let (app, _) = App::new()
                .into_utoipa_app()
                .app_data(app_state.clone())
                .app_data(json_config(&app_state.settings))
                .app_data(web::QueryConfig::default().error_handler(query_error))
                .app_data(web::PathConfig::default().error_handler(path_error))
                .app_data(web::PayloadConfig::new(app_state.settings.json_limit))
                .configure(routes)
                .split_for_parts();
            let standin = standin.clone();
            app.service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", spec.clone()))
                .configure(move |cfg| {
                    if let Some(s) = standin {
                        cfg.service(web::scope("/_wechat").configure(|c| s.configure(c)));
                    }
                })
                .service(web::redirect("/docs", "/docs/"))
                .configure(crate::web::configure)
                .app_data(methods.clone())
                .default_service(web::to(unrouted))
                .wrap(Condition::new(!app_state.settings.cors_origins.is_empty(), cors(&app_state.settings)))
                .wrap(from_fn(json_body::objects_only))
                .wrap(security_headers())
                .wrap(from_fn(head_as_get))
                .wrap(from_fn(telemetry::observe))
        })
        .shutdown_timeout(settings.shutdown_timeout_secs)
        // Signals are ours (see `run_until_stopped`): readiness goes off before the
        // listener closes.
        .disable_signals()
        .listen(listener)?;
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        if settings.outbox_worker {
            crate::outbox::spawn(shared.clone());
            crate::redemption::retention::spawn(shared.clone());
            crate::audit::ledger::spawn_anchoring(shared.clone());
        }
        Ok(Self { port, server: server.run(), state: shared })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops the server; `graceful` lets in-flight requests finish.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM or SIGINT. Then `/readyz` answers 503 at once, the service
    /// keeps serving for the shutdown delay (so that load balancers see it and stop
    /// sending), stops accepting, lets in-flight requests finish, and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let state = self.state.clone();
        let watcher = tokio::spawn(async move {
            shutdown_signal().await;
            let delay = state.settings.shutdown_delay();
            state.start_draining();
            tracing::info!(delay_ms = delay.as_millis(), "shutdown requested: readiness is off, draining");
            tokio::time::sleep(delay).await;
            tracing::info!("closing the listener; waiting for in-flight requests");
            handle.stop(true).await;
        });
        let result = self.server.await;
        watcher.abort();
        result
    }
}

/// SIGTERM (what orchestrators send) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot listen for shutdown signals");
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Which methods each documented path answers, so that a request with the wrong method
/// gets 405 with `Allow` rather than 404.
struct MethodTable(Vec<(ResourceDef, String)>);

impl MethodTable {
    fn from_spec(spec: &utoipa::openapi::OpenApi) -> Self {
        let mut table = Vec::new();
        for (path, item) in &spec.paths.paths {
            let value = serde_json::to_value(item).unwrap_or_default();
            // The spec documents HEAD beside every GET (`contract::complete`).
            let methods: Vec<String> = ["get", "head", "put", "post", "delete", "patch", "options"]
                .into_iter()
                .filter(|m| value.get(m).is_some())
                .map(str::to_uppercase)
                .collect();
            table.push((ResourceDef::new(path.as_str()), methods.join(", ")));
        }
        Self(table)
    }

    fn allowed(&self, path: &str) -> Option<&str> {
        self.0.iter().find(|(def, _)| def.is_match(path)).map(|(_, m)| m.as_str())
    }
}

/// HEAD is GET without the body (RFC 9110 §9.3.2): the request is routed as a GET, and the
/// HTTP layer, which remembers the method it read, sends the head and no body.
async fn head_as_get(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    if req.method() == actix_web::http::Method::HEAD {
        req.head_mut().method = actix_web::http::Method::GET;
    }
    next.call(req).await
}

/// Answers requests no route took: 405 where the path exists, else 404.
async fn unrouted(req: HttpRequest, table: web::Data<MethodTable>) -> actix_web::HttpResponse {
    use actix_web::ResponseError;
    match table.allowed(req.path()) {
        Some(allow) => {
            let mut res = ApiError::new(ErrorCode::MethodNotAllowed).error_response();
            if let Ok(v) = header::HeaderValue::from_str(allow) {
                res.headers_mut().insert(header::ALLOW, v);
            }
            res
        }
        None => ApiError::not_found().error_response(),
    }
}

fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::CACHE_CONTROL, "no-store"))
}

fn cors(settings: &Settings) -> Cors {
    settings
        .cors_origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT, header::ACCEPT_LANGUAGE])
        .allowed_header("idempotency-key")
        .allowed_header(telemetry::REQUEST_ID)
        .expose_headers([telemetry::REQUEST_ID, header::RETRY_AFTER])
        .max_age(600)
}

fn json_config(settings: &Settings) -> web::JsonConfig {
    web::JsonConfig::default().limit(settings.json_limit).error_handler(|err, req| json_error(err, req).into())
}

/// A JSON body the route could not take. Well-formed JSON that the route's types refuse
/// is a validation error naming its field; only JSON that is not well-formed is
/// `malformed_json` (see [`json_body`]).
fn json_error(err: JsonPayloadError, req: &HttpRequest) -> ApiError {
    match err {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => ApiError::new(ErrorCode::PayloadTooLarge),
        JsonPayloadError::ContentType => ApiError::new(ErrorCode::UnsupportedMediaType)
            .detail(Text::new("请求体须为 application/json", "The body must be application/json")),
        JsonPayloadError::Payload(e) => match json_body::not_an_object(&e) {
            Some(field) => ApiError::validation(vec![field]),
            None if matches!(e, PayloadError::Overflow) => ApiError::new(ErrorCode::PayloadTooLarge),
            None => ApiError::new(ErrorCode::BadRequest).cause(e),
        },
        JsonPayloadError::Deserialize(e) => {
            let body = json_body::received(req);
            // serde stops at the first error; whether the whole body is JSON decides.
            let well_formed = body.as_deref().map_or(e.is_data(), json_body::is_well_formed);
            if well_formed {
                let mut field = serde_field_error(&e.to_string(), "body");
                if field.field == "body"
                    && let Some(member) = body.and_then(|b| json_body::member_at(&b, e.line(), e.column()))
                {
                    field.field = member.into();
                }
                ApiError::validation(vec![field])
            } else {
                ApiError::new(ErrorCode::MalformedJson).detail(Text::new(
                    format!("JSON 格式错误（第 {} 行第 {} 列）", e.line(), e.column()),
                    format!("Malformed JSON at line {} column {}", e.line(), e.column()),
                ))
            }
        }
        other => ApiError::new(ErrorCode::BadRequest).cause(anyhow::anyhow!("{other}")),
    }
}

/// Query parameters that do not parse: the parameter is named where serde names it or
/// its value, or where it is the only one given; `query` otherwise.
fn query_error(err: QueryPayloadError, req: &HttpRequest) -> actix_web::Error {
    match err {
        QueryPayloadError::Deserialize(e) => {
            let message = e.to_string();
            let mut field = serde_field_error(&message, "query");
            if field.field == "query"
                && let Some(name) = parameter_with_value(req.query_string(), &message)
            {
                field.field = name.into();
            }
            ApiError::validation(vec![field]).into()
        }
        other => ApiError::new(ErrorCode::BadRequest).cause(anyhow::anyhow!("{other}")).into(),
    }
}

/// The query parameter a serde message is about: the only one given, or the one holding
/// the value the message quotes (``unknown variant `x` ``, `invalid value: string "x"`)
/// if exactly one does.
fn parameter_with_value(query: &str, message: &str) -> Option<String> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query).ok()?.into_inner();
    if let [(only, _)] = pairs.as_slice() {
        return Some(only.clone());
    }
    let quoted = if message.starts_with("unknown variant") {
        message.split('`').nth(1)
    } else if message.starts_with("invalid value: string") || message.starts_with("invalid type: string") {
        message.split('"').nth(1)
    } else {
        None
    }?;
    let mut holding = pairs.into_iter().filter(|(_, v)| v == quoted).map(|(k, _)| k);
    let name = holding.next()?;
    holding.next().is_none().then_some(name)
}

fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    // A path segment that does not parse (say, a malformed id) names nothing that exists.
    ApiError::not_found().cause(anyhow::anyhow!("{err}")).into()
}

/// Turns a serde message into a field error, naming the field where serde does and
/// `unnamed` where it does not.
fn serde_field_error(message: &str, unnamed: &str) -> FieldError {
    let field = message
        .split('`')
        .nth(1)
        .filter(|_| message.starts_with("missing field") || message.starts_with("unknown field"))
        .unwrap_or(unnamed)
        .to_owned();
    let code = if message.starts_with("missing field") { "required" } else { "invalid" };
    let message = message.split(" at line ").next().unwrap_or(message).to_owned();
    let zh = if code == "required" { "必填字段缺失".to_owned() } else { format!("字段无效：{message}") };
    FieldError::new(field, code, Text::new(zh, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_their_field() {
        let e = serde_field_error("missing field `code` at line 1 column 2", "body");
        assert_eq!((e.field.as_ref(), e.code), ("code", "required"));
        let e = serde_field_error("invalid type: integer `1`, expected a string at line 1 column 9", "body");
        assert_eq!((e.field.as_ref(), e.code), ("body", "invalid"));
        assert_eq!(e.message.en, "invalid type: integer `1`, expected a string");
    }

    #[test]
    fn query_errors_name_the_parameter_holding_the_quoted_value() {
        let message = "unknown variant `bogus`, expected one of `active`, `inactive`";
        assert_eq!(parameter_with_value("limit=5&status=bogus", message).as_deref(), Some("status"));
        assert_eq!(parameter_with_value("a=bogus&b=bogus", message), None);
        assert_eq!(parameter_with_value("limit=x", "invalid digit found in string").as_deref(), Some("limit"));
        assert_eq!(parameter_with_value("limit=x&q=y", "invalid digit found in string"), None);
    }
}
