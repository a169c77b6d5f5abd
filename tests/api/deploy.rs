//! The service as an operator runs it: the real binary, configured only by the
//! environment variables the README and `deploy/env.example` document.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::binary::{Service, command, free_port};
use crate::support::{TestDatabase, postgres_url, redis_url, spawn_wechat};

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// `zhuge-card config --json` with `env` (and optionally a file), parsed.
fn config_json(env: &[(&str, &str)], file: Option<&std::path::Path>) -> (bool, Value) {
    let mut cmd = command();
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(f) = file {
        cmd.arg("--config").arg(f);
    }
    let out = cmd.args(["config", "--json"]).output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), doc)
}

fn setting<'a>(doc: &'a Value, variable: &str) -> &'a Value {
    doc["settings"].as_array().unwrap().iter().find(|s| s["variable"] == variable).unwrap_or_else(|| panic!("{variable} is no setting"))
}

/// Every `ZHUGE_*`, `DATABASE_URL` and `REDIS_URL` name in a text.
fn variables_in(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|w| (w.starts_with("ZHUGE_") && w.len() > "ZHUGE_".len()) || *w == "DATABASE_URL" || *w == "REDIS_URL")
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_documented_variable_and_file_key_reaches_its_setting() {
    let readme = repo_file("README.md");
    let section = readme.split("## Configuration").nth(1).unwrap().split("\n## ").next().unwrap();
    let table: Vec<&str> = section.lines().filter(|l| l.starts_with("| `")).collect();
    let mut documented = variables_in(&table.join("\n"));
    documented.extend(variables_in(&repo_file("deploy/env.example")));
    documented.extend(variables_in(&repo_file("deploy/k8s/configmap.yaml")));
    documented.extend(variables_in(&repo_file("deploy/compose.yaml")));
    documented.sort();
    documented.dedup();
    assert!(documented.len() >= 20, "the README table went missing? {documented:?}");

    // Each one, set on its own, is reported as coming from the environment.
    for name in documented.iter().filter(|n| *n != "ZHUGE_CONFIG") {
        let value = match name.as_str() {
            "ZHUGE_LISTEN" => "0.0.0.0:9999",
            "ZHUGE_PROFILE" => "production",
            "ZHUGE_LOG_FORMAT" => "json",
            "ZHUGE_DATA_DIR" | "ZHUGE_CACHE_PREFIX" | "ZHUGE_CORS_ORIGINS" => "x",
            "ZHUGE_OUTBOX_WORKER" | "ZHUGE_TRUST_PROXY" => "false",
            "ZHUGE_CARD_VALID_YEARS" => "A=5",
            n if n.ends_with("_URL") && !n.starts_with("ZHUGE_") => "postgres://u:p@h/d",
            n if n.contains("KEY") || n.contains("SECRET") || n.contains("APPID") || n.ends_with("_URL") => {
                "some-value-of-forty-characters-or-so-ok!"
            }
            _ => "7",
        };
        let (_, doc) = config_json(&[(name, value)], None);
        assert_eq!(doc["unknown"], json!([]), "{name} is documented but unknown to the service");
        assert_eq!(setting(&doc, name)["source"], "environment", "{name}={value} did not reach its setting: {doc}");
    }

    // The example TOML file names every setting, and each comes from the file.
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/zhuge.example.toml");
    let (_, doc) = config_json(&[], Some(&example));
    assert_eq!(doc["unknown"], json!([]), "{doc}");
    for s in doc["settings"].as_array().unwrap() {
        assert_eq!(s["source"], "file", "{} is not in deploy/zhuge.example.toml", s["key"]);
    }
    // The environment wins over the file.
    let (_, doc) = config_json(&[("ZHUGE_JSON_LIMIT", "4096")], Some(&example));
    assert_eq!(
        (setting(&doc, "ZHUGE_JSON_LIMIT")["value"].clone(), setting(&doc, "ZHUGE_JSON_LIMIT")["source"].clone()),
        (json!(4096), json!("environment"))
    );
}

