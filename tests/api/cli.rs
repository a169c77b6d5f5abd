use std::process::Command;

fn zhuge() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zhuge-card"));
    for (key, _) in std::env::vars() {
        if key.starts_with("ZHUGE_") || key == "DATABASE_URL" || key == "REDIS_URL" {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn production_refuses_to_start_without_real_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let out = zhuge().env("ZHUGE_PROFILE", "production").env("ZHUGE_DATA_DIR", dir.path()).arg("serve").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("production profile refused: ZHUGE_MASTER_KEY is not set"), "{stderr}");
    // Nothing was created: it refused before touching storage.
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());

    let out = zhuge()
        .env("ZHUGE_PROFILE", "production")
        .env("ZHUGE_MASTER_KEY", "a-real-key-of-more-than-32-characters-long")
        .env("ZHUGE_DATA_DIR", dir.path())
        .arg("serve")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("DATABASE_URL must point at PostgreSQL"), "{stderr}");
    assert!(!stderr.contains("a-real-key"), "a secret was printed: {stderr}");
}

#[test]
fn migrate_creates_the_sqlite_database_under_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = zhuge().env("ZHUGE_DATA_DIR", dir.path().join("nested")).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("nested/zhuge.db").exists());
    // Running it again is a no-op.
    let out = zhuge().env("ZHUGE_DATA_DIR", dir.path().join("nested")).arg("migrate").output().unwrap();
    assert!(out.status.success());
}

#[test]
fn every_verb_has_help() {
    for verb in ["serve", "migrate", "openapi"] {
        let out = zhuge().args([verb, "--help"]).output().unwrap();
        assert!(out.status.success());
        assert!(!out.stdout.is_empty());
    }
}
