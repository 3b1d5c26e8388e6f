//! The `rapport` command: a practice's referral network, offline, in a terminal.

mod demo;

use clap::{Parser, Subcommand};

/// Rapport keeps a therapy practice's referral network on every device, offline.
#[derive(Parser)]
#[command(name = "rapport", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Plays the story of a small practice building its referral network, in a temporary
    /// directory that is removed afterwards.
    ///
    /// Example: rapport demo
    Demo,
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Demo => demo::run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
