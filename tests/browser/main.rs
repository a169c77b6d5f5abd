//! The web clients in a real browser: Debian's chromium through chromium-driver, against
//! the release binary started as an operator starts it (`serve --demo`, configured only
//! by documented variables). `.ci/browser.sh` builds the binary and runs these.
//!
//! They are `#[ignore]`d in the plain `cargo test` run (which has no release binary yet);
//! `.ci/browser.sh` runs them with `--ignored`. Then a missing chromium, chromedriver,
//! ffmpeg or release binary skips with the reason printed, or fails under `CI=true`.
//! `ZHUGE_BROWSER_BINARY` points at another build of the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy;
mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use webdriver::{Driver, Session, screenshot_dir};

const STAFF: (&str, &str) = ("demo.staff", "Demo-staff-2026");
const ADMIN: (&str, &str) = ("demo.admin", "Demo-admin-2026");
const WAIT: Duration = Duration::from_secs(20);

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
    ffmpeg: PathBuf,
    binary: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

/// The tools, or `None` (skip) outside CI; a failure under `CI=true`.
fn tools() -> Option<Tools> {
    // reqwest is built without a TLS provider of its own (see STYLE.md).
    drop(rustls::crypto::ring::default_provider().install_default());
    let binary = std::env::var_os("ZHUGE_BROWSER_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/zhuge-card"));
    let found = (which("chromium"), which("chromedriver"), which("ffmpeg"), binary.is_file().then_some(binary.clone()));
    let mut missing = Vec::new();
    if found.0.is_none() {
        missing.push("chromium (apt-get install chromium)".to_owned());
    }
    if found.1.is_none() {
        missing.push("chromedriver (apt-get install chromium-driver)".to_owned());
    }
    if found.2.is_none() {
        missing.push("ffmpeg (apt-get install ffmpeg)".to_owned());
    }
    if found.3.is_none() {
        missing.push(format!("{} (cargo build-release)", binary.display()));
    }
    if !missing.is_empty() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "browser tests need: {}", missing.join(", "));
        eprintln!("SKIPPED: browser tests need {}", missing.join(", "));
        return None;
    }
    let t = Tools { chromium: found.0?, chromedriver: found.1?, ffmpeg: found.2?, binary: found.3? };
    assert_fresh(&t.binary);
    Some(t)
}

/// The binary embeds `web/`: a build older than the pages would test yesterday's pages.
fn assert_fresh(binary: &Path) {
    fn newest(dir: &Path) -> std::time::SystemTime {
        let mut t = std::time::UNIX_EPOCH;
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let m = if p.is_dir() { newest(&p) } else { e.metadata().unwrap().modified().unwrap() };
            t = t.max(m);
        }
        t
    }
    let web = newest(&Path::new(env!("CARGO_MANIFEST_DIR")).join("web"));
    let built = std::fs::metadata(binary).unwrap().modified().unwrap();
    assert!(built >= web, "{} is older than web/: rebuild it (cargo build-release)", binary.display());
}

/// `zhuge-card serve --demo` on a free port with a private data dir; killed when dropped.
struct Service {
    child: Child,
    port: u16,
    base: String,
    _dir: tempfile::TempDir,
}

