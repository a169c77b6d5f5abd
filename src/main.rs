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
    telemetry::init(settings.log_format());
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
            let conn = db::connect(&settings).await?;
            db::migrate(&conn).await?;
            tracing::info!(database = db::backend_name(&conn), "migrations applied");
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
        Command::Openapi { .. } => {}
    }
    Ok(())
}
