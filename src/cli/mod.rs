//! The `dbbind` command line (docs/design.md §6).

mod certs;
mod profiles;
mod render;
mod serve;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use dbbind_core::message::PREFIX;

/// Exit code when the webhook would deny.
pub const EXIT_DENIED: u8 = 1;
/// Exit code for input that cannot be read (clap uses it for bad arguments too).
pub const EXIT_BAD_INPUT: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "dbbind",
    version,
    about = "Binds pods to their PostgreSQL database, whatever provisioned it",
    long_about = "dbbind is a Kubernetes mutating admission webhook. It reads a pod's dbbind.io/ \
annotations, finds the Secret that describes its database, reads that Secret's shape through a \
profile, and injects the same environment variables (POSTGRES_HOST, POSTGRES_PASSWORD, ...) or \
files whatever provisioned the database. Secret values are referenced, never copied."
)]
pub struct Cli {
    /// A YAML file of profiles that add to or replace the built-in ones.
    #[arg(long, global = true, env = "DBBIND_PROFILES_FILE", value_name = "FILE")]
    pub profiles_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what the webhook would do to a manifest, offline.
    ///
    /// Reads a Pod or workloads carrying a pod template (Deployment, StatefulSet, DaemonSet,
    /// ReplicaSet, Job, CronJob), and Secrets from the same manifest or from --secret files.
    /// Prints the patched pod-carrying documents (never the Secrets), warnings on stderr. Exits 1
    /// with the denial message where the webhook would deny, 2 when the input cannot be read.
    Render(render::RenderArgs),
    /// List the profiles in effect, or show one in the profiles-file schema.
    Profiles(profiles::ProfilesArgs),
    /// Run the admission webhook: TLS admission on --listen, health and metrics on
    /// --admin-listen.
    Serve(Box<serve::ServeArgs>),
    /// Write a CA and a serving certificate for NAME.NAMESPACE.svc (development clusters and
    /// the plain manifests).
    Certs(certs::CertsArgs),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Yaml,
    Json,
}

/// Runs the command line, writing to the given streams; returns the process exit code.
pub fn run(cli: Cli, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let profiles = match crate::profiles::load(cli.profiles_file.as_deref()) {
        Ok(profiles) => profiles,
        Err(error) => {
            let _ = writeln!(stderr, "{PREFIX}{error}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let code = match cli.command {
        Command::Render(args) => render::run(&args, &profiles, stdout, stderr),
        Command::Profiles(args) => profiles::run(&args, &profiles, stdout, stderr),
        Command::Serve(args) => serve::run(&args, profiles, cli.profiles_file),
        Command::Certs(args) => certs::run(&args, stdout, stderr),
    };
    ExitCode::from(code)
}
