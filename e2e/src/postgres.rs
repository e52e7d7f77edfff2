//! A real PostgreSQL from Debian's packages, in a temporary directory, on a free port, with TLS
//! on (a certificate from the suite's database CA, for the names clients use), so clients that
//! ask for `sslmode=require` or `verify-full` get it.
//!
//! PostgreSQL refuses to run as root, so its programs run as the `postgres` user through
//! `setpriv`, which execs them: the process handle is the server itself and stops with it.

use anyhow::anyhow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dbbind::tls::generate::{PemPair, SubjectNames, issue_serving};

use crate::Result;
use crate::process::Daemon;
use crate::tools::{self, free_port};

pub struct Postgres {
    pub port: u16,
    data: PathBuf,
    socket_dir: PathBuf,
    bin: PathBuf,
    server: Daemon,
    _dir: tools::RunDir,
}

/// A login role and its database.
pub struct Account<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub database: &'a str,
}

impl Postgres {
    /// Starts a server whose TLS certificate `ca` signs, for `localhost`, 127.0.0.1 and
    /// `hosts` (the names clients reach it by, so `verify-full` holds).
    pub fn start(ca: &PemPair, hosts: &[&str]) -> Result<Postgres> {
        let bin = tools::postgres_bin_dir()?;
        let dir = tools::run_dir("dbbind-pg-")?;
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
        // TLS: the server's key must be the server user's and private.
        let now = time::OffsetDateTime::now_utc();
        let day = Duration::from_secs(86_400);
        let mut dns = vec!["localhost".to_owned()];
        dns.extend(hosts.iter().map(|host| (*host).to_owned()));
        let names = SubjectNames {
            dns,
            ips: vec!["127.0.0.1".parse().map_err(|_| anyhow!("ip"))?],
        };
        let serving = issue_serving(ca, &names, day, now).map_err(|e| anyhow!("{e}"))?;
        let (cert, key) = (data.join("server.crt"), data.join("server.key"));
        std::fs::write(&cert, &serving.cert_pem)?;
        std::fs::write(&key, &serving.key_pem)?;
        // The same CA verifies client certificates, for roles that require one.
        let client_ca = data.join("root.crt");
        std::fs::write(&client_ca, &ca.cert_pem)?;
        run(Command::new("chown")
            .arg("postgres:postgres")
            .arg(&cert)
            .arg(&key)
            .arg(&client_ca))?;
        run(Command::new("chmod").arg("600").arg(&key))?;
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
                "ssl=on",
                "-c",
                "ssl_ca_file=root.crt",
                // Every scenario's and check's pods hold their connections open until the end
                // of the run: well over the default 100.
                "-c",
                "max_connections=400",
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
                    data: data.clone(),
                    socket_dir,
                    bin,
                    server,
                    _dir: dir,
                };
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(anyhow!(
                    "PostgreSQL did not start:\n{}",
                    server.log_tail(20)
                ));
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
            return Err(anyhow!(
                "psql failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
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

    /// Makes `user` log in only over TLS with a client certificate the CA signed for it (its
    /// common name), on top of its password: `hostssl … scram-sha-256 clientcert=verify-full`,
    /// before every other rule, then reloads.
    pub fn require_client_certificate(&self, user: &str) -> Result<()> {
        let hba = self.data.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba)?;
        let rule = format!("hostssl all {user} all scram-sha-256 clientcert=verify-full\n");
        if !rules.contains(&rule) {
            let others = rules
                .lines()
                .filter(|line| !line.split_whitespace().any(|word| word == user))
                .collect::<Vec<_>>()
                .join("\n");
            // Any other connection of this user is refused rather than let in by a later rule.
            std::fs::write(
                &hba,
                format!("{rule}host all {user} all reject\n{others}\n"),
            )?;
        }
        self.sql("SELECT pg_reload_conf()")?;
        Ok(())
    }

    pub fn log(&self) -> String {
        self.server.log_text()
    }
}

pub(crate) fn as_postgres(program: &Path) -> Command {
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

/// A client certificate for `user` (its common name), signed by `ca`, valid for a day.
pub fn client_certificate(ca: &PemPair, user: &str) -> Result<PemPair> {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let fail = |e: rcgen::Error| anyhow!("client certificate: {e}");
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert_pem, KeyPair::from_pem(&ca.key_pem).map_err(fail)?)
            .map_err(fail)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, user);
    params.distinguished_name = name;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + Duration::from_secs(86_400);
    let key = KeyPair::generate().map_err(fail)?;
    let cert = params.signed_by(&key, &issuer).map_err(fail)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

pub(crate) fn run(command: &mut Command) -> Result<()> {
    let output = command.output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(anyhow!(
            "{:?} failed: {}",
            command.get_program(),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
