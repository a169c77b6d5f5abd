use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use zhuge_card::audit::Actor;
use zhuge_card::auth::Role;
use zhuge_card::clock::Clock;
use zhuge_card::config::Settings;
use zhuge_card::error::{ApiError, Lang};
use zhuge_card::startup::{self, Application};
use zhuge_card::state::AppState;
use zhuge_card::{accounts, db, telemetry};

/// An API error as one line for the terminal.
fn describe(e: &ApiError) -> String {
    let fields: Vec<String> = e.field_errors().iter().map(|f| format!("{}: {}", f.field, f.message.get(Lang::En))).collect();
    if fields.is_empty() { e.code().as_str().to_owned() } else { format!("{}: {}", e.code().as_str(), fields.join("; ")) }
}

/// 诸葛英才卡 backend: talent cards, partner benefits, QR verification and redemption.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (also `ZHUGE_CONFIG`); the environment overrides it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default): applies migrations, then listens.
    Serve {
        /// Address to listen on (overrides ZHUGE_LISTEN; default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Directory for the SQLite database and uploads (overrides ZHUGE_DATA_DIR).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Seed demo data and play WeChat's servers locally (refused in production).
        #[arg(long)]
        demo: bool,
    },
    /// Seed the demo data (partners, benefits, accounts, a talent with a card) and exit.
    SeedDemo,
    /// Create a new QR signing key; the old one keeps verifying until its tokens expire.
    RotateKeys,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create an admin account (reads the password from standard input).
    CreateAdmin {
        #[arg(long)]
        username: String,
        /// Read the password from standard input (the only way: never on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[arg(long, value_parser = ["super_admin", "reviewer", "operator"])]
        role: String,
    },
    /// Show the effective settings, where each came from (default, file, environment) and
    /// whether the production profile accepts them; secrets are redacted. Exits 1 when the
    /// profile would refuse to start.
    Config {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-encrypt all personal data, documents and signing keys under ZHUGE_MASTER_KEY and
    /// recompute blind indexes, in batches, while instances serve. Run it after every
    /// instance has been restarted with the new key and the old one in
    /// ZHUGE_MASTER_KEYS_PREVIOUS; it can be stopped and run again at any time.
    RotateMasterKey {
        /// Rows per transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch_size: u64,
        /// Stop after this many batches (spread the work over several runs).
        #[arg(long)]
        max_batches: Option<u64>,
    },
    /// Write the OpenAPI document (default: openapi/openapi.json; `-` for stdout).
    Openapi {
        #[arg(long, short, default_value = "openapi/openapi.json", value_name = "FILE")]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    // One TLS crypto provider for the whole process (sqlx and reqwest both use rustls).
    drop(rustls::crypto::ring::default_provider().install_default());
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zhuge-card: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "exiting");
            eprintln!("zhuge-card: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve { listen: None, data_dir: None, demo: false });
    if let Command::Openapi { output } = &command {
        let json = startup::openapi_json();
        if output.as_os_str() == "-" {
            print!("{json}");
        } else {
            std::fs::write(output, json)?;
            eprintln!("wrote {}", output.display());
        }
        return Ok(());
    }

    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Command::Config { json } = command {
        return show_config(&settings, json);
    }
    telemetry::init(settings.log_format());
    for unknown in &settings.unknown {
        tracing::warn!(setting = %unknown, "unknown setting: it names nothing and is ignored (the production profile refuses it)");
    }
    match command {
        Command::Serve { listen, data_dir, demo } => {
            if let Some(listen) = listen {
                settings.listen = listen;
            }
            if let Some(dir) = data_dir {
                settings.data_dir = dir;
            }
            if demo {
                settings.demo = true;
                let mut local = settings.listen;
                if local.ip().is_unspecified() {
                    local.set_ip([127, 0, 0, 1].into());
                }
                settings.wechat.base_url = format!("http://{local}/_wechat");
                settings.wechat.appid = zhuge_card::demo::APPID.into();
                settings.wechat.secret = Some(zhuge_card::demo::SECRET.into());
            }
            let app = Application::build(settings).await?;
            zhuge_card::applications::documents::import_legacy(app.state()).await.map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
            if demo {
                zhuge_card::demo::seed(app.state()).await?;
                let s = &app.state().settings;
                println!("{}", zhuge_card::demo::banner(&format!("http://{}:{}", s.listen.ip(), app.port())));
            }
            let s = &app.state().settings;
            tracing::info!(
                listen = %s.listen,
                port = app.port(),
                profile = ?s.profile,
                "serving; API docs at http://{}:{}/docs",
                s.listen.ip(),
                app.port()
            );
            app.run_until_stopped().await?;
            tracing::info!("stopped");
        }
        Command::Migrate => {
            settings.check_profile()?;
            let state = AppState::build(settings, Clock::system()).await?;
            tracing::info!(database = db::backend_name(&state.db), "migrations applied");
            let (imported, missing) =
                zhuge_card::applications::documents::import_legacy(&state).await.map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
            if imported > 0 || missing > 0 {
                println!("documents moved into the database: {imported}; not on this instance's disk: {missing}");
            }
        }
        Command::RotateMasterKey { batch_size, max_batches } => {
            settings.check_profile()?;
            let state = AppState::build(settings, Clock::system()).await?;
            rotate_master_key(&state, batch_size, max_batches).await?;
        }
        Command::CreateAdmin { username, password_stdin: _, role } => {
            settings.check_profile()?;
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            let role = Role::parse(&role).ok_or_else(|| anyhow::anyhow!("unknown role {role}"))?;
            let state = AppState::build(settings, Clock::system()).await?;
            match accounts::service::create_admin(&state, &Actor::cli(), &username, password, role).await {
                Ok(view) => println!("created {} {} ({})", view.role, view.username.unwrap_or_default(), view.id),
                Err(e) => anyhow::bail!("{}", describe(&e)),
            }
        }
        Command::SeedDemo => {
            settings.demo = true;
            settings.check_profile()?;
            let state = AppState::build(settings, Clock::system()).await?;
            zhuge_card::demo::seed(&state).await?;
            println!("demo data seeded");
        }
        Command::RotateKeys => {
            settings.check_profile()?;
            let state = AppState::build(settings, Clock::system()).await?;
            let kid = zhuge_card::redemption::service::rotate_keys(&state, &Actor::cli())
                .await
                .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
            println!("new signing key {kid}; the previous one stays published until its tokens expire");
        }
        Command::Openapi { .. } | Command::Config { .. } => {}
    }
    Ok(())
}

fn show_config(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let verdict = settings.check_profile();
    let shown = settings.effective();
    if json {
        let doc = serde_json::json!({
            "settings": shown,
            "unknown": settings.unknown,
            "profile_check": verdict.as_ref().map_or_else(|e| e.to_string(), |()| "ok".to_owned()),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let width = |f: fn(&zhuge_card::config::Effective) -> usize| shown.iter().map(f).max().unwrap_or(0);
        let (kw, vw, sw) = (width(|e| e.key.len()), width(|e| e.variable.len()), width(|e| e.source.len()));
        println!("{:kw$}  {:vw$}  {:sw$}  VALUE", "SETTING", "VARIABLE", "SOURCE");
        for e in &shown {
            println!("{:kw$}  {:vw$}  {:sw$}  {}", e.key, e.variable, e.source, e.value);
        }
        for unknown in &settings.unknown {
            println!("unknown (ignored; refused in production): {unknown}");
        }
        match &verdict {
            Ok(()) => println!("profile {:?}: ok", settings.profile),
            Err(e) => println!("profile {:?}: {e}", settings.profile),
        }
    }
    verdict.map_err(Into::into)
}

async fn rotate_master_key(state: &AppState, batch_size: u64, max_batches: Option<u64>) -> anyhow::Result<()> {
    use zhuge_card::crypto::rotation;
    let mut report = rotation::rotate(&state.db, &state.keyring, batch_size, max_batches).await?;
    // Rows an instance changed while they were read are rewritten by one more pass.
    for _ in 0..3 {
        if !report.complete || report.stale() == 0 {
            break;
        }
        let again = rotation::rotate(&state.db, &state.keyring, batch_size, max_batches).await?;
        for (t, a) in report.tables.iter_mut().zip(&again.tables) {
            t.rows_rewritten += a.rows_rewritten;
            t.rows_stale = a.rows_stale;
        }
        report.batches += again.batches;
    }
    for t in &report.tables {
        println!("{:14} rewritten {:>9}  still under an earlier key {:>9}", t.table, t.rows_rewritten, t.rows_stale);
    }
    let txn = db::begin_write(&state.db).await?;
    // The audit chain's hashes and the tags of ledger rows not yet anchored move to the new
    // key too, in one transaction, once nothing else is left under the old one.
    let rekeyed = if report.complete && report.stale() == 0 { zhuge_card::audit::rekey(&txn, &state.keyring, false).await? } else { 0 };
    println!("{:14} rewritten {:>9}", "audit chain", rekeyed);
    let change = zhuge_card::audit::Change {
        action: "master_key.rotate",
        target_type: "keyring",
        target_id: state.keyring.current_kid().to_owned(),
        before: None,
        after: Some(serde_json::json!({
            "rows_rewritten": report.rewritten(),
            "rows_stale": report.stale(),
            "complete": report.complete,
            "audit_entries_rekeyed": rekeyed,
        })),
    };
    zhuge_card::audit::record(&txn, &state.keyring, &Actor::cli(), change, state.clock.now()).await?;
    txn.commit().await?;
    if !report.complete {
        println!("stopped after {} batches as asked; run it again to continue", report.batches);
    } else if report.stale() == 0 {
        println!("everything is under key {}; the previous keys may now leave ZHUGE_MASTER_KEYS_PREVIOUS", state.keyring.current_kid());
    } else {
        anyhow::bail!("{} rows are still under an earlier key; run it again", report.stale());
    }
    Ok(())
}
