//! `dbbind certs`: a CA and a serving certificate for development clusters and the plain
//! manifests.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use time::OffsetDateTime;

use super::EXIT_BAD_INPUT;
use crate::tls::TlsError;
use crate::tls::generate::{SubjectNames, issue_serving, new_ca};

/// The flags `serve` has too are spelled as `serve` spells them; the first spellings of
/// `certs` stay as hidden aliases, so scripts written for them keep working.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// The webhook Service's name.
    #[arg(long, alias = "service", default_value = "dbbind")]
    pub service_name: String,
    /// The webhook Service's namespace.
    #[arg(long, short = 'n', default_value = "dbbind")]
    pub namespace: String,
    /// Where to write ca.crt, tls.crt and tls.key.
    #[arg(long, default_value = "certs")]
    pub out_dir: PathBuf,
    /// More DNS names for the serving certificate (comma separated, repeatable).
    #[arg(
        long,
        alias = "extra-dns-name",
        value_name = "NAMES",
        value_delimiter = ','
    )]
    pub extra_dns_names: Vec<String>,
    /// IP addresses for the serving certificate (comma separated, repeatable), e.g. 127.0.0.1
    /// for a URL-registered webhook.
    #[arg(long, alias = "ip-address", value_name = "IPS", value_delimiter = ',')]
    pub extra_ip_addresses: Vec<IpAddr>,
    /// How long the certificates are valid.
    #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
    pub validity: Duration,
}

pub fn run(args: &CertsArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    match write_certs(args) {
        Ok(written) => {
            for path in written {
                let _ = writeln!(stdout, "wrote {}", path.display());
            }
            let _ = writeln!(
                stdout,
                "serve with --tls-cert-file {0}/tls.crt --tls-key-file {0}/tls.key; put {0}/ca.crt (base64) in the webhook's caBundle",
                args.out_dir.display()
            );
            0
        }
        Err(error) => {
            let _ = writeln!(stderr, "Error: {error}");
            EXIT_BAD_INPUT
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum CertsError {
    #[error("cannot generate the certificates: {0}")]
    Generate(#[from] TlsError),
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

fn write_certs(args: &CertsArgs) -> Result<Vec<PathBuf>, CertsError> {
    let now = OffsetDateTime::now_utc();
    let names = SubjectNames::for_service(
        &args.service_name,
        &args.namespace,
        &args.extra_dns_names,
        &args.extra_ip_addresses,
    );
    let ca = new_ca("dbbind development CA", args.validity, now)?;
    let serving = issue_serving(&ca, &names, args.validity, now)?;
    std::fs::create_dir_all(&args.out_dir).map_err(|source| CertsError::CreateDir {
        path: args.out_dir.display().to_string(),
        source,
    })?;
    let files = [
        ("ca.crt", ca.cert_pem.as_str(), false),
        ("tls.crt", serving.cert_pem.as_str(), false),
        ("tls.key", serving.key_pem.as_str(), true),
    ];
    let mut written = Vec::new();
    for (name, contents, private) in files {
        let path = args.out_dir.join(name);
        write_file(&path, contents, private)?;
        written.push(path);
    }
    Ok(written)
}

/// Writes via a temporary file and a rename, so a server polling the file never reads half of
/// it; private keys are readable by the owner only.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), CertsError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let temporary = path.with_extension("tmp");
    let mode = if private { 0o600 } else { 0o644 };
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .and_then(|mut file| {
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            file.write_all(contents.as_bytes())
        })
        .and_then(|()| std::fs::rename(&temporary, path));
    result.map_err(|source| CertsError::Write {
        path: path.display().to_string(),
        source,
    })
}
