//! The live demo: a real control plane and a real node (kubelet, containerd, runc) on this
//! machine, dbbind installed the way users install it (`helm install` of the chart, its image,
//! two replicas as pods behind its Service), every example applied, and for each one the pod's
//! phase, the variables and files its container saw, and PostgreSQL's own word that an
//! unmodified client (Debian's psql) connected with them.
//!
//!   cargo run -p dbbind-e2e --bin demo                  run, report, tear down
//!   cargo run -p dbbind-e2e --bin demo -- --keep        and keep it running (Ctrl-C ends it)
//!   cargo run -p dbbind-e2e --bin demo -- --only cnpg   only these examples (comma separated)

use anyhow::anyhow;
use std::process::ExitCode;

use dbbind_e2e::Result;
use dbbind_e2e::scenarios::{self, Environment, SCENARIOS};
use serde_json::json;

/// What a user sees at `kubectl apply` of a Deployment with a typo in its template, and of one
/// whose Secret is not there yet.
fn feedback(environment: &Environment) -> Result<()> {
    let namespace = "demo-feedback";
    scenarios::opted_in_namespace(&environment.plane, namespace)?;
    let deployment = |name: &str, annotations: serde_json::Value| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "registry.example.com/orders:1.0"}]}}},
        })
        .to_string()
    };
    println!("## feedback at kubectl apply (namespace {namespace})");
    let cases = [
        (
            "a typo in the profile",
            deployment(
                "orders2",
                json!({"dbbind.io/secret": "orders-db", "dbbind.io/profile": "cnpgg"}),
            ),
            false,
        ),
        (
            "a Secret applied later",
            deployment(
                "orders3",
                json!({"dbbind.io/secret": "orders-db", "dbbind.io/profile": "generic"}),
            ),
            true,
        ),
    ];
    for (what, manifest, accepted) in cases {
        println!("{what}: $ kubectl apply -n {namespace} -f deployment.yaml");
        let output = environment
            .plane
            .kubectl_outcome(&["apply", "-n", namespace, "-f", "-"], Some(&manifest))?;
        // kubectl prints warnings (stderr) before the result (stdout).
        for line in output.stderr.lines().chain(output.stdout.lines()) {
            println!("  {line}");
        }
        if output.success != accepted {
            return Err(anyhow!(
                "{what}: kubectl apply succeeded: {}",
                output.success
            ));
        }
    }
    // The accepted Deployment's pods are warned too; the warning shows on their ReplicaSet.
    println!("its ReplicaSet: $ kubectl events -n {namespace}");
    let started = std::time::Instant::now();
    loop {
        let events = environment
            .plane
            .kubectl_run(&["events", "-n", namespace], None)?;
        let lines: Vec<&str> = events
            .stdout
            .lines()
            .filter(|line| line.starts_with("LAST SEEN") || line.contains("BindingWarning"))
            .collect();
        if lines.len() > 1 {
            for line in lines {
                println!("  {line}");
            }
            break;
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            return Err(anyhow!("no BindingWarning Event on the ReplicaSet"));
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    println!();
    Ok(())
}

/// How dbbind was installed, as a user would see it.
fn installed(environment: &Environment) -> Result<()> {
    println!("## dbbind, installed with its chart");
    // Quoted for a shell: the JSON value has quotes and brackets.
    let values: Vec<String> = environment
        .dbbind
        .values
        .iter()
        .map(|value| {
            if value.starts_with("--") {
                value.clone()
            } else {
                format!("'{value}'")
            }
        })
        .collect();
    println!(
        "$ helm {} {}",
        dbbind_e2e::release::INSTALL.join(" "),
        values.join(" ")
    );
    println!(
        "  (extraEnv: where dbbind's pods reach the API server; this test bed has no kube-proxy)"
    );
    println!("$ kubectl -n dbbind get pods -o wide");
    let pods = environment
        .plane
        .kubectl_run(&["-n", "dbbind", "get", "pods", "-o", "wide"], None)?;
    for line in pods.stdout.lines() {
        println!("  {line}");
    }
    println!();
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let keep = args.iter().any(|arg| arg == "--keep");
    let only: Option<Vec<String>> = args
        .iter()
        .position(|arg| arg == "--only")
        .and_then(|at| args.get(at + 1))
        .map(|names| names.split(',').map(str::to_owned).collect());
    dbbind_e2e::process::stop_all_on_signal();
    eprintln!(
        "==> starting etcd, kube-apiserver, kube-controller-manager, a node (containerd, kubelet, kube-scheduler; built on first use) on a pod network of its own, PostgreSQL, and dbbind with `helm install`"
    );
    let environment = match Environment::start() {
        Ok(environment) => environment,
        Err(error) => {
            eprintln!("the demo environment did not start: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "==> test bed: control plane {}, node {}, pod network {} on bridge {}",
        environment.plane.dir.path().display(),
        environment.node.dir.path().display(),
        environment.network.subnet,
        environment.network.bridge
    );
    eprintln!(
        "==> dbbind is the cluster's mutating webhook; applying examples/ into opted-in namespaces\n"
    );
    if let Err(error) = installed(&environment) {
        eprintln!("cannot show the installation: {error}");
    }
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        return ExitCode::FAILURE;
    };
    let mut failed = 0;
    let scenarios: Vec<_> = SCENARIOS
        .iter()
        .filter(|scenario| {
            only.as_ref()
                .is_none_or(|only| only.iter().any(|n| n == scenario.name))
        })
        .collect();
    for scenario in &scenarios {
        let report = runtime.block_on(async {
            let client = environment.plane.client().await?;
            scenarios::run(&environment, &client, scenario).await
        });
        println!("## {} (examples/{}.yaml)", scenario.name, scenario.name);
        match report {
            Ok(report) => {
                println!(
                    "pod {} is {} on the node; its app container received:",
                    report.pod, report.phase
                );
                for variable in &report.variables {
                    println!("  {variable}");
                }
                for file in &report.files {
                    println!("  file {file}");
                }
                for connection in &report.connections {
                    println!("  {connection}");
                }
            }
            Err(error) => {
                failed += 1;
                println!("  FAILED: {error}");
            }
        }
        println!();
    }
    println!(
        "{} of {} scenarios running and connected",
        scenarios.len() - failed,
        scenarios.len()
    );
    println!();
    if let Err(error) = feedback(&environment) {
        failed += 1;
        println!("  FAILED: {error}");
    }
    if keep {
        println!(
            "\nThe cluster keeps running; try:\n  {}/kubectl --kubeconfig {} get pods -A\nCtrl-C stops everything.",
            dbbind_e2e::tools::k8s_bin_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            environment.plane.kubeconfig.display()
        );
        loop {
            std::thread::park();
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
