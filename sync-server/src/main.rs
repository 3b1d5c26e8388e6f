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
        /// How long the setup code registers a practice: e.g. 30m, 12h, 7d.
        #[arg(long, default_value = "7d")]
        expires: String,
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
        /// How long the setup code registers a practice: e.g. 30m, 12h, 7d.
        #[arg(long, default_value = "7d")]
        expires: String,
        /// Instead of printing a code, revokes every setup code not used yet.
        #[arg(long, conflicts_with_all = ["public_addr"])]
        revoke_unused: bool,
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
        Command::Init {
            data,
            public_addr,
            expires,
        } => {
            let ttl = parse_ttl(&expires)?;
            let addr = public_addr.unwrap_or_else(|| default_public_addr(4433));
            let dir = DataDir::init(&data, &addr)?;
            let store = dir.store()?;
            let code = dir.new_setup_code_for(&store, ttl)?;
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
        Command::SetupCode {
            data,
            public_addr,
            expires,
            revoke_unused,
        } => {
            let ttl = parse_ttl(&expires)?;
            let dir = DataDir::open(&data)?;
            if revoke_unused {
                let store = dir.store()?;
                let revoked = rapport_relay::data::revoke_setup_codes(&store)?;
                store.close();
                println!("Revoked {revoked} unused setup code(s).");
                return Ok(());
            }
            if let Some(addr) = public_addr {
                dir.set_public_addr(&addr)?;
            }
            let store = dir.store()?;
            let code = dir.new_setup_code_for(&store, ttl)?;
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

/// A lifetime written like `30m`, `12h` or `7d`.
fn parse_ttl(text: &str) -> Result<std::time::Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let seconds = match unit.trim() {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 && seconds > 0 && n <= 365 * 86_400 / seconds => {
            Ok(std::time::Duration::from_secs(n * seconds))
        }
        _ => anyhow::bail!("--expires {text:?}: write it like 30m, 12h or 7d (at most a year)"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lifetimes_are_read_and_nonsense_refused() {
        assert_eq!(super::parse_ttl("7d").unwrap().as_secs(), 7 * 86_400);
        assert_eq!(super::parse_ttl("30m").unwrap().as_secs(), 1_800);
        for bad in ["", "7", "0d", "soon", "400d", "-1h"] {
            let err = super::parse_ttl(bad).unwrap_err().to_string();
            assert!(err.contains("like 30m"), "{bad}: {err}");
        }
    }
}