#[test]
fn config_shows_sources_redacts_secrets_and_judges_the_production_profile() {
    let env = [
        ("ZHUGE_PROFILE", "production"),
        ("ZHUGE_MASTER_KEY", "master-key-master-key-master-key-42"),
        ("DATABASE_URL", "postgres://zhuge:db-password-1@db:5432/zhuge"),
        ("REDIS_URL", "redis://:redis-password-2@cache:6379/0"),
        ("ZHUGE_WECHAT_APPID", "wx0123456789"),
        ("ZHUGE_WECHAT_SECRET", "wechat-secret-3"),
    ];
    let (ok, doc) = config_json(&env, None);
    assert!(ok, "{doc}");
    assert_eq!(doc["profile_check"], "ok");
    let printed = doc.to_string();
    for secret in ["master-key-master", "db-password-1", "redis-password-2", "wechat-secret-3"] {
        assert!(!printed.contains(secret), "{secret} was printed");
    }
    assert_eq!(setting(&doc, "DATABASE_URL")["value"], "postgres://zhuge:<redacted>@db:5432/zhuge");
    assert_eq!(setting(&doc, "ZHUGE_WECHAT_APPID")["value"], "wx0123456789");
    assert_eq!(setting(&doc, "ZHUGE_LISTEN")["source"], "default");

    // A typo is named, and production refuses it; so it does a missing WeChat secret.
    let mut typo = env.to_vec();
    typo.push(("ZHUGE_WECHAT_APPIID", "wx"));
    let (ok, doc) = config_json(&typo, None);
    assert!(!ok);
    assert_eq!(doc["unknown"], json!(["ZHUGE_WECHAT_APPIID"]));
    assert!(doc["profile_check"].as_str().unwrap().contains("ZHUGE_WECHAT_APPIID"), "{doc}");
    let no_secret: Vec<_> = env.iter().copied().filter(|(k, _)| *k != "ZHUGE_WECHAT_SECRET").collect();
    let (ok, doc) = config_json(&no_secret, None);
    assert!(!ok);
    assert!(doc["profile_check"].as_str().unwrap().contains("ZHUGE_WECHAT_SECRET"), "{doc}");

    // The plain table names the same things.
    let out = command().envs(env).arg("config").output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("wechat.appid") && table.contains("ZHUGE_WECHAT_APPID") && table.contains("environment"), "{table}");
    assert!(table.contains("profile Production: ok"), "{table}");
}

/// The production shape when PostgreSQL and Redis are available (CI), else the dev
/// profile on SQLite: either way only environment variables configure the binary.
#[tokio::test]
async fn the_binary_configured_by_environment_alone_signs_a_talent_in_and_honours_each_setting() {
    let (standin, wechat_base, _wechat) = spawn_wechat().await;
    let db = TestDatabase::create().await;
    let production = postgres_url().is_some() && redis_url().is_some();
    let prefix = format!("deploy{}:", uuid::Uuid::new_v4().simple());
    let port = free_port();
    let mut env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("ZHUGE_DATA_DIR", db.dir.path().display().to_string()),
        ("ZHUGE_MASTER_KEY", "a-deployment-master-key-of-enough-length".to_owned()),
        ("ZHUGE_WECHAT_BASE_URL", wechat_base),
        ("ZHUGE_WECHAT_APPID", crate::support::WX_APPID.to_owned()),
        ("ZHUGE_WECHAT_SECRET", crate::support::WX_SECRET.to_owned()),
        ("ZHUGE_JSON_LIMIT", "2048".to_owned()),
        ("ZHUGE_CORS_ORIGINS", "https://console.example".to_owned()),
        ("ZHUGE_LOG_FORMAT", "json".to_owned()),
        ("ZHUGE_CACHE_PREFIX", prefix.clone()),
        ("ZHUGE_SHUTDOWN_DELAY_SECS", "0".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    if production {
        env.push(("ZHUGE_PROFILE", "production".to_owned()));
        env.push(("REDIS_URL", redis_url().unwrap()));
    }
    let client = reqwest::Client::new();

    // A typo: a warning that names it in dev, a refusal to start in production.
    let mut with_typo = env.clone();
    with_typo.push(("ZHUGE_WECHAT_APPIID", "wx-typo".to_owned()));
    let log = db.dir.path().join("typo.log");
    let mut typo = Service::start(&with_typo, port, &log);
    if production {
        let status = typo.wait_exit(Duration::from_secs(20)).await;
        assert!(!status.success());
        assert!(typo.log_text().contains("production profile refused: unknown settings: ZHUGE_WECHAT_APPIID"), "{}", typo.log_text());
    } else {
        typo.wait_ready(&client).await;
        assert!(typo.log_text().contains("ZHUGE_WECHAT_APPIID"), "{}", typo.log_text());
    }
    drop(typo);

    let mut service = Service::start(&env, port, &db.dir.path().join("service.log"));
    service.wait_ready(&client).await; // ZHUGE_LISTEN: it answers on the port it was given.
    let (_, ready) = crate::support::json(client.get(format!("{}/readyz", service.base)).send().await.unwrap()).await;
    let expected_cache = if production { "redis" } else { "memory" };
    assert_eq!(ready["cache"]["backend"], expected_cache, "{ready}");

    // WeChat base URL, appid and secret: the stand-in accepts only the configured pair.
    let res = client.post(format!("{}/api/v1/auth/wechat/login", service.base)).json(&json!({"code": "deploy.1"})).send().await.unwrap();
    let (status, body) = crate::support::json(res).await;
    assert_eq!(status, 200, "{body}\n{}", service.log_text());
    assert_eq!(standin.login_calls(), 1);
    let access = body["access_token"].as_str().unwrap();
    let me = client.get(format!("{}/api/v1/me", service.base)).bearer_auth(access).send().await.unwrap();
    assert_eq!(me.status(), 200);

    // ZHUGE_JSON_LIMIT: a body over 2 KiB is refused.
    let big = json!({"username": "x".repeat(3000), "password": "y"});
    let res = client.post(format!("{}/api/v1/auth/password/login", service.base)).json(&big).send().await.unwrap();
    crate::support::assert_problem(res, 413, "payload_too_large").await;

    // ZHUGE_CORS_ORIGINS: the listed origin is allowed, another is not.
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{}/api/v1/partners", service.base))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let allowed = preflight("https://console.example").await.unwrap();
    assert_eq!(allowed.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some("https://console.example"));
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // ZHUGE_CACHE_PREFIX: the session lives under the prefix in Redis.
    if production {
        let redis = redis::Client::open(redis_url().unwrap()).unwrap();
        let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.unwrap();
        assert!(!keys.is_empty(), "nothing under {prefix} in Redis");
    }

    // ZHUGE_LOG_FORMAT=json: every log line is a JSON object.
    let log = service.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        assert!(serde_json::from_str::<Value>(line).is_ok_and(|v| v.is_object()), "not a JSON log line: {line}");
    }
    // Secrets never reach the log.
    assert!(!log.contains("a-deployment-master-key") && !log.contains(crate::support::WX_SECRET), "a secret was logged");
}

