use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = dbbind::cli::Cli::parse();
    // Unlocked handles: `serve` logs to stderr from worker threads, and a lock held here for
    // the whole run would block every one of them.
    dbbind::cli::run(cli, &mut std::io::stdout(), &mut std::io::stderr())
}
