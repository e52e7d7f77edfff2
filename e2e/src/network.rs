//! Pod networking for the node, made by the test bed itself and kept on this machine: a Linux
//! bridge with a /24 of its own, the CNI `bridge` and `host-local` plugins from Debian's
//! `containernetworking-plugins` putting each pod in a network namespace with a veth on it, and
//! a safety net for the Service range.
//!
//! - The bridge's address is the host's side of the pod network. The API server listens on it
//!   (pods reach it there, and so does everything on the host), and the kubelet reports it as
//!   the node's address. Pods get no gateway and no default route: the only addresses a pod can
//!   reach are on the bridge, so nothing a pod sends can leave the machine. No forwarding,
//!   masquerading or iptables rule is needed, so none is made (`isGateway: false`).
//! - No kube-proxy: the API server sends webhook calls to a Service's endpoint addresses
//!   (`--enable-aggregator-routing`), and dbbind's pods are pointed at the API server by
//!   address, as kube-proxy-free clusters do. A ClusterIP is then routed by nothing here, and a
//!   packet to one would leave through the machine's default route. So the Service range gets
//!   an `unreachable` route for the test bed's lifetime: a connection to a ClusterIP fails at
//!   once with "no route to host".
//!
//! Each test bed claims its own bridge `dbbind<N>` and subnet `10.244.<N>.0/24`, so two can run
//! at once (the demo beside a test run); its route to the Service range has a metric of its
//! own, so each removes only what it added. [`PodNetwork::teardown`] removes all of it, also
//! from the signal handler (see [`crate::process`]).

use anyhow::anyhow;
use std::net::Ipv4Addr;
use std::process::Command;

use crate::Result;

/// The API server's `--service-cluster-ip-range`: routed nowhere but into the safety net.
pub const SERVICE_CIDR: &str = "10.0.0.0/24";
/// The first address of the Service range, the `kubernetes` Service's ClusterIP.
pub const KUBERNETES_SERVICE_IP: &str = "10.0.0.1";

/// The bridge, its subnet, and the route that keeps the Service range on the machine; removed
/// when dropped, or by the signal handler.
pub struct PodNetwork {
    /// `dbbind<N>`.
    pub bridge: String,
    /// `10.244.<N>.0/24`.
    pub subnet: String,
    /// `10.244.<N>.1`, the bridge's address: the node's and the API server's.
    pub gateway: Ipv4Addr,
    claim: Claim,
    _on_signal: crate::process::SignalCleanup,
}

/// What a test bed added to the machine's network, to take it away again.
#[derive(Clone, Debug)]
struct Claim {
    bridge: String,
    /// The metric of this test bed's `unreachable` route for [`SERVICE_CIDR`].
    metric: u32,
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        self.claim.teardown();
    }
}

impl PodNetwork {
    /// Claims the first free `dbbind<N>` (the bridge's creation is the claim: it fails if
    /// another test bed has it), gives it its address, and puts the safety net in place.
    pub fn create() -> Result<PodNetwork> {
        for n in 1..=250u8 {
            let bridge = format!("dbbind{n}");
            let subnet = format!("10.244.{n}.0/24");
            let gateway = Ipv4Addr::new(10, 244, n, 1);
            // A subnet something else on the machine routes is not ours to use.
            let routed = output(
                "ip",
                &["-4", "route", "show", "to", "match", &gateway.to_string()],
            )?;
            if routed.lines().any(|line| !line.starts_with("default")) {
                continue;
            }
            if !ip(&["link", "add", "name", &bridge, "type", "bridge"]).is_ok_and(|ok| ok) {
                continue;
            }
            let claim = Claim {
                bridge: bridge.clone(),
                metric: 4_000 + u32::from(n),
            };
            let on_signal = {
                let claim = claim.clone();
                crate::process::on_signal(move || claim.teardown())
            };
            let network = PodNetwork {
                bridge,
                subnet,
                gateway,
                claim,
                _on_signal: on_signal,
            };
            network.configure()?;
            return Ok(network);
        }
        Err(anyhow!(
            "no free pod network: bridges dbbind1 to dbbind250 all exist (`ip link` lists them; a test bed that was killed leaves its bridge: `ip link del dbbindN`)"
        ))
    }

    fn configure(&self) -> Result<()> {
        let address = format!("{}/24", self.gateway);
        let metric = self.claim.metric.to_string();
        for args in [
            vec!["addr", "add", &address, "dev", &self.bridge],
            vec!["link", "set", &self.bridge, "up"],
            vec![
                "route",
                "add",
                "unreachable",
                SERVICE_CIDR,
                "metric",
                &metric,
            ],
        ] {
            if !ip(&args)? {
                return Err(anyhow!("ip {} failed", args.join(" ")));
            }
        }
        Ok(())
    }

    /// The CNI network configuration (a conflist) for the node's containerd: the bridge, an
    /// address from host-local (its state under `data_dir`), the routes only the subnet's own,
    /// and loopback inside the pod.
    pub fn cni_conflist(&self, data_dir: &std::path::Path) -> String {
        let prefix = self.subnet.trim_end_matches(".0/24");
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("dbbind-e2e-{}", self.bridge),
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    // The bridge already has its address; no gateway, no masquerading, no
                    // forwarding: pods reach the bridge's subnet and nothing else.
                    "isGateway": false,
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": data_dir,
                        "ranges": [[{
                            "subnet": self.subnet,
                            "rangeStart": format!("{prefix}.10"),
                            "rangeEnd": format!("{prefix}.250"),
                        }]],
                        "routes": [],
                    },
                },
                {"type": "loopback"},
            ],
        })
        .to_string()
    }
}

impl Claim {
    /// Removes the route and the bridge. Veths die with their pods' network namespaces (see
    /// the node module); any left on the bridge are removed here too.
    pub fn teardown(&self) {
        let metric = self.metric.to_string();
        let _ = ip(&[
            "route",
            "del",
            "unreachable",
            SERVICE_CIDR,
            "metric",
            &metric,
        ]);
        if let Ok(listed) = output("ip", &["-o", "link", "show", "master", &self.bridge]) {
            for line in listed.lines() {
                // `12: veth1234@if2: <...> ...`
                if let Some(name) = line.split(':').nth(1) {
                    let name = name.trim().split('@').next().unwrap_or_default();
                    let _ = ip(&["link", "del", name]);
                }
            }
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// Runs `ip` quietly; whether it succeeded.
fn ip(args: &[&str]) -> Result<bool> {
    Ok(Command::new("ip")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| anyhow!("cannot run ip (Debian's iproute2): {e}"))?
        .success())
}

fn output(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| anyhow!("cannot run {program}: {e}"))?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
