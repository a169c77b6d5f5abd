//! The real `zhuge-card` binary, started the way an operator starts it: configured only by
//! environment variables, none inherited from the test's own environment.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `zhuge-card` with every variable the service reads removed from the environment.
pub fn command() -> Command {
    super::init_process();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zhuge-card"));
    for (key, _) in std::env::vars() {
        if key.starts_with("ZHUGE_") || key == "DATABASE_URL" || key == "REDIS_URL" || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `zhuge-card serve` running in the background; killed when dropped.
pub struct Service {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Service {
    /// Starts `serve` with exactly `env` (plus nothing inherited), listening on `port`
    /// through `ZHUGE_LISTEN`; stdout and stderr go to `log`.
    pub fn start(env: &[(&str, String)], port: u16, log: &Path) -> Self {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut cmd = command();
        cmd.env("ZHUGE_LISTEN", format!("127.0.0.1:{port}"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.arg("serve").stdout(Stdio::from(out.try_clone().unwrap())).stderr(Stdio::from(out)).spawn().unwrap();
        Self { child, base: format!("http://127.0.0.1:{port}"), log: log.to_path_buf() }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200, or fails with the service's log.
    pub async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !client.get(format!("{}/readyz", self.base)).send().await.is_ok_and(|r| r.status() == 200) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the service exited ({status}):\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "the service did not start:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a signal by name (`TERM`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the service did not exit:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        drop(self.child.kill());
        drop(self.child.wait());
    }
}
