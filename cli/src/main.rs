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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => demo::run(),
    }
}