impl Service {
    async fn start(binary: &Path) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("service.log")).unwrap();
        let mut cmd = Command::new(binary);
        for (key, _) in std::env::vars() {
            if key.starts_with("ZHUGE_") || key == "DATABASE_URL" || key == "REDIS_URL" || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .env("ZHUGE_LISTEN", format!("127.0.0.1:{port}"))
            .env("ZHUGE_DATA_DIR", dir.path().join("data"))
            .env("RUST_LOG", "warn")
            .args(["serve", "--demo"])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let s = Service { child, port, base: format!("http://127.0.0.1:{port}"), _dir: dir };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http.get(format!("{}/readyz", s.base)).send().await.is_ok_and(|r| r.status() == 200) {
            assert!(Instant::now() < deadline, "the service did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut req = reqwest::Client::new().request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn login(&self, (user, pass): (&str, &str)) -> String {
        let (s, v) =
            self.call(reqwest::Method::POST, "/auth/password/login", None, Some(json!({"username": user, "password": pass}))).await;
        assert_eq!(s, 200, "{v}");
        v["access_token"].as_str().unwrap().to_owned()
    }

    /// A talent's WeChat sign-in through the demo stand-in; `who` names the talent.
    async fn talent(&self, who: &str) -> String {
        let code = format!("{who}.{}", uuid::Uuid::new_v4().simple());
        let (s, v) = self.call(reqwest::Method::POST, "/auth/wechat/login", None, Some(json!({"code": code}))).await;
        assert_eq!(s, 200, "{v}");
        v["access_token"].as_str().unwrap().to_owned()
    }

    /// The talent's current card QR as a y4m video for chromium's fake camera.
    async fn qr_video(&self, tools: &Tools, talent: &str, dir: &Path) -> PathBuf {
        let res = reqwest::Client::new().get(self.url("/me/card/qr.png")).bearer_auth(talent).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let png = dir.join("qr.png");
        std::fs::write(&png, res.bytes().await.unwrap()).unwrap();
        let video = dir.join("qr.y4m");
        let status = Command::new(&tools.ffmpeg)
            .args(["-y", "-loglevel", "error", "-loop", "1", "-i"])
            .arg(&png)
            .args([
                "-vf",
                "scale=360:360:flags=neighbor,pad=640:480:(ow-iw)/2:(oh-ih)/2:white,format=yuv420p",
                "-t",
                "2",
                "-r",
                "10",
                "-pix_fmt",
                "yuv420p",
            ])
            .arg(&video)
            .status()
            .unwrap();
        assert!(status.success(), "ffmpeg failed");
        video
    }

    /// Uses left of the demo hospital's benefit `title`, as the talent sees them.
    async fn remaining(&self, talent: &str, title: &str) -> Option<i64> {
        let staff = self.login(STAFF).await;
        let (_, me) = self.call(reqwest::Method::GET, "/me", Some(&staff), None).await;
        let (s, v) = self.call(reqwest::Method::GET, "/me/benefits?limit=100", Some(talent), None).await;
        assert_eq!(s, 200, "{v}");
        let item =
            v["items"].as_array()?.iter().find(|i| i["benefit"]["title"] == title && i["benefit"]["partner_id"] == me["partner_id"])?;
        item["remaining"].as_i64()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        drop(self.child.kill());
        drop(self.child.wait());
    }
}

/// A browser session and what it needs; the profile dir lives as long as it.
struct Browser {
    session: Session,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

async fn browser(tools: &Tools, camera: Option<&Path>) -> Browser {
    let driver = Driver::start(&tools.chromedriver).await;
    let profile = tempfile::tempdir().unwrap();
    let session = driver.session(&tools.chromium, camera, profile.path()).await;
    Browser { session, _driver: driver, _profile: profile }
}

async fn sign_in(s: &Session, (user, pass): (&str, &str)) {
    s.type_into("#signin input[name=username]", user).await;
    s.type_into("#signin input[name=password]", pass).await;
    s.click("#signin button[type=submit]").await;
}

/// Console entries at warning level or worse, except those `allowed` names.
async fn assert_clean_console(s: &Session, allowed: &[&str]) {
    let bad: Vec<_> = s
        .console()
        .await
        .into_iter()
        .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
        .filter(|(_, msg)| !allowed.iter().any(|a| msg.contains(a)))
        .collect();
    assert!(bad.is_empty(), "console errors or failed requests: {bad:#?}");
}

const HOSPITAL_BENEFIT: &str = "就医绿色通道";

#[tokio::test]
#[ignore = "run by .ci/browser.sh (chromium, chromedriver, ffmpeg and the release binary)"]
async fn scanner_reads_a_card_from_the_camera_redeems_and_refuses_the_same_qr() {
    let Some(tools) = tools() else { return };
    let service = Service::start(&tools.binary).await;
    let work = tempfile::tempdir().unwrap();
    let talent = service.talent("demo-talent").await;
    let before = service.remaining(&talent, HOSPITAL_BENEFIT).await.unwrap();
    let video = service.qr_video(&tools, &talent, work.path()).await;
    let b = browser(&tools, Some(&video)).await;
    let s = &b.session;

    s.goto(&format!("{}/scan/", service.base)).await;
    sign_in(s, STAFF).await;
    // No token is typed or pasted: the page reads the QR from the camera.
    s.wait("#visit", WAIT).await;
    assert_eq!(s.text("#card-no").await.len(), 14);
    let holder = s.text("#holder").await;
    assert!(holder.contains('*'), "the holder is masked: {holder}");
    let scan_ms: f64 = s.script("return window.zhugeScanMs", json!([])).await.as_f64().unwrap();
    println!("figure: scan decoded → benefits on screen: {scan_ms:.0} ms");
    // What a phone downloads for the page (compressed, headers included), API calls aside.
    let weight = s
        .script(
            "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
               .filter((e) => !e.name.includes('/api/')).map((e) => [e.name, e.transferSize, e.decodedBodySize])",
            json!([]),
        )
        .await;
    let files = weight.as_array().unwrap();
    let transferred: u64 = files.iter().map(|f| f[1].as_u64().unwrap()).sum();
    let decoded: u64 = files.iter().map(|f| f[2].as_u64().unwrap()).sum();
    println!(
        "figure: /scan/ first load: {} files, {:.1} KB transferred ({:.1} KB uncompressed)",
        files.len(),
        transferred as f64 / 1024.0,
        decoded as f64 / 1024.0
    );
    assert!(transferred > 0 && transferred < 300 * 1024, "first load {transferred} bytes: {weight}");

    // One tap redeems the hospital's green channel.
    let button = format!("#benefits button[aria-label$='{HOSPITAL_BENEFIT}']");
    s.click(&button).await;
    s.wait(".redeemed", WAIT).await;
    assert_eq!(service.remaining(&talent, HOSPITAL_BENEFIT).await.unwrap(), before - 1, "the talent sees one use fewer");

    // The camera still shows the same QR: scanning again is refused on screen.
    s.click("#scan-next").await;
    s.wait("#refused", WAIT).await;
    let code = s.script("return document.querySelector('#refused').dataset.code", json!([])).await;
    assert_eq!(code, "qr_replayed", "{}", s.text("#refused").await);
    assert_eq!(service.remaining(&talent, HOSPITAL_BENEFIT).await.unwrap(), before - 1);
    // The refusal is the only failed request.
    assert_clean_console(s, &["/api/v1/merchant/verify - Failed to load resource: the server responded with a status of 409"]).await;

    // A USB scanner types the code into the focused field and presses Enter.
    s.click("#scan-next").await;
    s.click("#camera-toggle").await;
    let (_, qr) = service.call(reqwest::Method::GET, "/me/card/qr", Some(&talent), None).await;
    let focused = s.script("return document.activeElement && document.activeElement.id", json!([])).await;
    assert_eq!(focused, "qr-input", "the scanner field has the focus on a desktop");
    s.post_keys(&format!("{}\u{E007}", qr["token"].as_str().unwrap())).await;
    s.wait("#visit", WAIT).await;
    b.session.quit().await;
}

#[tokio::test]
#[ignore = "run by .ci/browser.sh (chromium, chromedriver, ffmpeg and the release binary)"]
async fn a_dropped_connection_after_the_commit_does_not_double_a_redemption() {
    let Some(tools) = tools() else { return };
    let service = Service::start(&tools.binary).await;
    let proxy = proxy::Proxy::start(service.port).await;
    let work = tempfile::tempdir().unwrap();
    let talent = service.talent("demo-talent").await;
    let before = service.remaining(&talent, HOSPITAL_BENEFIT).await.unwrap();
    let video = service.qr_video(&tools, &talent, work.path()).await;
    let b = browser(&tools, Some(&video)).await;
    let s = &b.session;

    s.goto(&format!("http://127.0.0.1:{}/scan/", proxy.port)).await;
    sign_in(s, STAFF).await;
    s.wait("#visit", WAIT).await;
    // The next two answers to a redemption are lost after the service committed it
    // (chromium itself may resend once on a new connection; the page retries the rest).
    proxy.drops.store(2, std::sync::atomic::Ordering::SeqCst);
    s.click(&format!("#benefits button[aria-label$='{HOSPITAL_BENEFIT}']")).await;
    s.wait(".retrying", WAIT).await;
    let shown = s.wait(".redeemed", Duration::from_secs(30)).await;
    drop(shown);
    let redemption = s.script("return document.querySelector('.redeemed').dataset.redemption", json!([])).await;

    let keys = proxy.keys.lock().unwrap().clone();
    assert!(keys.len() >= 3, "the request was sent again after each drop: {keys:?}");
    assert!(keys.iter().all(|k| k == &keys[0]), "every retry carried the same Idempotency-Key: {keys:?}");
    assert_eq!(service.remaining(&talent, HOSPITAL_BENEFIT).await.unwrap(), before - 1, "exactly one use was taken");
    let staff = service.login(STAFF).await;
    let (_, list) = service.call(reqwest::Method::GET, "/merchant/redemptions?limit=100", Some(&staff), None).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["id"], redemption, "the page got the committed redemption back");
    b.session.quit().await;
}

/// A valid ID number (GB 11643 check digit) for the `n`-th test person.
fn id_number(n: u32) -> String {
    let body = format!("41130219900101{:03}", n % 1000);
    format!("{body}{}", zhuge_card::cards::number::mod11_2(&body).unwrap())
}

/// Fills and submits the open dialog's fields by name.
async fn fill_dialog(s: &Session, fields: &[(&str, &str)]) {
    s.wait("dialog[open]", WAIT).await;
    for (name, value) in fields {
        let css = format!("dialog[open] [name={name}]");
        let tag =
            s.script("const e = document.querySelector(arguments[0]); return e.type === 'date' ? 'DATE' : e.tagName", json!([css])).await;
        if tag == "SELECT" || tag == "DATE" {
            s.script(
                "const e = document.querySelector(arguments[0]); e.value = arguments[1]; e.dispatchEvent(new Event('change'));",
                json!([css, value]),
            )
            .await;
        } else {
            s.type_into(&css, value).await;
        }
    }
    s.click("dialog[open] button[type=submit]").await;
    let deadline = Instant::now() + WAIT;
    while s.try_find("dialog[open]").await.is_some() {
        assert!(Instant::now() < deadline, "the dialog did not close");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_hash(s: &Session, prefix: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let hash = s.script("return location.hash", json!([])).await.as_str().unwrap_or_default().to_owned();
        if hash.starts_with(prefix) && hash.len() > prefix.len() {
            return hash[prefix.len()..].to_owned();
        }
        assert!(Instant::now() < deadline, "never reached {prefix}…: {hash}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "run by .ci/browser.sh (chromium, chromedriver, ffmpeg and the release binary)"]
async fn console_end_to_end_partner_benefit_staff_approval_suspension_and_the_scanner_refuses() {
    let Some(tools) = tools() else { return };
    let service = Service::start(&tools.binary).await;
    let work = tempfile::tempdir().unwrap();
    let b = browser(&tools, None).await;
    let s = &b.session;
    s.goto(&format!("{}/console/", service.base)).await;
    sign_in(s, ADMIN).await;
    s.wait("#nav-partners", WAIT).await;

    // A partner, a benefit and a staff account, through the console.
    s.goto(&format!("{}/console/#/partners", service.base)).await;
    s.click("#partner-new").await;
    fill_dialog(
        s,
        &[
            ("name", "南阳市第二人民医院"),
            ("category", "hospital"),
            ("district", "宛城区"),
            ("address", "宛城区中州路 66 号"),
            ("phone", "0377-63000000"),
        ],
    )
    .await;
    let partner = wait_hash(s, "#/partners/").await;
    s.click("#benefit-new").await;
    fill_dialog(s, &[("title", "专家门诊优先"), ("quota", "4"), ("period", "month"), ("valid_until", "2030-12-31")]).await;
    s.wait("#benefits tbody tr", WAIT).await;
    assert!(s.text("#benefits").await.contains("专家门诊优先"));
    s.click("#benefit-new").await;
    fill_dialog(s, &[("title", "体检八折"), ("quota", "1"), ("period", "year")]).await;
    s.wait("#benefits button[aria-label='停用 体检八折']", WAIT).await;
    // Deactivating (the API's DELETE) asks first.
    s.click("#benefits button[aria-label='停用 体检八折']").await;
    fill_dialog(s, &[]).await;
    s.wait("#benefits tr:nth-child(2) .badge.bad", WAIT).await;
    s.click("#staff-new").await;
    fill_dialog(s, &[("username", "second.nurse"), ("password", "Initial-pass-2026")]).await;
    s.wait("#staff tbody tr", WAIT).await;
    assert!(s.text("#staff").await.contains("second.nurse"));
    let admin = service.login(ADMIN).await;
    let (_, benefits) = service.call(reqwest::Method::GET, &format!("/admin/partners/{partner}/benefits"), Some(&admin), None).await;
    let benefit = |title: &str| benefits["items"].as_array().unwrap().iter().find(|b| b["title"] == title).unwrap().clone();
    let first = benefit("专家门诊优先");
    assert_eq!(first["period"], "month", "{benefits}");
    assert_eq!(first["quota"], 4);
    // The form's checkbox groups arrive as lists: every tier (checked by default), no category.
    assert_eq!(first["tiers"], json!(["A", "B", "C", "D", "E"]), "{benefits}");
    assert_eq!(first["categories"], json!([]), "{benefits}");
    // Valid from today's Beijing midnight through the last day named, inclusive.
    assert!(first["valid_from"].as_str().unwrap().ends_with("T16:00:00Z"), "{first}");
    assert_eq!(first["valid_until"], "2030-12-31T16:00:00Z", "{first}");
    assert_eq!((first["status"].as_str(), benefit("体检八折")["status"].as_str()), (Some("active"), Some("inactive")));

    // The staff member's password is reset from the console; the page shows it once.
    s.click("#staff button[data-reset='second.nurse']").await;
    fill_dialog(s, &[]).await;
    s.wait("#onetime-password", WAIT).await;
    let nurse_pw = s.text("#onetime-password").await;
    assert!(nurse_pw.len() >= 10, "{nurse_pw}");
    let (status, _) = service
        .call(
            reqwest::Method::POST,
            "/auth/password/login",
            None,
            Some(json!({"username": "second.nurse", "password": "Initial-pass-2026"})),
        )
        .await;
    assert_eq!(status, 401, "the old password no longer signs in");

    // A talent applies (the mini-program's part, through the API) with a document.
    let talent = service.talent("browser-talent").await;
    let demo = service.talent("demo-talent").await;
    let png = reqwest::Client::new().get(service.url("/me/card/qr.png")).bearer_auth(&demo).send().await.unwrap().bytes().await.unwrap();
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(png.to_vec()).file_name("degree.png").mime_str("image/png").unwrap());
    let doc: Value = reqwest::Client::new()
        .post(service.url("/me/documents"))
        .bearer_auth(&talent)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body = json!({"real_name": "司马文静", "id_number": id_number(77), "employer": "南阳师范学院", "category": "social",
        "claimed_tier": "C", "education": "硕士研究生", "title": "主治医师", "document_ids": [doc["id"]]});
    let (status, application) = service.call(reqwest::Method::POST, "/me/applications", Some(&talent), Some(body)).await;
    assert_eq!(status, 201, "{application}");

    // The reviewer's queue: documents inline, an audited reveal, approval.
    s.goto(&format!("{}/console/#/applications", service.base)).await;
    s.click(&format!("#applications a[href='#/applications/{}']", application["id"].as_str().unwrap())).await;
    s.wait(".doc img", WAIT).await;
    let loaded = s.script("return document.querySelector('.doc img').naturalWidth > 0", json!([])).await;
    assert_eq!(loaded, true, "the document shows inline");
    assert!(s.text("#app-name").await.contains('*'));
    s.click("#reveal").await;
    let deadline = Instant::now() + WAIT;
    while s.text("#app-name").await != "司马文静" {
        assert!(Instant::now() < deadline, "the reveal did not show the name");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, log) = service.call(reqwest::Method::GET, "/admin/audit-log?limit=100", Some(&admin), None).await;
    let revealed =
        log["items"].as_array().unwrap().iter().any(|e| e["action"] == "application.pii_view" && e["target_id"] == application["id"]);
    assert!(revealed, "the reveal is in the audit log");
    // The reviewer grants another tier than the one claimed (C): the card must carry it.
    s.script("const e = document.querySelector('#approve [name=tier]'); e.value = 'B';", json!([])).await;
    s.click("#approve button[type=submit]").await;
    // Approved: the console goes back to the queue.
    let deadline = Instant::now() + WAIT;
    while s.script("return location.hash", json!([])).await != "#/applications" {
        assert!(Instant::now() < deadline, "the console did not return to the queue");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + WAIT;
    let card = loop {
        let (status, card) = service.call(reqwest::Method::GET, "/me/card", Some(&talent), None).await;
        if status == 200 {
            break card;
        }
        assert!(Instant::now() < deadline, "no card after approval: {card}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(card["status"], "active");
    assert_eq!(card["tier"], "B");

    // The talent's QR as it is now; then the reviewer suspends the card.
    let video = service.qr_video(&tools, &talent, work.path()).await;
    s.goto(&format!("{}/console/#/cards", service.base)).await;
    s.type_into("#card-q", card["card_no"].as_str().unwrap()).await;
    s.click("form.search button[type=submit]").await;
    s.click(&format!("#cards a[href='#/cards/{}']", card["id"].as_str().unwrap())).await;
    // The audited reveal of the holder's name, ID number and (bound) phone.
    let (status, _) =
        service.call(reqwest::Method::POST, "/auth/wechat/phone", Some(&talent), Some(json!({"code": "phone.13812345678"}))).await;
    assert_eq!(status, 200);
    s.click("#card-reveal").await;
    s.wait("#card-name", WAIT).await;
    assert_eq!(
        (s.text("#card-name").await, s.text("#card-idno").await, s.text("#card-phone").await),
        ("司马文静".to_owned(), id_number(77), "13812345678".to_owned())
    );
    assert!(s.try_find("#card-reveal").await.is_none(), "one reveal per visit");
    s.click("#card-suspend").await;
    fill_dialog(s, &[("reason", "证明材料待核实")]).await;
    s.wait("#card-status[data-status=suspended]", WAIT).await;
    assert!(s.text("ol.timeline").await.contains("证明材料待核实"));
    assert_clean_console(s, &[]).await;

    // A new reviewer, made an operator by the super admin.
    s.goto(&format!("{}/console/#/users", service.base)).await;
    s.click("#user-new").await;
    fill_dialog(s, &[("username", "city.wang"), ("password", "Initial-pass-2026"), ("role", "reviewer")]).await;
    s.wait("#users button[data-role='city.wang']", WAIT).await;
    s.click("#users button[data-role='city.wang']").await;
    fill_dialog(s, &[("role", "operator")]).await;
    s.wait("#content .alert.ok", WAIT).await;
    assert!(s.text("#users").await.contains("运营管理员"), "{}", s.text("#users").await);
    let (_, users) = service.call(reqwest::Method::GET, "/admin/users?limit=100", Some(&admin), None).await;
    let wang = users["items"].as_array().unwrap().iter().find(|u| u["username"] == "city.wang").unwrap().clone();
    assert_eq!(wang["role"], "operator", "{wang}");

    // The audit log filtered by action: the filter lives in the address, and a reload keeps it.
    s.goto(&format!("{}/console/#/audit", service.base)).await;
    s.wait("#audit tbody tr", WAIT).await;
    s.type_into("#audit-action", "card.pii_view").await;
    s.click("#audit-filters button[type=submit]").await;
    let deadline = Instant::now() + WAIT;
    while s.script("return location.hash", json!([])).await != "#/audit?action=card.pii_view" {
        assert!(Instant::now() < deadline, "the filter did not go into the address");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let filtered = || async {
        s.script("return [...document.querySelectorAll('#audit tbody tr td:nth-child(4)')].map((td) => td.textContent)", json!([])).await
    };
    let deadline = Instant::now() + WAIT;
    while filtered().await != json!(["card.pii_view"]) {
        assert!(Instant::now() < deadline, "the filtered log shows {}", filtered().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.script("location.reload()", json!([])).await;
    s.wait("#audit tbody tr", WAIT).await;
    assert_eq!(s.script("return document.querySelector('#audit-action').value", json!([])).await, "card.pii_view");
    assert_eq!(filtered().await, json!(["card.pii_view"]));
    let (_, log) = service.call(reqwest::Method::GET, "/admin/audit-log?action=card.pii_view", Some(&admin), None).await;
    assert_eq!(log["items"][0]["target_id"], card["id"], "the reveal is audited: {log}");
    assert_clean_console(s, &[]).await;

    // The new staff member signs in to the scanner, changes the initial password (a
    // page, not an error), and the camera shows the suspended card: refused on screen.
    let scanner = browser(&tools, Some(&video)).await;
    let sc = &scanner.session;
    sc.goto(&format!("{}/scan/", service.base)).await;
    sign_in(sc, ("second.nurse", nurse_pw.as_str())).await;
    sc.type_into("#change-password [name=current]", &nurse_pw).await;
    sc.type_into("#change-password [name=new]", "Second-nurse-2026!").await;
    sc.type_into("#change-password [name=repeat]", "Second-nurse-2026!").await;
    sc.click("#change-password button[type=submit]").await;
    sc.wait("#refused", WAIT).await;
    let code = sc.script("return document.querySelector('#refused').dataset.code", json!([])).await;
    assert_eq!(code, "card_suspended", "{}", sc.text("#refused").await);
    assert_clean_console(sc, &["/api/v1/merchant/verify - Failed to load resource: the server responded with a status of 409"]).await;
    scanner.session.quit().await;
    b.session.quit().await;
}

/// Every visible control has an accessible name and is reachable with Tab.
const CONTROLS: &str = r#"
// With a modal dialog open, the page behind it is inert: only the dialog's controls count.
const scope = document.querySelector('dialog[open]') || document;
const els = [...scope.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')]
  .filter((e) => e.getClientRects().length > 0 && !e.disabled && !e.closest('[hidden]'));
const name = (e) => (e.getAttribute('aria-label') || '').trim()
  || (e.labels ? [...e.labels].map((l) => l.textContent).join('').trim() : '')
  || (['BUTTON', 'A'].includes(e.tagName) ? e.textContent.trim() : '') || (e.getAttribute('title') || '').trim();
els.forEach((e, i) => { e.dataset.kb = String(i); });
return { count: els.length,
  unlabelled: els.filter((e) => !name(e)).map((e) => e.outerHTML.slice(0, 160)),
  untabbable: els.filter((e) => e.tabIndex < 0).map((e) => e.outerHTML.slice(0, 160)) };
"#;

async fn check_page(s: &Session, name: &str, keyboard: bool) {
    let v = s.script(CONTROLS, json!([])).await;
    assert_eq!(v["unlabelled"], json!([]), "{name}: controls without a label");
    assert_eq!(v["untabbable"], json!([]), "{name}: controls out of the tab order");
    if keyboard {
        let count = v["count"].as_u64().unwrap();
        s.script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);", json!([])).await;
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..count + 8 {
            s.press("\u{E004}").await;
            if let Some(k) = s.script("return document.activeElement && document.activeElement.dataset.kb", json!([])).await.as_str() {
                seen.insert(k.parse::<u64>().unwrap());
            }
        }
        let missed: Vec<u64> = (0..count).filter(|i| !seen.contains(i)).collect();
        assert!(missed.is_empty(), "{name}: Tab never reaches controls {missed:?}");
    }
}

/// Screenshots at phone and desktop sizes, labels, keyboard and a clean console.
async fn shoot(s: &Session, name: &str, ready: &str) {
    let dir = screenshot_dir();
    for (w, h, mobile) in [(390, 844, true), (1440, 900, false)] {
        s.viewport(w, h, mobile).await;
        s.wait(ready, WAIT).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.screenshot(&dir.join(format!("{name}-{w}x{h}.png"))).await;
        check_page(s, &format!("{name} at {w}x{h}"), !mobile).await;
    }
    assert_clean_console(s, &[]).await;
}

async fn goto_ready(s: &Session, url: &str, ready: &str) {
    s.goto(url).await;
    s.wait(ready, WAIT).await;
}

#[tokio::test]
#[ignore = "run by .ci/browser.sh (chromium, chromedriver, ffmpeg and the release binary)"]
async fn every_page_at_phone_and_desktop_size_labelled_keyboard_reachable_and_error_free() {
    let Some(tools) = tools() else { return };
    let service = Service::start(&tools.binary).await;
    let work = tempfile::tempdir().unwrap();
    let talent = service.talent("demo-talent").await;
    let video = service.qr_video(&tools, &talent, work.path()).await;
    let b = browser(&tools, Some(&video)).await;
    let s = &b.session;

    // The scanner, as staff: sign-in, a scanned card, a redemption, today's list.
    s.goto(&format!("{}/scan/", service.base)).await;
    s.script("localStorage.clear()", json!([])).await;
    shoot(s, "scan-signin", "#signin").await;
    sign_in(s, STAFF).await;
    s.wait("#visit", WAIT).await;
    shoot(s, "scan-visit", "#visit").await;
    s.click(&format!("#benefits button[aria-label$='{HOSPITAL_BENEFIT}']")).await;
    s.wait(".redeemed", WAIT).await;
    shoot(s, "scan-redeemed", ".redeemed").await;
    s.click("#tab-today").await;
    shoot(s, "scan-today", "#today").await;
    // Voiding today's redemption, with a reason.
    s.click("#today button").await;
    fill_dialog(s, &[("reason", "误操作，患者未就诊")]).await;
    s.wait("#today .badge.bad", WAIT).await;
    assert!(s.text("#today").await.contains("误操作"));
    assert_eq!(service.remaining(&talent, HOSPITAL_BENEFIT).await.unwrap(), 6, "the void gave the use back");
    s.click("#signout").await;
    s.wait("#signin", WAIT).await;

    // As the manager: staff and statistics; and the English switch.
    sign_in(s, ("demo.manager", "Demo-manager-2026")).await;
    s.click("#tab-staff").await;
    shoot(s, "scan-staff", "#staff-h").await;
    // The manager resets a staff member's password; the new one is shown once.
    s.click("#staff button[data-reset='demo.staff']").await;
    shoot(s, "scan-staff-reset-dialog", "dialog[open]").await;
    s.click("dialog[open] button[type=submit]").await;
    s.wait("#onetime-password", WAIT).await;
    shoot(s, "scan-staff-reset", "#onetime-password").await;
    let staff_pw = s.text("#onetime-password").await;
    let (status, login) =
        service.call(reqwest::Method::POST, "/auth/password/login", None, Some(json!({"username": STAFF.0, "password": staff_pw}))).await;
    assert_eq!(status, 200, "{login}");
    let (_, me) = service.call(reqwest::Method::GET, "/me", login["access_token"].as_str(), None).await;
    assert_eq!(me["must_change_password"], true, "{me}");
    s.click("#tab-stats").await;
    shoot(s, "scan-stats", "#stats-h").await;
    s.click("#lang").await;
    assert_eq!(s.text("#tab-stats").await, "Stats");
    shoot(s, "scan-stats-en", "#stats-h").await;
    s.click("#lang").await;
    s.click("#signout").await;

    // The console, as the super admin: every page.
    let base = format!("{}/console/", service.base);
    goto_ready(s, &base, "#signin").await;
    shoot(s, "console-signin", "#signin").await;
    sign_in(s, ADMIN).await;
    s.wait(".tiles .tile", WAIT).await;
    shoot(s, "console-dashboard", ".chart canvas").await;
    let admin = service.login(ADMIN).await;
    let (_, apps) = service.call(reqwest::Method::GET, "/admin/applications?status=approved", Some(&admin), None).await;
    let (_, cards) = service.call(reqwest::Method::GET, "/admin/cards", Some(&admin), None).await;
    let (_, partners) = service.call(reqwest::Method::GET, "/admin/partners", Some(&admin), None).await;
    let pages = [
        ("console-applications", "#/applications".to_owned(), "#app-status"),
        ("console-application", format!("#/applications/{}", apps["items"][0]["id"].as_str().unwrap()), "#reveal"),
        ("console-cards", "#/cards".to_owned(), "#cards"),
        ("console-card", format!("#/cards/{}", cards["items"][0]["id"].as_str().unwrap()), "ol.timeline"),
        ("console-partners", "#/partners".to_owned(), "#partners"),
        ("console-partner", format!("#/partners/{}", partners["items"][0]["id"].as_str().unwrap()), "#benefits"),
        ("console-stats", "#/stats".to_owned(), "#csv:not(.hidden)"),
        ("console-audit", "#/audit".to_owned(), "#audit tbody tr"),
        ("console-users", "#/users".to_owned(), "#users"),
        ("console-keys", "#/keys".to_owned(), "#keys-rotate"),
    ];
    for (name, hash, ready) in pages {
        goto_ready(s, &format!("{base}{hash}"), ready).await;
        shoot(s, name, ready).await;
    }
    goto_ready(s, &format!("{base}#/audit"), "#audit-verify").await;
    s.click("#audit-verify").await;
    s.wait(".alert.ok", WAIT).await;

    // What the new controls look like: a filtered audit log, a revealed card, the role and
    // password dialogs, a one-time password, the benefit form with its validity dates.
    goto_ready(s, &format!("{base}#/audit?source=redemptions"), "#audit tbody tr").await;
    shoot(s, "console-audit-filtered", "#audit-partner_id").await;
    goto_ready(s, &format!("{base}#/cards/{}", cards["items"][0]["id"].as_str().unwrap()), "#card-reveal").await;
    s.click("#card-reveal").await;
    shoot(s, "console-card-pii", "#card-name").await;
    goto_ready(s, &format!("{base}#/users"), "#users button[data-role]").await;
    s.click("#users button[data-role]").await;
    shoot(s, "console-users-role", "dialog[open]").await;
    s.click("dialog[open] button[value=cancel]").await;
    s.click("#users button[data-reset]").await;
    s.click("dialog[open] button[type=submit]").await;
    shoot(s, "console-users-reset", "#onetime-password").await;
    goto_ready(s, &format!("{base}#/partners/{}", partners["items"][0]["id"].as_str().unwrap()), "#benefits button").await;
    s.click("#benefits button").await;
    shoot(s, "console-benefit-edit", "dialog[open] [name=valid_until]").await;
    s.click("dialog[open] button[value=cancel]").await;
    s.click("#partner-deactivate").await;
    shoot(s, "console-partner-deactivate", "dialog[open]").await;
    s.click("dialog[open] button[value=cancel]").await;
    b.session.quit().await;
}

#[tokio::test]
#[ignore = "run by .ci/browser.sh (chromium, chromedriver, ffmpeg and the release binary)"]
async fn an_ended_session_signs_in_again_over_the_page_and_keeps_what_was_typed() {
    let Some(tools) = tools() else { return };
    let service = Service::start(&tools.binary).await;
    let b = browser(&tools, None).await;
    let s = &b.session;
    s.goto(&format!("{}/console/#/cards", service.base)).await;
    sign_in(s, ADMIN).await;
    s.wait("#cards tbody tr", WAIT).await;
    // A search that finds nothing first, so that a result later proves the next one ran.
    s.type_into("#card-q", "无此人").await;
    s.click("form.search button[type=submit]").await;
    s.wait("p.empty", WAIT).await;
    s.type_into("#card-q", "诸葛明").await;
    // The session ends behind the page's back: its refresh token is presented twice
    // (theft detection revokes the whole session).
    let refresh = s.script("return sessionStorage.getItem('zhuge.console.refresh')", json!([])).await;
    for _ in 0..2 {
        service.call(reqwest::Method::POST, "/auth/refresh", None, Some(json!({"refresh_token": refresh}))).await;
    }
    s.click("form.search button[type=submit]").await;
    s.wait("dialog[open] #signin", WAIT).await;
    sign_in(s, ADMIN).await;
    s.wait("#cards tbody tr", WAIT).await;
    let typed = s.script("return document.querySelector('#card-q').value", json!([])).await;
    assert_eq!(typed, "诸葛明", "what was typed is still there");
    assert!(s.text("#cards").await.contains("诸*明"), "the search ran after signing in again");
    let local = s.script("return JSON.stringify(Object.assign({}, localStorage))", json!([])).await;
    // Neither token: access tokens are JWTs (`ey…`), refresh tokens start `zrt_`.
    let local = local.as_str().unwrap();
    assert!(!local.contains("ey") && !local.contains("zrt_"), "no token in localStorage: {local}");
    b.session.quit().await;
}
