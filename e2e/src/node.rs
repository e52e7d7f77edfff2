//! A real node beside the control plane: containerd (with runc from Debian), the kubelet and
//! kube-scheduler, so pods are scheduled, started and run, and a container sees exactly what a
//! kubelet gives it.
//!
//! Everything lives in a directory of its own (state, sockets, the kubelet's root and pod logs)
//! and is torn down when the [`Node`] is dropped, also after a failed test: containers are
//! killed through containerd, the daemons stopped, leftover shims killed, and every mount
//! under the directory undone. Pods use `hostNetwork`, so no CNI is needed and all traffic stays
//! on loopback.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cluster::ControlPlane;
use crate::image;
use crate::process::Daemon;
use crate::tools::{self, free_port};
use crate::{Error, Result};

/// The node's name in the cluster.
pub const NODE_NAME: &str = "dbbind-e2e-node";

pub struct Node {
    pub dir: tempfile::TempDir,
    pub containerd_socket: PathBuf,
    /// Where the kubelet writes container logs: `<namespace>_<pod>_<uid>/<container>/0.log`.
    pub pod_logs: PathBuf,
    ctr: PathBuf,
    // Stopped in this order by Drop: the scheduler and kubelet, then containerd.
    scheduler: Option<Daemon>,
    kubelet: Option<Daemon>,
    containerd: Option<Daemon>,
}

impl Node {
    /// Starts containerd, imports the images, starts the kubelet and kube-scheduler, and waits
    /// for the node to be Ready.
    /// `database_ca` is the PEM CA the app image trusts for TLS to the databases.
    pub fn start(plane: &ControlPlane, database_ca: &str) -> Result<Node> {
        let k8s = tools::k8s_bin_dir()?;
        let node_bin = tools::node_bin_dir()?;
        let dir = tools::run_dir("dbbind-node-")?;
        let path = |name: &str| dir.path().join(name);
        for sub in ["containerd", "kubelet", "pod-logs", "images"] {
            std::fs::create_dir_all(path(sub))?;
        }
        let socket = path("containerd/containerd.sock");
        let mut node = Node {
            containerd_socket: socket.clone(),
            pod_logs: path("pod-logs"),
            ctr: node_bin.join("ctr"),
            scheduler: None,
            kubelet: None,
            containerd: None,
            dir,
        };
        let root = node.dir.path().to_path_buf();
        let path = |name: &str| root.join(name);

        // containerd finds the shim and runc on its PATH.
        let search_path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            node_bin.display()
        );
        std::fs::write(
            path("containerd/config.toml"),
            containerd_config(node.dir.path(), &socket),
        )?;
        std::fs::create_dir_all(path("containerd/cni"))?;
        std::fs::write(
            path("containerd/cni/10-loopback.conflist"),
            r#"{"cniVersion": "1.0.0", "name": "dbbind-e2e", "plugins": [{"type": "loopback"}]}"#,
        )?;
        std::fs::create_dir_all(path("containerd/registries/_default"))?;
        std::fs::write(
            path("containerd/registries/_default/hosts.toml"),
            "server = \"http://127.0.0.1:9\"\n\n[host.\"http://127.0.0.1:9\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        )?;
        let mut containerd = Command::new(node_bin.join("containerd"));
        containerd
            .arg("--config")
            .arg(path("containerd/config.toml"))
            .env("PATH", &search_path);
        node.containerd = Some(Daemon::start("containerd", containerd, &root)?);
        node.wait_for_containerd()?;
        node.import_images(&node_bin, database_ca)?;

        let kubelet_port = free_port()?;
        std::fs::write(
            path("kubelet/config.yaml"),
            kubelet_config(&socket, kubelet_port, &path("pod-logs")),
        )?;
        let mut kubelet = Command::new(k8s.join("kubelet"));
        kubelet
            .arg(format!(
                "--config={}",
                path("kubelet/config.yaml").display()
            ))
            .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
            .arg(format!("--hostname-override={NODE_NAME}"))
            .arg(format!("--root-dir={}", path("kubelet/root").display()))
            .arg(format!("--cert-dir={}", path("kubelet/pki").display()))
            .env("PATH", &search_path);
        node.kubelet = Some(Daemon::start("kubelet", kubelet, &root)?);

        let mut scheduler = Command::new(k8s.join("kube-scheduler"));
        scheduler
            .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
            .arg(format!(
                "--authentication-kubeconfig={}",
                plane.kubeconfig.display()
            ))
            .arg(format!(
                "--authorization-kubeconfig={}",
                plane.kubeconfig.display()
            ))
            .arg("--leader-elect=false")
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={}", free_port()?));
        node.scheduler = Some(Daemon::start("kube-scheduler", scheduler, &root)?);
        node.wait_ready(plane)?;
        Ok(node)
    }

    /// `ctr` against this node's containerd, in the kubelet's namespace.
    fn ctr(&self, args: &[&str]) -> Result<std::process::Output> {
        Ok(Command::new(&self.ctr)
            .arg("--address")
            .arg(&self.containerd_socket)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()?)
    }

