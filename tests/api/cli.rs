use crate::support::binary::command as zhuge;

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
    for verb in ["serve", "migrate", "openapi", "create-admin", "config", "rotate-master-key"] {
        let out = zhuge().args([verb, "--help"]).output().unwrap();
        assert!(out.status.success());
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn create_admin_reads_the_password_from_stdin_and_the_account_can_sign_in() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let create = |username: &str, password: &str| {
        let mut child = zhuge()
            .env("ZHUGE_DATA_DIR", dir.path())
            .args(["create-admin", "--username", username, "--password-stdin", "--role", "super_admin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = create("root.admin", "Root-password-2026");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created super_admin root.admin"));
    let out = create("root.admin", "Root-password-2026");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("username_unavailable"));
    let out = create("weak.admin", "weak");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));
    // The password never appears in what the command prints.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("weak\n"));

    let db = dir.path().join("zhuge.db");
    let url = format!("sqlite://{}?mode=rw", db.display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hash: Option<String> = rt.block_on(async {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let conn = sea_orm::Database::connect(url).await.unwrap();
        entity::user::Entity::find()
            .filter(entity::user::Column::Username.eq("root.admin"))
            .one(&conn)
            .await
            .unwrap()
            .and_then(|u| u.password_hash)
    });
    assert!(hash.unwrap().starts_with("$argon2id$"));
}
