//! A real control plane on loopback: etcd, kube-apiserver, kube-controller-manager, each on a
//! free port, with a CA, serving certificate, service-account key and admin token made here.
//!
//! The controller manager is what makes a Deployment's ReplicaSet create Pods (with an empty
//! name and a generateName, as in production) and gives each namespace its default
//! ServiceAccount; its node lifecycle controller lifts the not-ready taint from the node (see the
//! `node` module) once it reports Ready, without which nothing would be scheduled there.

use anyhow::anyhow;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dbbind::tls::generate::{PemPair, SubjectNames, issue_serving, new_ca};
use time::OffsetDateTime;

use crate::Result;
use crate::process::Daemon;
use crate::tools::{self, free_port};

const ADMIN_TOKEN: &str = "dbbind-e2e-admin-token";

pub struct ControlPlane {
    pub dir: tools::RunDir,
    pub kubeconfig: PathBuf,
    pub server: String,
    pub ca: PemPair,
    bin: PathBuf,
    // Dropped in reverse order of start: the controller manager first, etcd last.
    controller_manager: Daemon,
    apiserver: Daemon,
    /// The API server's arguments, for a restart on the same port.
    apiserver_args: Vec<String>,
    etcd: Daemon,
}

impl ControlPlane {
    /// Starts everything on loopback and waits until the API server is ready and serves
    /// OpenAPI: a control plane without a node.
    pub fn start() -> Result<ControlPlane> {
        ControlPlane::start_at(Ipv4Addr::LOCALHOST)
    }

    /// The same, with the API server listening on `address` (the node's pod network bridge, so
    /// pods reach it) and sending webhook calls to a Service's endpoints rather than its
    /// ClusterIP (`--enable-aggregator-routing`; see [`crate::network`]).
    pub fn start_for_node(network: &crate::network::PodNetwork) -> Result<ControlPlane> {
        ControlPlane::start_at(network.gateway)
    }

