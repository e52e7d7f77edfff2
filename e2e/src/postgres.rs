//! A real PostgreSQL from Debian's packages, in a temporary directory, on a free port.
//!
//! PostgreSQL refuses to run as root, so its programs run as the `postgres` user through
//! `setpriv`, which execs them: the process handle is the server itself and stops with it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::Daemon;
use crate::tools::{self, free_port};
use crate::{Error, Result};

pub struct Postgres {
    pub port: u16,
    socket_dir: PathBuf,
    bin: PathBuf,
    server: Daemon,
    _dir: tempfile::TempDir,
}

/// A login role and its database.
pub struct Account<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub database: &'a str,
}

impl Postgres {
    pub fn start() -> Result<Postgres> {
        let bin = tools::postgres_bin_dir()?;
        let dir = tempfile::Builder::new().prefix("dbbind-pg-").tempdir()?;
        let data = dir.path().join("data");
        let socket_dir = dir.path().join("socket");
        for path in [&data, &socket_dir] {
            std::fs::create_dir_all(path)?;
        }
        run(Command::new("chmod").arg("755").arg(dir.path()))?;
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path()))?;
        run(as_postgres(&bin.join("initdb"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data))?;
        let port = free_port()?;
        let mut server = as_postgres(&bin.join("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
            ])
            .arg(format!("unix_socket_directories={}", socket_dir.display()));
        let mut server = Daemon::start("postgres", server, dir.path())?;
        let started = Instant::now();
        let postgres = loop {
            server.check_running()?;
            let probe = Postgres::psql_command(&bin, &socket_dir, port, "SELECT 1").output()?;
            if probe.status.success() {
                break Postgres {
                    port,
                    socket_dir,
                    bin,
                    server,
                    _dir: dir,
                };
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(Error::new(format!(
                    "PostgreSQL did not start:\n{}",
                    server.log_tail(20)
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        Ok(postgres)
    }

    fn psql_command(bin: &Path, socket_dir: &Path, port: u16, sql: &str) -> Command {
        let mut command = as_postgres(&bin.join("psql"));
        command.arg("-h").arg(socket_dir).args([
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-qAt",
            "-c",
            sql,
        ]);
        command
    }

    /// Runs SQL as the superuser over the Unix socket.
    pub fn sql(&self, sql: &str) -> Result<String> {
        let output =
            Postgres::psql_command(&self.bin, &self.socket_dir, self.port, sql).output()?;
        if !output.status.success() {
            return Err(Error::new(format!(
                "psql failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Creates (or updates) a login role with its password, and its database.
    pub fn add_account(&self, account: &Account<'_>) -> Result<()> {
        let role = identifier(account.user);
        let password = literal(account.password);
        let exists = self.sql(&format!(
            "SELECT 1 FROM pg_roles WHERE rolname = {}",
            literal(account.user)
        ))?;
        let verb = if exists == "1" { "ALTER" } else { "CREATE" };
        self.sql(&format!("{verb} ROLE {role} LOGIN PASSWORD {password}"))?;
        let db_exists = self.sql(&format!(
            "SELECT 1 FROM pg_database WHERE datname = {}",
            literal(account.database)
        ))?;
        if db_exists != "1" {
            self.sql(&format!(
                "CREATE DATABASE {} OWNER {role}",
                identifier(account.database)
            ))?;
        }
        Ok(())
    }

    pub fn log(&self) -> String {
        self.server.log_text()
    }
}

fn as_postgres(program: &Path) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
    command
}

fn run(command: &mut Command) -> Result<()> {
    let output = command.output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "{:?} failed: {}",
            command.get_program(),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
