use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = dbbind::cli::Cli::parse();
    dbbind::cli::run(
        cli,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
}
