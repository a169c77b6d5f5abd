//! A `redis-server` of a test's own, on a free port, so that a test can stop and restart
//! Redis without disturbing the shared one that parallel tests use.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

/// Whether this machine can run the tests that need their own Redis. CI must: there a
/// missing `redis-server` fails the test instead of skipping it.
pub fn available() -> bool {
    let runs = |program: &str| Command::new(program).arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    // redis-cli makes the clusters (`--cluster create`).
    let found = runs("redis-server") && runs("redis-cli");
    if !found && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("redis-server is required when CI=true");
    }
    if !found {
        eprintln!("SKIPPED: redis-server or redis-cli is not installed; this Redis test did not run");
    }
    found
}

impl RedisServer {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = Self { port, child: None };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP: the process hangs (connections stay open, nothing answers), as a Redis
    /// stuck on a slow disk or a paused VM does.
    pub fn pause(&self) {
        signal(self.child.as_ref().expect("running").id(), "STOP");
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self) {
        signal(self.child.as_ref().expect("running").id(), "CONT");
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.kill());
            drop(child.wait());
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// Two ports free a moment ago: `p` and its cluster bus port `p + 10000`.
fn free_cluster_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port > 55_000 {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A real Redis Cluster of three masters (no replicas) on free loopback ports, made with
/// `redis-server --cluster-enabled yes` and `redis-cli --cluster create`; stopped when
/// dropped. Each node keeps its `nodes.conf` in a temporary directory, so a node that is
/// killed and restarted rejoins with its slots (and no data: nothing is persisted).
pub struct RedisCluster {
    pub nodes: Vec<ClusterNode>,
    dir: tempfile::TempDir,
}

pub struct ClusterNode {
    pub port: u16,
    child: Option<Child>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Self { nodes: (0..3).map(|_| ClusterNode { port: free_cluster_port(), child: None }).collect(), dir };
        for i in 0..3 {
            cluster.restart(i);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create.args(["--cluster-replicas", "0", "--cluster-yes"]).output().expect("redis-cli --cluster create");
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        cluster.wait_ok();
        cluster
    }

    /// The comma-separated seed URLs, as `REDIS_URL` takes them.
    pub fn url(&self) -> String {
        self.nodes.iter().map(|n| format!("redis://127.0.0.1:{}", n.port)).collect::<Vec<_>>().join(",")
    }

    pub fn restart(&mut self, i: usize) {
        let port = self.nodes[i].port;
        assert!(self.nodes[i].child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.nodes[i].child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL of one node.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            drop(child.kill());
            drop(child.wait());
        }
    }

    pub fn pause(&self, i: usize) {
        signal(self.nodes[i].child.as_ref().expect("running").id(), "STOP");
    }

    pub fn resume(&self, i: usize) {
        signal(self.nodes[i].child.as_ref().expect("running").id(), "CONT");
    }

    /// `redis-cli` against one node.
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        let out = Command::new("redis-cli").args(["-p", &self.nodes[i].port.to_string()]).args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// FLUSHALL on every node.
    pub fn flush_all(&self) {
        for i in 0..self.nodes.len() {
            assert!(self.cli(i, &["FLUSHALL"]).contains("OK"), "FLUSHALL on node {i}");
        }
    }

    /// Waits until every node says `cluster_state:ok`.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(0..self.nodes.len()).all(|i| self.cli(i, &["CLUSTER", "INFO"]).contains("cluster_state:ok")) {
            assert!(Instant::now() < deadline, "the cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if let Some(child) = &self.nodes[i].child {
                // A paused node would not die of SIGKILL until continued on some kernels.
                drop(Command::new("kill").arg("-CONT").arg(child.id().to_string()).status());
            }
            self.kill(i);
        }
    }
}
