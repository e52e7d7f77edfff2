//! Finding the programs the harness runs: the control plane built by `scripts/k8s-tools`,
//! Debian's etcd and PostgreSQL, and dbbind itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// The repository root (the e2e crate lives in `e2e/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The bin directory of the pinned kube-apiserver, kube-controller-manager, kube-scheduler,
/// kubelet, kubectl and helm, building them on first use (progress goes to stderr).
pub fn k8s_bin_dir() -> Result<PathBuf, Error> {
    script_bin_dir("scripts/k8s-tools")
}

/// The bin directory of containerd, ctr, the runc shim and the pause binary, building them on
/// first use.
pub fn node_bin_dir() -> Result<PathBuf, Error> {
    script_bin_dir("scripts/node-tools")
}

/// A directory of its own for a run's component (`dbbind-e2e-…`, `dbbind-node-…`), removed
/// when dropped unless `DBBIND_E2E_KEEP` is set, which keeps logs, kubeconfig, certificates
/// and the node's state for a post-mortem.
pub fn run_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .disable_cleanup(std::env::var_os("DBBIND_E2E_KEEP").is_some())
        .tempdir()
}

/// The directory of the drivers the app image carries beside psql (`pgx-check`,
/// `node-postgres/`), building them on first use.
pub fn drivers_dir() -> Result<PathBuf, Error> {
    script_bin_dir("scripts/drivers")
}

/// Runs a build script that prints its bin directory last.
fn script_bin_dir(relative: &str) -> Result<PathBuf, Error> {
    let script = repo_root().join(relative);
    let output = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::new(format!("cannot run {}: {e}", script.display())))?;
    if !output.status.success() {
        return Err(Error::new(format!(
            "{} failed ({})",
            script.display(),
            output.status
        )));
    }
    let dir = String::from_utf8_lossy(&output.stdout)
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    Ok(PathBuf::from(dir))
}

/// etcd from Debian's `etcd-server` package.
pub fn etcd() -> Result<PathBuf, Error> {
    which("etcd").ok_or_else(|| {
        Error::new("etcd not found: install Debian's etcd-server package (.ci/run does)")
    })
}

/// PostgreSQL's server programs (initdb, pg_ctl, postgres) from Debian's packages.
pub fn postgres_bin_dir() -> Result<PathBuf, Error> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| {
            Error::new("PostgreSQL not found: install Debian's postgresql package (.ci/run does)")
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .ok_or_else(|| Error::new("no PostgreSQL server under /usr/lib/postgresql"))
}

/// The dbbind binary of this checkout, built first so the suite never runs a stale one (under
/// `cargo test` the build lock is free by the time tests run).
pub fn dbbind() -> Result<PathBuf, Error> {
    dbbind_built(false)
}

/// The release build of dbbind, for benchmarks.
pub fn dbbind_release() -> Result<PathBuf, Error> {
    dbbind_built(true)
}

fn dbbind_built(release: bool) -> Result<PathBuf, Error> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--quiet", "--locked", "--bin", "dbbind"])
        .args(release.then_some("--release"))
        .arg("--manifest-path")
        .arg(repo_root().join("Cargo.toml"))
        .status()
        .map_err(|e| Error::new(format!("cannot run cargo build: {e}")))?;
    if !built.success() {
        return Err(Error::new("cargo build --bin dbbind failed"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let binary = target
        .join(if release { "release" } else { "debug" })
        .join("dbbind");
    if binary.exists() {
        Ok(binary)
    } else {
        Err(Error::new(format!(
            "{} missing after cargo build",
            binary.display()
        )))
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

/// A free loopback port (bound and released; the harness uses it right away).
pub fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::new(format!("no free port: {e}")))?;
    Ok(listener
        .local_addr()
        .map_err(|e| Error::new(e.to_string()))?
        .port())
}