/// The HS256 key the old built-in development master key derived (for the test below).
fn legacy_jwt_key() -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(zhuge_card::config::LEGACY_DEV_MASTER_KEY.as_bytes()).unwrap();
    mac.update(b"zhuge-card/jwt-hs256/v1");
    mac.finalize().into_bytes().to_vec()
}

#[tokio::test]
async fn each_dev_data_dir_gets_its_own_key_and_the_old_public_key_forges_nothing() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [&a, &b] {
        let out = command().env("ZHUGE_DATA_DIR", dir.path()).arg("migrate").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let key = |dir: &tempfile::TempDir| std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    assert_ne!(key(&a), key(&b));
    assert!(key(&a).trim().len() >= 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(a.path().join("master.key")).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // A super admin's token forged with the key earlier versions compiled in.
    let port = free_port();
    let mut service = Service::start(&[("ZHUGE_DATA_DIR", a.path().display().to_string())], port, &a.path().join("service.log"));
    let client = reqwest::Client::new();
    service.wait_ready(&client).await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": "zhuge-card", "aud": "zhuge-card-api", "sub": uuid::Uuid::now_v7(), "sid": uuid::Uuid::now_v7(),
        "role": "super_admin", "typ": "at+jwt", "iat": now, "exp": now + 600});
    let header = jsonwebtoken::Header { typ: Some("at+jwt".into()), ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256) };
    let forged = jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(&legacy_jwt_key())).unwrap();
    let res = client.get(format!("{}/api/v1/admin/users", service.base)).bearer_auth(forged).send().await.unwrap();
    crate::support::assert_problem(res, 401, "token_invalid").await;

    // The old key is refused as a master key.
    let out = command()
        .env("ZHUGE_DATA_DIR", b.path())
        .env("ZHUGE_MASTER_KEY", zhuge_card::config::LEGACY_DEV_MASTER_KEY)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("public development key"));
}

