//! PgBouncer from Debian's `pgbouncer` package in front of the shared PostgreSQL: the pooler
//! `dbbind.io/endpoint: pooler` reaches in the suite. Session pooling, so each client holds a
//! server connection PostgreSQL can show (with its `application_name`); SCRAM on both sides
//! from the users' passwords, as an operator's PgBouncer authenticates them.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::Result;
use crate::postgres::as_postgres;
use crate::process::Daemon;
use crate::tools::{self, free_port};

/// Debian's binary (package `pgbouncer`).
const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

pub struct PgBouncer {
    /// Where it listens on 127.0.0.1.
    pub port: u16,
    _daemon: Daemon,
    _dir: tools::RunDir,
}

impl PgBouncer {
    /// Starts PgBouncer for the server on 127.0.0.1:`upstream_port`, letting in these users
    /// (name, password).
    pub fn start(upstream_port: u16, users: &[(String, String)]) -> Result<PgBouncer> {
        if !std::path::Path::new(PGBOUNCER).exists() {
            return Err(anyhow!(
                "{PGBOUNCER} is missing: install Debian's pgbouncer package (.ci/run does)"
            ));
        }
        let dir = tools::run_dir("dbbind-pgbouncer-")?;
        let port = free_port()?;
        let userlist: String = users
            .iter()
            .map(|(user, password)| format!("{} {}\n", quoted(user), quoted(password)))
            .collect();
        let auth_file = dir.path().join("userlist.txt");
        std::fs::write(&auth_file, userlist)?;
        let config = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &config,
            format!(
                "[databases]\n* = host=127.0.0.1 port={upstream_port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = scram-sha-256\nauth_file = {}\npool_mode = session\nmax_client_conn = 200\ndefault_pool_size = 50\nserver_tls_sslmode = prefer\nignore_startup_parameters = extra_float_digits,options\nlogfile =\npidfile =\n",
                auth_file.display()
            ),
        )?;
        // PgBouncer refuses to run as root; the files must be its user's.
        crate::postgres::run(
            Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(dir.path()),
        )?;
        crate::postgres::run(Command::new("chmod").arg("700").arg(dir.path()))?;
        let mut command = as_postgres(&PathBuf::from(PGBOUNCER));
        command.arg(&config);
        let mut daemon = Daemon::start("pgbouncer", command, dir.path())?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            daemon.check_running()?;
            if started.elapsed() > Duration::from_secs(20) {
                return Err(anyhow!(
                    "PgBouncer did not listen on {port}:\n{}",
                    daemon.log_tail(20)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(PgBouncer {
            port,
            _daemon: daemon,
            _dir: dir,
        })
    }
}

/// A userlist.txt field: in double quotes, a double quote doubled.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dbbind::tls::generate::new_ca;

    use super::*;
    use crate::postgres::{Account, Postgres};

    /// A client through PgBouncer reaches PostgreSQL as itself, with its application_name, and
    /// holds its server connection (session pooling): what the scenarios' checks read.
    #[test]
    fn a_client_through_pgbouncer_is_seen_by_postgresql_as_itself() {
        let now = time::OffsetDateTime::now_utc();
        let ca = new_ca("pgbouncer test CA", Duration::from_secs(3600), now).unwrap();
        let postgres = Postgres::start(&ca, &[]).unwrap();
        let account = Account {
            user: "pooled",
            password: "p@ss:w/rd?#%",
            database: "pooled",
        };
        postgres.add_account(&account).unwrap();
        let bouncer = PgBouncer::start(
            postgres.port,
            &[("pooled".to_owned(), account.password.to_owned())],
        )
        .unwrap();
        let psql = tools::postgres_bin_dir().unwrap().join("psql");
        let mut client = Command::new(psql)
            .args(["-h", "127.0.0.1", "-p", &bouncer.port.to_string()])
            .args(["-U", "pooled", "-d", "pooled", "-c", "SELECT pg_sleep(3)"])
            .env("PGPASSWORD", account.password)
            .env("PGAPPNAME", "probe/app/db/pooled")
            .spawn()
            .unwrap();
        let started = Instant::now();
        let seen = loop {
            let seen = postgres
                .sql("SELECT usename || '@' || datname FROM pg_stat_activity WHERE application_name = 'probe/app/db/pooled'")
                .unwrap();
            if !seen.is_empty() || started.elapsed() > Duration::from_secs(10) {
                break seen;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(client.wait().unwrap().success());
        assert_eq!(seen, "pooled@pooled");
    }
}
