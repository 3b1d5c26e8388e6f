//! The `rapport-relay` binary: set up, run and inspect a practice's relay.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use rapport_relay::config::FileConfig;
use rapport_relay::data::{DataDir, default_public_addr};
use rapport_relay::server::{Config, Relay};

/// The blind relay of a Rapport practice: stores and forwards encrypted blobs it cannot read.
#[derive(Parser)]
#[command(name = "rapport-relay", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates the relay's identity and database and prints a one-time setup code.
    ///
    /// Example: rapport-relay init --data /var/lib/rapport-relay --public-addr relay.example.org:4433
    Init {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// The address devices dial (default: this host's name, port 4433).
        #[arg(long)]
        public_addr: Option<String>,
    },
    /// Prints another one-time setup code (one practice registers with each).
    ///
    /// Example: rapport-relay setup-code --data /var/lib/rapport-relay
    SetupCode {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// Changes the address devices dial.
        #[arg(long)]
        public_addr: Option<String>,
    },
    /// Serves until SIGINT or SIGTERM, then shuts down gracefully.
    ///
    /// Example: rapport-relay serve --data /var/lib/rapport-relay --listen 0.0.0.0:4433
    Serve {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// Where to listen (default 0.0.0.0:4433, or the config file's).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// A TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Log format: human or json.
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Prints spaces, devices, log entries and stored bytes.
    ///
    /// Example: rapport-relay stats --data /var/lib/rapport-relay
    Stats {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
    },
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Init { data, public_addr } => {
            let addr = public_addr.unwrap_or_else(|| default_public_addr(4433));
            let dir = DataDir::init(&data, &addr)?;
            let store = dir.store()?;
            let code = dir.new_setup_code(&store)?;
            store.close();
            println!(
                "Relay created in {}. Devices will dial {addr}.",
                data.display()
            );
            println!(
                "Give this one-time setup code to the practice owner (rapport relay connect CODE):\n"
            );
            println!("{}", code.encode());
        }
        Command::SetupCode { data, public_addr } => {
            let dir = DataDir::open(&data)?;
            if let Some(addr) = public_addr {
                dir.set_public_addr(&addr)?;
            }
            let store = dir.store()?;
            let code = dir.new_setup_code(&store)?;
            store.close();
            println!("{}", code.encode());
        }
        Command::Serve {
            data,
            listen,
            config,
            log_format,
        } => {
            let file = match &config {
                Some(path) => FileConfig::load(path).map_err(anyhow::Error::msg)?,
                None => FileConfig::default(),
            };
            init_logging(
                log_format
                    .as_deref()
                    .or(file.log_format.as_deref())
                    .unwrap_or("human"),
            );
            let mut config = file.apply(Config::default());
            if let Some(listen) = listen {
                config.listen = listen;
            }
            let dir = DataDir::open(&data)?;
            let store = dir.store()?;
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(async move {
                let relay = Relay::bind(store, &dir.identity, config)?;
                tracing::info!(addr = ?relay.local_addr().ok(), "listening");
                relay.run(shutdown_signal()).await;
                anyhow::Ok(())
            })?;
        }
        Command::Stats { data } => {
            let dir = DataDir::open(&data)?;
            let store = dir.store()?;
            let (spaces, devices, entries, bytes) =
                store.stats().map_err(|r| anyhow::anyhow!(r.message))?;
            store.close();
            println!("spaces  {spaces}\ndevices {devices}\nentries {entries}\nbytes   {bytes}");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