/// SIGTERM under load: readiness turns 503 at once, every request sent keeps its answer
/// (one still arriving byte by byte when the listener closes included), then the process
/// exits 0.
#[tokio::test]
async fn sigterm_under_load_fails_no_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = [
        ("ZHUGE_DATA_DIR", dir.path().display().to_string()),
        ("ZHUGE_SHUTDOWN_DELAY_SECS", "2".to_owned()),
        ("ZHUGE_SHUTDOWN_TIMEOUT_SECS", "10".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let mut service = Service::start(&env, port, &dir.path().join("service.log"));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    service.wait_ready(&client).await;
    let base = service.base.clone();

    // Eight clients behind a "load balancer" that stops routing here once it sees 503.
    let routing = Arc::new(AtomicBool::new(true));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (client, base, routing, sent, failed) = (client.clone(), base.clone(), routing.clone(), sent.clone(), failed.clone());
            tokio::spawn(async move {
                let path = if i % 2 == 0 { "/api/v1/partners" } else { "/api/v1/benefits" };
                while routing.load(Ordering::SeqCst) {
                    sent.fetch_add(1, Ordering::SeqCst);
                    let answer = match client.get(format!("{base}{path}")).send().await {
                        Ok(r) if r.status() == 200 => r.bytes().await.map(drop).map_err(|e| e.to_string()),
                        Ok(r) => Err(r.status().to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = answer {
                        eprintln!("failed: {e}");
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A slow client starts a request just before the listener will close and finishes
    // sending it after.
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let body = br#"{"username": "nobody.here", "password": "Wrong-password-2026"}"#;
    let head = format!(
        "POST /api/v1/auth/password/login HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();

    let term_at = Instant::now();
    service.signal("TERM");
    // The balancer's health check sees 503 quickly.
    loop {
        let res = client.get(format!("{base}/readyz")).send().await.unwrap();
        if res.status() == 503 {
            let (_, ready) = crate::support::json(res).await;
            assert_eq!(ready["status"], "draining");
            break;
        }
        assert!(term_at.elapsed() < Duration::from_secs(1), "readiness did not turn off");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let unready_after = term_at.elapsed();
    // Load balancers take a moment to act on it; requests keep coming meanwhile.
    tokio::time::sleep(Duration::from_millis(800)).await;
    routing.store(false, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    // The listener closes at 2 s; the slow request's body is still arriving then.
    for chunk in body.chunks(8) {
        slow.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut answer = String::new();
    slow.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "the in-flight request lost its answer: {answer:?}");

    let status = service.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}\n{}", service.log_text());
    let (sent, failed) = (sent.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!("sigterm: {sent} requests, {failed} failed; unready {unready_after:?} after SIGTERM; exited after {:?}", term_at.elapsed());
    assert!(sent > 50, "too little load ({sent}) for the test to mean much");
    assert_eq!(failed, 0, "requests failed during shutdown\n{}", service.log_text());
    // The listener is closed now.
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err());
}

/// The first `key: value` after the first `after` in a YAML text (the manifests are plain
/// enough to read by line; their schema is checked by `.ci/k8s.sh`).
fn yaml_value<'a>(text: &'a str, after: &str, key: &str) -> &'a str {
    let start = text.find(after).unwrap_or_else(|| panic!("no {after:?} in the manifest"));
    let rest = &text[start..];
    let line = rest.lines().find(|l| l.trim_start().starts_with(&format!("{key}:"))).unwrap_or_else(|| panic!("no {key} after {after:?}"));
    line.split_once(':').unwrap().1.trim().trim_matches('"')
}

/// The Deployment gives a pod what the SIGTERM test above needs: the readiness-off delay
/// plus the drain before it is killed, probes on the paths the service answers, and the
/// port the ConfigMap makes it listen on.
#[test]
fn the_kubernetes_manifests_agree_with_how_the_service_shuts_down() {
    let deployment = repo_file("deploy/k8s/deployment.yaml");
    let config = repo_file("deploy/k8s/configmap.yaml");
    let secs = |text: &str, key: &str| -> u64 { yaml_value(text, "", key).parse().unwrap() };
    let delay = secs(&config, "ZHUGE_SHUTDOWN_DELAY_SECS");
    let drain = secs(&config, "ZHUGE_SHUTDOWN_TIMEOUT_SECS");
    let grace = secs(&deployment, "terminationGracePeriodSeconds");
    assert!(grace > delay + drain, "grace {grace} s ≤ delay {delay} s + drain {drain} s: Kubernetes would SIGKILL a draining pod");
    assert!(grace <= delay + drain + 15, "grace {grace} s keeps a stuck pod long after its drain ends");
    assert!((2..=15).contains(&delay), "a {delay} s delay does not fit endpoint propagation");
    assert!(!deployment.contains("preStop:"), "the service delays itself on SIGTERM; a preStop sleep would add to it");

    assert_eq!(yaml_value(&deployment, "startupProbe:", "path"), "/healthz");
    assert_eq!(yaml_value(&deployment, "livenessProbe:", "path"), "/healthz");
    assert_eq!(yaml_value(&deployment, "readinessProbe:", "path"), "/readyz");
    let listen = yaml_value(&config, "", "ZHUGE_LISTEN");
    let port = yaml_value(&deployment, "ports:", "containerPort");
    assert!(listen.ends_with(&format!(":{port}")), "ZHUGE_LISTEN {listen} is not the container port {port}");
}
