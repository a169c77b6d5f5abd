//! A small W3C WebDriver client over the reqwest already in the tree (no new dependency
//! for everyone's test build), driving Debian's chromium through chromium-driver.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// `chromedriver` on a free port; killed when dropped.
pub struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Driver {
    pub async fn start(chromedriver: &Path) -> Driver {
        let port = super::free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver { child, base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = driver.http.get(format!("{}/status", driver.base)).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        driver
    }

    /// A new headless chromium. `camera`: a y4m file the fake camera plays.
    pub async fn session(&self, chromium: &Path, camera: Option<&Path>, profile: &Path) -> Session {
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-quic".to_owned(),
            "--disable-features=Translate,MediaRouter,OptimizationHints".to_owned(),
            "--lang=zh-CN".to_owned(),
            "--window-size=1440,900".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        if let Some(video) = camera {
            args.push("--use-fake-ui-for-media-stream".to_owned());
            args.push("--use-fake-device-for-media-stream".to_owned());
            args.push(format!("--use-file-for-fake-video-capture={}", video.display()));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let res: Value = self.http.post(format!("{}/session", self.base)).json(&caps).send().await.unwrap().json().await.unwrap();
        let id = res["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {res}")).to_owned();
        Session { base: format!("{}/session/{id}", self.base), http: self.http.clone() }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromium runs as chromedriver's child and outlives it: a test that fails before
        // `quit` must not leave browsers running (its children go with it).
        drop(Command::new("pkill").args(["-TERM", "-P", &self.child.id().to_string()]).status());
        drop(self.child.kill());
        drop(self.child.wait());
    }
}

pub struct Session {
    base: String,
    http: reqwest::Client,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Session {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.map_err(|e| e.to_string())?;
        let ok = res.status().is_success();
        let v: Value = res.json().await.map_err(|e| e.to_string())?;
        if ok { Ok(v["value"].clone()) } else { Err(v["value"].to_string()) }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await.unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    /// Emulates a device viewport (CSS pixels); `mobile` also sets touch-like metrics.
    pub async fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}}),
        )
        .await;
    }

    pub async fn try_find(&self, css: &str) -> Option<String> {
        let v = self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await.ok()?;
        v[ELEMENT].as_str().map(str::to_owned)
    }

    /// Waits until `css` matches a displayed element.
    pub async fn wait(&self, css: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let shown = self
                .call(
                    reqwest::Method::POST,
                    "/execute/sync",
                    Some(json!({"script": "return [...document.querySelectorAll(arguments[0])].some((e) => e.getClientRects().length > 0)", "args": [css]})),
                )
                .await;
            if shown == Ok(Value::Bool(true))
                && let Some(id) = self.try_find(css).await
            {
                return id;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "last check: {shown:?}; find: {:?}",
                    self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await
                );
                let body = self.script("return document.body.innerText", json!([])).await;
                panic!("timed out waiting for {css}; the page says:\n{}", body.as_str().unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks `css` once it shows; the pages re-render lists, so an element found a
    /// moment ago may be gone (stale): find it again.
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let id = self.wait(css, Duration::from_secs(10)).await;
            match self.call(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await {
                Ok(_) => return,
                Err(e) if e.contains("stale element") && Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => panic!("click {css}: {e}"),
            }
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.wait(css, Duration::from_secs(10)).await;
        self.post(&format!("/element/{id}/clear"), json!({})).await;
        self.post(&format!("/element/{id}/value"), json!({"text": text})).await;
    }

    pub async fn text(&self, css: &str) -> String {
        let id = self.wait(css, Duration::from_secs(10)).await;
        let v = self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None).await.unwrap_or_default();
        v.as_str().unwrap_or_default().to_owned()
    }

    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args})).await
    }

    /// Presses a key (WebDriver key codes: Tab is `\u{E004}`).
    pub async fn press(&self, key: &str) {
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [{"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]}),
        )
        .await;
    }

    /// Types into whatever has the focus, as a keyboard (or a USB scanner) would.
    pub async fn post_keys(&self, text: &str) {
        let keys: Vec<Value> = text
            .chars()
            .flat_map(|c| [json!({"type": "keyDown", "value": c.to_string()}), json!({"type": "keyUp", "value": c.to_string()})])
            .collect();
        self.post("/actions", json!({"actions": [{"type": "key", "id": "scanner", "actions": keys}]})).await;
    }

    pub async fn screenshot(&self, path: &Path) {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await.unwrap();
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Browser console entries since the last call (chromedriver's log endpoint).
    pub async fn console(&self) -> Vec<(String, String)> {
        let v = self.call(reqwest::Method::POST, "/se/log", Some(json!({"type": "browser"}))).await.unwrap_or_default();
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| (e["level"].as_str().unwrap_or_default().to_owned(), e["message"].as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn quit(self) {
        drop(self.call(reqwest::Method::DELETE, "", None).await);
    }
}

/// Where screenshots go: `target/browser-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
