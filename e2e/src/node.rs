//! A real node beside the control plane: containerd (with runc from Debian), the kubelet and
//! kube-scheduler, so pods are scheduled, started and run, and a container sees exactly what a
//! kubelet gives it.
//!
//! Everything lives in a directory of its own (state, sockets, runc's state, the kubelet's root,
//! pod logs, the pods' network namespaces and their addresses) and is torn down when the
//! [`Node`] is dropped, also after a failed test, or when the harness is stopped by a signal
//! (see [`crate::process::on_signal`]): the kubelet first, then every container through runc's
//! own state (so none outlives a shim or containerd that is already gone), containerd and its
//! shims, and every mount under the directory.
//!
//! Pods that do not ask for `hostNetwork` get an address on the test bed's bridge (see
//! [`crate::network`]); the node's address is the bridge's, where the kubelet listens, so
//! `kubectl logs` works.

use anyhow::anyhow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::Result;
use crate::cluster::ControlPlane;
use crate::image;
use crate::network::PodNetwork;
use crate::process::{Daemon, SignalCleanup};
use crate::tools::{self, free_port};

/// The node's name in the cluster.
pub const NODE_NAME: &str = "dbbind-e2e-node";

/// What tears the node down: enough to do it from a signal handler, with no daemon left to ask.
#[derive(Clone)]
struct Teardown {
    dir: PathBuf,
    containerd_socket: PathBuf,
    /// runc's state directory for this node's containers (containerd's runc `Root`, then the
    /// containerd namespace).
    runc_root: PathBuf,
}