    fn wait_for_containerd(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(containerd) = self.containerd.as_mut() {
                containerd.check_running()?;
            }
            if self.ctr(&["version"]).is_ok_and(|o| o.status.success()) {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(Error::new("containerd did not answer within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Builds the pause and app images and imports them, unpacked for the snapshotter the
    /// kubelet's runtime uses.
    fn import_images(&self, node_bin: &Path, database_ca: &str) -> Result<()> {
        let pause = self.dir.path().join("images/pause.tar");
        let app = self.dir.path().join("images/app.tar");
        image::write_pause(&node_bin.join("pause"), &pause)?;
        image::write_app(
            &tools::postgres_bin_dir()?.join("psql"),
            &tools::drivers_dir()?,
            database_ca,
            &app,
        )?;
        for archive in [&pause, &app] {
            let archive = archive.display().to_string();
            let output = self.ctr(&[
                "images",
                "import",
                // Client-side import: the daemon's transfer service unpacks only for its
                // default snapshotter, and the kubelet's runtime uses "native".
                "--local",
                "--snapshotter",
                "native",
                &archive,
            ])?;
            if !output.status.success() {
                return Err(Error::new(format!(
                    "ctr images import {archive}: {}",
                    String::from_utf8_lossy(&output.stderr)
                )));
            }
        }
        Ok(())
    }

    fn wait_ready(&mut self, plane: &ControlPlane) -> Result<()> {
        let started = Instant::now();
        loop {
            for daemon in [&mut self.kubelet, &mut self.scheduler, &mut self.containerd]
                .into_iter()
                .flatten()
            {
                daemon.check_running()?;
            }
            let ready = plane.kubectl_run(
                &[
                    "get",
                    "node",
                    NODE_NAME,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.conditions[?(@.type==\"Ready\")].message}",
                ],
                None,
            )?;
            if ready.success && ready.stdout.starts_with("True") {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                let kubelet = self
                    .kubelet
                    .as_ref()
                    .map(|k| k.log_tail(30))
                    .unwrap_or_default();
                return Err(Error::new(format!(
                    "node {NODE_NAME} not Ready after 60 s ({}{}); kubelet log:\n{kubelet}",
                    ready.stdout, ready.stderr
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The kubelet's log of a container, by namespace and pod name.
    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> String {
        let prefix = format!("{namespace}_{pod}_");
        let Ok(entries) = std::fs::read_dir(&self.pod_logs) else {
            return String::new();
        };
        entries
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
            // Lossy: a client may print bytes that are not UTF-8 (libpq 15 with OpenSSL 3 does,
            // for a key it cannot open), and the rest of the log still counts.
            .filter_map(|entry| std::fs::read(entry.path().join(container).join("0.log")).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn kubelet_log_tail(&self, lines: usize) -> String {
        self.kubelet
            .as_ref()
            .map(|k| k.log_tail(lines))
            .unwrap_or_default()
    }

    /// Kills every container and sandbox through containerd, so no shim or container outlives
    /// the node.
    fn kill_containers(&self) {
        let Ok(listed) = self.ctr(&["tasks", "ls", "-q"]) else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        for id in &ids {
            let _ = self.ctr(&["tasks", "kill", "--signal", "SIGKILL", id]);
        }
        for id in &ids {
            for _ in 0..20 {
                if self
                    .ctr(&["tasks", "delete", "--force", id])
                    .is_ok_and(|o| o.status.success())
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The kubelet first, so it does not restart what is killed next.
        drop(self.kubelet.take());
        drop(self.scheduler.take());
        self.kill_containers();
        drop(self.containerd.take());
        kill_processes_mentioning(&self.containerd_socket);
        unmount_under(self.dir.path());
    }
}

/// Kills processes whose command line names `path`: shims started for this containerd.
fn kill_processes_mentioning(path: &Path) {
    let needle = path.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) && pid != std::process::id() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// Unmounts everything mounted under `dir` (secret volumes, shm), deepest first.
fn unmount_under(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        let _ = Command::new("umount").args(["-l", point]).status();
    }
}

fn containerd_config(dir: &Path, socket: &Path) -> String {
    format!(
        r#"version = 3
root = "{root}"
state = "{state}"

[grpc]
  address = "{socket}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "native"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{pause}"
  [plugins.'io.containerd.cri.v1.images'.registry]
    # Every registry resolves to a closed loopback port: an image the suite did not import
    # fails at once, and no pull ever leaves the machine.
    config_path = "{registries}"

[plugins.'io.containerd.cri.v1.runtime']
  # This machine forbids lowering oom_score_adj: without this, every sandbox fails in runc.
  restrict_oom_score_adj = true
  # Pods use the host's network; a network configuration must still exist, or the runtime
  # reports its network as not ready and the node never becomes Ready. Loopback only.
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{cni}"
"#,
        root = dir.join("containerd/root").display(),
        state = dir.join("containerd/state").display(),
        registries = dir.join("containerd/registries").display(),
        cni = dir.join("containerd/cni").display(),
        socket = socket.display(),
        pause = image::PAUSE_IMAGE,
    )
}

fn kubelet_config(socket: &Path, port: u16, pod_logs: &Path) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
evictionHard: {{}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
containerRuntimeEndpoint: unix://{socket}
imageServiceEndpoint: unix://{socket}
podLogsDir: {logs}
"#,
        socket = socket.display(),
        logs = pod_logs.display(),
    )
}
