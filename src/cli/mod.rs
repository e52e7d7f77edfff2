//! The `dbbind` command line (docs/design.md §6).

mod certs;
mod profiles;
mod render;
mod selftest;
mod serve;
mod unregister;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::tls::setup::WebhookConfigNames;

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
    /// Check that an installed dbbind binds pods: a server-side dry run of an annotated Pod in
    /// an opted-in namespace, through the API server and dbbind's webhook (nothing is
    /// created). Exits 0 when dbbind bound it, 1 otherwise. The chart's `helm test` runs it.
    Selftest(selftest::SelftestArgs),
    /// Delete dbbind's webhook configurations, so the API server stops calling it. The chart
    /// runs it before `helm uninstall` deletes anything else.
    Unregister(WebhookConfigNames),
}

/// Runs a command that talks to the API server: `work` on a small runtime, its lines to
/// stdout (exit 0) or its error to stderr (exit 1).
fn run_against_cluster<F>(work: F, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8
where
    F: std::future::Future<Output = anyhow::Result<Vec<String>>>,
{
    crate::tls::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(stderr, "Error: cannot start the async runtime: {error}");
            return 1;
        }
    };
    match runtime.block_on(work) {
        Ok(lines) => {
            for line in lines {
                let _ = writeln!(stdout, "{line}");
            }
            0
        }
        Err(error) => {
            let _ = writeln!(stderr, "Error: {error:#}");
            1
        }
    }
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
        Command::Selftest(args) => run_against_cluster(selftest::selftest(&args), stdout, stderr),
        Command::Unregister(args) => {
            run_against_cluster(unregister::unregister(&args), stdout, stderr)
        }
    };
    ExitCode::from(code)
}