impl Teardown {
    /// Kills and deletes every container runc knows here, kills the shims, and undoes every
    /// mount under the node's directory (volumes, root filesystems, network namespaces; a
    /// network namespace goes, with its veth, once nothing holds it).
    fn run(&self) {
        let root = self.runc_root.display().to_string();
        let listed = Command::new("runc")
            .args(["--root", &root, "list", "-q"])
            .output();
        if let Ok(listed) = listed {
            for id in String::from_utf8_lossy(&listed.stdout).lines() {
                let _ = Command::new("runc")
                    .args(["--root", &root, "delete", "--force", id])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        kill_processes_mentioning(&self.containerd_socket);
        for point in tools::mounts_under(&self.dir) {
            let _ = Command::new("umount").args(["-l", &point]).status();
        }
    }
}

pub struct Node {
    pub dir: tools::RunDir,
    pub containerd_socket: PathBuf,
    /// Where the kubelet writes container logs: `<namespace>_<pod>_<uid>/<container>/0.log`.
    pub pod_logs: PathBuf,
    /// The node's address: the pod network's bridge.
    pub address: std::net::Ipv4Addr,
    ctr: PathBuf,
    teardown: Teardown,
    // Stopped in this order by Drop: the scheduler and kubelet, then containerd.
    scheduler: Option<Daemon>,
    kubelet: Option<Daemon>,
    containerd: Option<Daemon>,
    _on_signal: SignalCleanup,
}

impl Node {
    /// Starts containerd, imports the images, starts the kubelet and kube-scheduler, and waits
    /// for the node to be Ready. Pods without `hostNetwork` get addresses on `network`.
    /// `database_ca` is the PEM CA the app image trusts for TLS to the databases.
    pub fn start(plane: &ControlPlane, network: &PodNetwork, database_ca: &str) -> Result<Node> {
        let k8s = tools::k8s_bin_dir()?;
        let node_bin = tools::node_bin_dir()?;
        let dir = tools::run_dir("dbbind-node-")?;
        let path = |name: &str| dir.path().join(name);
        for sub in ["containerd", "kubelet", "pod-logs", "images", "cni"] {
            std::fs::create_dir_all(path(sub))?;
        }
        let socket = path("containerd/containerd.sock");
        let teardown = Teardown {
            dir: dir.path().to_owned(),
            containerd_socket: socket.clone(),
            runc_root: runc_root(dir.path()),
        };
        let on_signal = {
            let teardown = teardown.clone();
            crate::process::on_signal(move || teardown.run())
        };
        let mut node = Node {
            containerd_socket: socket.clone(),
            pod_logs: path("pod-logs"),
            address: network.gateway,
            ctr: node_bin.join("ctr"),
            teardown,
            scheduler: None,
            kubelet: None,
            containerd: None,
            _on_signal: on_signal,
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
            path("containerd/cni/10-dbbind-e2e.conflist"),
            network.cni_conflist(&path("cni")),
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
            kubelet_config(&socket, network, kubelet_port, &path("pod-logs")),
        )?;
        let mut kubelet = Command::new(k8s.join("kubelet"));
        kubelet
            .arg(format!(
                "--config={}",
                path("kubelet/config.yaml").display()
            ))
            .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
            .arg(format!("--hostname-override={NODE_NAME}"))
            .arg(format!("--node-ip={}", network.gateway))
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
                return Err(anyhow!("containerd did not answer within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Builds the pause, app and dbbind images and imports them, unpacked for the snapshotter
    /// the kubelet's runtime uses. dbbind's is the Dockerfile's final stage around the
    /// Dockerfile's own release build, tagged as the chart pulls it by default and once more
    /// for an upgrade.
    fn import_images(&self, node_bin: &Path, database_ca: &str) -> Result<()> {
        let pause = self.dir.path().join("images/pause.tar");
        let app = self.dir.path().join("images/app.tar");
        let dbbind = self.dir.path().join("images/dbbind.tar");
        image::write_pause(&node_bin.join("pause"), &pause)?;
        image::write_app(
            &tools::postgres_bin_dir()?.join("psql"),
            &tools::drivers_dir()?,
            database_ca,
            &app,
        )?;
        image::write_dbbind(
            &tools::dbbind_release()?,
            &tools::chart_app_version()?,
            &dbbind,
        )?;
        for archive in [&pause, &app, &dbbind] {
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
                return Err(anyhow!(
                    "ctr images import {archive}: {}",
                    String::from_utf8_lossy(&output.stderr)
                ));
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
            let ready = plane.kubectl_outcome(
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
                return Err(anyhow!(
                    "node {NODE_NAME} not Ready after 60 s ({}{}); kubelet log:\n{kubelet}",
                    ready.stdout,
                    ready.stderr
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The kubelet's log of a container, by namespace and pod name (every restart's).
    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> String {
        self.logs(&format!("{namespace}_{pod}_"), container)
    }

    /// The logs of container `container` in every pod of `namespace` the kubelet has logs of.
    pub fn namespace_logs(&self, namespace: &str, container: &str) -> String {
        self.logs(&format!("{namespace}_"), container)
    }

    /// The logs of `container` in the pods whose log directory starts with `prefix`
    /// (`<namespace>_<pod>_<uid>`), each restart's file in turn.
    fn logs(&self, prefix: &str, container: &str) -> String {
        let Ok(entries) = std::fs::read_dir(&self.pod_logs) else {
            return String::new();
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(prefix))
            .flat_map(|entry| {
                std::fs::read_dir(entry.path().join(container))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|log| log.path())
            })
            .collect();
        files.sort();
        files
            .iter()
            .filter_map(|file| std::fs::read(file).ok())
            // Lossy: a client may print bytes that are not UTF-8 (libpq 15 with OpenSSL 3 does,
            // for a key it cannot open), and the rest of the log still counts.
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

    /// The host pid of a running container's first process, by its containerd id (a pod
    /// status's `containerID` without `containerd://`), from runc's own state.
    pub fn container_pid(&self, id: &str) -> Result<u32> {
        running_containers(&self.teardown.runc_root)
            .into_iter()
            .find(|(running, _)| running == id)
            .map(|(_, pid)| pid)
            .ok_or_else(|| anyhow!("runc has no running container {id}"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The kubelet first, so it does not restart what is killed next.
        drop(self.kubelet.take());
        drop(self.scheduler.take());
        drop(self.containerd.take());
        self.teardown.run();
    }
}

/// The containers runc knows under `runc_root` that are running: (id, host pid of the first
/// process).
pub fn running_containers(runc_root: &Path) -> Vec<(String, u32)> {
    let listed = Command::new("runc")
        .arg("--root")
        .arg(runc_root)
        .args(["list", "--format", "json"])
        .output();
    let containers: serde_json::Value = listed
        .ok()
        .and_then(|listed| serde_json::from_slice(&listed.stdout).ok())
        .unwrap_or(serde_json::Value::Null);
    containers
        .as_array()
        .into_iter()
        .flatten()
        .filter(|container| container["status"] == "running")
        .filter_map(|container| {
            let pid = u32::try_from(container["pid"].as_u64()?).ok()?;
            Some((container["id"].as_str()?.to_owned(), pid))
        })
        .collect()
}

/// runc's state directory under a node's directory (containerd's runc `Root`, then
/// containerd's namespace for the kubelet).
pub fn runc_root(node_dir: &Path) -> PathBuf {
    node_dir.join("runc/k8s.io")
}

/// Processes (not this one) whose command line names `path`: pid and command line.
pub fn processes_mentioning(path: &Path) -> Vec<(u32, String)> {
    let needle = path.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains(&needle) && pid != std::process::id())
                .then(|| (pid, cmdline.trim().to_owned()))
        })
        .collect()
}

/// Kills processes whose command line names `path`: shims started for this containerd.
fn kill_processes_mentioning(path: &Path) {
    for (pid, _) in processes_mentioning(path) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
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
  # The pods' network namespaces under the state directory, not /var/run/netns, so tearing the
  # node down finds every one of them.
  netns_mounts_under_state_dir = true
  # The pod network: the test bed's bridge (see the network module).
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{cni}"
  # runc's state in the node's directory: the teardown deletes every container runc knows,
  # even with containerd and its shims gone.
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    sandboxer = "podsandbox"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      Root = "{runc}"
"#,
        runc = dir.join("runc").display(),
        root = dir.join("containerd/root").display(),
        state = dir.join("containerd/state").display(),
        registries = dir.join("containerd/registries").display(),
        cni = dir.join("containerd/cni").display(),
        socket = socket.display(),
        pause = image::PAUSE_IMAGE,
    )
}

fn kubelet_config(socket: &Path, network: &PodNetwork, port: u16, pod_logs: &Path) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {address}
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
        address = network.gateway,
        socket = socket.display(),
        logs = pod_logs.display(),
    )
}