    fn start_at(address: Ipv4Addr) -> Result<ControlPlane> {
        let bin = tools::k8s_bin_dir()?;
        let dir = tools::run_dir("dbbind-e2e-")?;
        let path = |name: &str| dir.path().join(name);

        let now = OffsetDateTime::now_utc();
        let day = Duration::from_secs(86_400);
        let ca = new_ca("dbbind e2e cluster CA", day, now).map_err(|e| anyhow!("{e}"))?;
        let names = SubjectNames {
            dns: [
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ]
            .map(String::from)
            .to_vec(),
            ips: vec![
                Ipv4Addr::LOCALHOST.into(),
                address.into(),
                crate::network::KUBERNETES_SERVICE_IP
                    .parse()
                    .map_err(|_| anyhow!("ip"))?,
            ],
        };
        let serving = issue_serving(&ca, &names, day, now).map_err(|e| anyhow!("{e}"))?;
        let service_account = rcgen::KeyPair::generate().map_err(|e| anyhow!("{e}"))?;
        write(&path("ca.crt"), &ca.cert_pem)?;
        write(&path("apiserver.crt"), &serving.cert_pem)?;
        write(&path("apiserver.key"), &serving.key_pem)?;
        write(&path("sa.key"), &service_account.serialize_pem())?;
        write(&path("sa.pub"), &service_account.public_key_pem())?;
        write(
            &path("tokens.csv"),
            &format!("{ADMIN_TOKEN},admin,admin,\"system:masters\"\n"),
        )?;

        let etcd_port = free_port()?;
        let etcd_peer = free_port()?;
        let mut etcd = Command::new(tools::etcd()?);
        etcd.args([
            "--name=e2e".to_owned(),
            format!("--data-dir={}", path("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-cluster=e2e=http://127.0.0.1:{etcd_peer}"),
            "--log-level=warn".to_owned(),
        ]);
        let etcd = Daemon::start("etcd", etcd, dir.path())?;

        let port = free_port()?;
        let server = format!("https://{address}:{port}");
        let apiserver_args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            format!("--bind-address={address}"),
            format!("--advertise-address={address}"),
            // Webhooks registered by Service are called at an endpoint's address (read in
            // kube-apiserver's buildServiceResolver: the EndpointSlices' ready endpoints, one
            // picked at random per new connection), never at a ClusterIP nothing routes here.
            "--enable-aggregator-routing=true".to_owned(),
            // `kubectl logs` and `exec` reach the kubelet at the node's address (the pod
            // network's bridge), never by its host name, which only the machine's resolver
            // would be asked for.
            "--kubelet-preferred-address-types=InternalIP".to_owned(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", path("apiserver-certs").display()),
            format!("--tls-cert-file={}", path("apiserver.crt").display()),
            format!("--tls-private-key-file={}", path("apiserver.key").display()),
            format!("--client-ca-file={}", path("ca.crt").display()),
            format!("--token-auth-file={}", path("tokens.csv").display()),
            "--authorization-mode=RBAC".to_owned(),
            "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
            format!("--service-account-key-file={}", path("sa.pub").display()),
            format!(
                "--service-account-signing-key-file={}",
                path("sa.key").display()
            ),
            format!(
                "--service-cluster-ip-range={}",
                crate::network::SERVICE_CIDR
            ),
            "--v=1".to_owned(),
        ];
        let mut apiserver = Command::new(bin.join("kube-apiserver"));
        apiserver.args(&apiserver_args);
        let apiserver = Daemon::start("kube-apiserver", apiserver, dir.path())?;

        let kubeconfig = path("admin.kubeconfig");
        write(&kubeconfig, &kubeconfig_yaml(&server, &ca.cert_pem))?;
        let mut plane = ControlPlane {
            kubeconfig: kubeconfig.clone(),
            server,
            ca,
            bin,
            controller_manager: Daemon::start(
                "kube-controller-manager-placeholder",
                Command::new("true"),
                dir.path(),
            )?,
            apiserver,
            apiserver_args,
            etcd,
            dir,
        };
        plane.wait_ready()?;

        let mut controller_manager = Command::new(plane.bin.join("kube-controller-manager"));
        let kubeconfig_arg = kubeconfig.display().to_string();
        controller_manager.args([
            format!("--kubeconfig={kubeconfig_arg}"),
            format!("--authentication-kubeconfig={kubeconfig_arg}"),
            format!("--authorization-kubeconfig={kubeconfig_arg}"),
            format!(
                "--service-account-private-key-file={}",
                plane.dir.path().join("sa.key").display()
            ),
            format!(
                "--root-ca-file={}",
                plane.dir.path().join("ca.crt").display()
            ),
            "--leader-elect=false".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={}", free_port()?),
            format!(
                "--cert-dir={}",
                plane.dir.path().join("kcm-certs").display()
            ),
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route"
                .to_owned(),
        ]);
        plane.controller_manager = Daemon::start(
            "kube-controller-manager",
            controller_manager,
            plane.dir.path(),
        )?;
        // The controller manager is up once it has given "default" its ServiceAccount.
        plane.wait_for_default_service_account("default")?;
        Ok(plane)
    }

    /// Waits (at start-up, blocking) until the controller manager has made `namespace`'s
    /// default ServiceAccount, which its pods need.
    pub fn wait_for_default_service_account(&mut self, namespace: &str) -> Result<()> {
        self.wait_for(
            &format!("the default ServiceAccount in {namespace}"),
            Duration::from_secs(60),
            |plane| plane.kubectl_ok(&["get", "serviceaccount", "default", "-n", namespace]),
        )
    }

    /// Kills the API server (SIGKILL, as a crash would) and waits for it to exit.
    pub fn kill_apiserver(&mut self) {
        self.apiserver.stop();
    }

    /// Starts the API server again, with the same arguments and port, and waits until it is
    /// ready. Its log goes to `kube-apiserver-<generation>.log`.
    pub fn start_apiserver_again(&mut self, generation: u32) -> Result<()> {
        let mut apiserver = Command::new(self.bin.join("kube-apiserver"));
        apiserver.args(&self.apiserver_args);
        self.apiserver = Daemon::start(
            &format!("kube-apiserver-{generation}"),
            apiserver,
            self.dir.path(),
        )?;
        self.wait_ready()
    }

    /// Pauses etcd (SIGSTOP): the API server stays up, and every read or write it sends to etcd
    /// hangs.
    pub fn pause_etcd(&self) -> Result<()> {
        self.etcd.signal("STOP")
    }

    /// Resumes a paused etcd (SIGCONT).
    pub fn resume_etcd(&self) -> Result<()> {
        self.etcd.signal("CONT")
    }

    fn wait_ready(&mut self) -> Result<()> {
        self.wait_for("kube-apiserver /readyz", Duration::from_secs(90), |plane| {
            plane.kubectl_ok(&["get", "--raw", "/readyz"])
        })?;
        // A Go toolchain newer than the release's once produced an API server whose
        // /openapi/v2 was broken, and kubectl apply then failed: check it here.
        let openapi = self.kubectl(&["get", "--raw", "/openapi/v2"]).output()?;
        if !openapi.status.success() || !openapi.stdout.starts_with(b"{") {
            return Err(anyhow!(
                "kube-apiserver serves no valid /openapi/v2: {}",
                String::from_utf8_lossy(&openapi.stderr)
            ));
        }
        Ok(())
    }

    fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&ControlPlane) -> bool,
    ) -> Result<()> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            self.apiserver.check_running()?;
            self.controller_manager.check_running().ok();
            if ready(self) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(anyhow!(
            "{what} not ready after {timeout:?}; kube-apiserver log:\n{}\nkube-controller-manager log:\n{}",
            self.apiserver.log_tail(20),
            self.controller_manager.log_tail(20)
        ))
    }

    /// kubectl of the pinned version, with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.bin.join("kubectl"));
        command
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args);
        command
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> bool {
        self.kubectl(args)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Runs kubectl; fails with its stderr when kubectl fails.
    pub fn kubectl_run(&self, args: &[&str], stdin: Option<&str>) -> Result<KubectlOutput> {
        let output = self.kubectl_outcome(args, stdin)?;
        if !output.success {
            return Err(anyhow!(
                "kubectl {}: {}",
                args.join(" "),
                output.stderr.trim_end()
            ));
        }
        Ok(output)
    }

    /// Runs kubectl and returns what it did, success or not: for a check that expects a
    /// refusal. Fails only when kubectl cannot be run.
    pub fn kubectl_outcome(&self, args: &[&str], stdin: Option<&str>) -> Result<KubectlOutput> {
        use std::io::Write;
        let mut command = self.kubectl(args);
        command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn()?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.unwrap_or_default().as_bytes())?;
        }
        let output = child.wait_with_output()?;
        Ok(KubectlOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// A kube client with the admin credentials.
    pub async fn client(&self) -> Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .map_err(|e| anyhow!("kubeconfig: {e}"))?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| anyhow!("kubeconfig: {e}"))?;
        Ok(kube::Client::try_from(config)?)
    }

    /// The API server's address and port.
    pub fn address(&self) -> Result<(String, u16)> {
        let host_port = self.server.trim_start_matches("https://");
        let (host, port) = host_port
            .rsplit_once(':')
            .ok_or_else(|| anyhow!("no port in {}", self.server))?;
        let port = port
            .parse()
            .map_err(|_| anyhow!("bad port in {}", self.server))?;
        Ok((host.to_owned(), port))
    }

    pub fn apiserver_log(&self) -> String {
        self.apiserver.log_text()
    }
}

pub struct KubectlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

fn kubeconfig_yaml(server: &str, ca_pem: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    token: {ADMIN_TOKEN}
contexts:
- name: e2e
  context: {{cluster: e2e, user: admin}}
current-context: e2e
",
        ca = STANDARD.encode(ca_pem)
    )
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| anyhow!("{}: {e}", path.display()))
}
