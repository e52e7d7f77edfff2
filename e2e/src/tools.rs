//! Finding the programs the harness runs: the control plane built by `scripts/k8s-tools`,
//! Debian's etcd and PostgreSQL, and dbbind itself.

use anyhow::anyhow;
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
/// when dropped, or when the harness is stopped by a signal, unless `DBBIND_E2E_KEEP` is set,
/// which keeps logs, kubeconfig, certificates and the node's state for a post-mortem.
pub struct RunDir {
    dir: tempfile::TempDir,
    _on_signal: crate::process::SignalCleanup,
}

impl RunDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

pub fn run_dir(prefix: &str) -> std::io::Result<RunDir> {
    let keep = std::env::var_os("DBBIND_E2E_KEEP").is_some();
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .disable_cleanup(keep)
        .tempdir()?;
    let path = dir.path().to_owned();
    // Registered first, so it runs after the cleanups of what lives inside (mounts).
    let on_signal = crate::process::on_signal(move || {
        // Never through a mount that could not be undone (a volume's tmpfs, a bind mount).
        if !keep && mounts_under(&path).is_empty() {
            let _ = std::fs::remove_dir_all(&path);
        }
    });
    Ok(RunDir {
        dir,
        _on_signal: on_signal,
    })
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
        .map_err(|e| anyhow!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(anyhow!("{} failed ({})", script.display(), output.status));
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
        anyhow!("etcd not found: install Debian's etcd-server package (.ci/run does)")
    })
}

/// PostgreSQL's server programs (initdb, pg_ctl, postgres) from Debian's packages.
pub fn postgres_bin_dir() -> Result<PathBuf, Error> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| {
            anyhow!("PostgreSQL not found: install Debian's postgresql package (.ci/run does)")
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .ok_or_else(|| anyhow!("no PostgreSQL server under /usr/lib/postgresql"))
}

/// The dbbind binary of this checkout, built first so the suite never runs a stale one (under
/// `cargo test` the build lock is free by the time tests run).
pub fn dbbind() -> Result<PathBuf, Error> {
    dbbind_built(false)
}

/// The release build of dbbind, built as the Dockerfile builds it (`--locked --release
/// --package dbbind --bin dbbind`): for dbbind's image and for benchmarks.
pub fn dbbind_release() -> Result<PathBuf, Error> {
    dbbind_built(true)
}

fn dbbind_built(release: bool) -> Result<PathBuf, Error> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--locked",
            "--package",
            "dbbind",
            "--bin",
            "dbbind",
        ])
        .args(release.then_some("--release"))
        .arg("--manifest-path")
        .arg(repo_root().join("Cargo.toml"))
        .status()
        .map_err(|e| anyhow!("cannot run cargo build: {e}"))?;
    if !built.success() {
        return Err(anyhow!("cargo build --bin dbbind failed"));
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
        Err(anyhow!("{} missing after cargo build", binary.display()))
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
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| anyhow!("no free port: {e}"))?;
    Ok(listener.local_addr().map_err(|e| anyhow!("{e}"))?.port())
}

/// The mount points at or under `dir`, from this process's mount table, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .filter(|point| {
            point
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .map(str::to_owned)
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    points
}

/// The chart's `appVersion`: the image tag it pulls by default.
pub fn chart_app_version() -> Result<String, Error> {
    let path = repo_root().join("charts/dbbind/Chart.yaml");
    let chart: serde_json::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(&path).map_err(|e| anyhow!("{}: {e}", path.display()))?,
    )
    .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    chart["appVersion"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("charts/dbbind/Chart.yaml has no appVersion"))
}

/// Fails with what to do unless this process may open `needed` files (a flood of connections
/// opened from the test process).
pub fn enough_open_files(needed: usize) -> Result<(), Error> {
    let limits = std::fs::read_to_string("/proc/self/limits")
        .map_err(|e| anyhow!("/proc/self/limits: {e}"))?;
    let open_files: usize = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    if open_files < needed {
        return Err(anyhow!(
            "the flood needs {needed} open files; `ulimit -n` allows {open_files} (.ci/run raises it)"
        ));
    }
    Ok(())
}
