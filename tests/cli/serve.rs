//! `dbbind certs`, and `dbbind serve`'s start-up failure path.

use std::os::unix::fs::PermissionsExt;

use dbbind::tls::ServingCert;

use crate::dbbind;

#[test]
fn certs_writes_a_ca_and_a_serving_pair_for_the_service() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path().join("certs");
    let run = dbbind(
        &[
            "certs",
            "--service-name",
            "dbbind",
            "--namespace",
            "platform",
            "--out-dir",
            dir.to_str().unwrap(),
            "--extra-ip-addresses",
            "127.0.0.1",
            "--extra-dns-names",
            "dbbind.example.com,dbbind.example.org",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("tls.key"), "{}", run.stdout);
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let mode = std::fs::metadata(dir.join("tls.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    ServingCert::from_pem(&read("tls.crt"), &read("tls.key")).unwrap();

    let (_, leaf) = x509_parser::pem::parse_x509_pem(&read("tls.crt")).unwrap();
    let leaf = leaf.parse_x509().unwrap();
    let (_, ca) = x509_parser::pem::parse_x509_pem(&read("ca.crt")).unwrap();
    let ca = ca.parse_x509().unwrap();
    leaf.verify_signature(Some(ca.public_key())).unwrap();
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(ToString::to_string)
        .collect();
    for expected in [
        "DNSName(dbbind)",
        "DNSName(dbbind.platform)",
        "DNSName(dbbind.platform.svc)",
        "DNSName(dbbind.platform.svc.cluster.local)",
        "DNSName(dbbind.example.com)",
        "DNSName(dbbind.example.org)",
        "IPAddress(7f:00:00:01)",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
}

#[test]
fn certs_spells_shared_flags_as_serve_does_and_keeps_the_old_spellings_hidden() {
    use clap::CommandFactory;
    let command = dbbind::cli::Cli::command();
    let long_flags = |name: &str| -> Vec<String> {
        command
            .find_subcommand(name)
            .unwrap()
            .get_arguments()
            .filter_map(|arg| arg.get_long().map(str::to_owned))
            .collect()
    };
    let serve = long_flags("serve");
    for flag in [
        "service-name",
        "namespace",
        "extra-dns-names",
        "extra-ip-addresses",
    ] {
        assert!(
            long_flags("certs").contains(&flag.to_owned()),
            "certs --{flag}"
        );
        assert!(serve.contains(&flag.to_owned()), "serve --{flag}");
    }

    let help = dbbind(&["certs", "--help"], "").stdout;
    for old in ["--service ", "--extra-dns-name ", "--ip-address "] {
        assert!(!help.contains(old), "{old} is hidden:\n{help}");
    }
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path().join("certs");
    let run = dbbind(
        &[
            "certs",
            "--service",
            "legacy",
            "--ip-address",
            "127.0.0.1",
            "--extra-dns-name",
            "legacy.example.com",
            "--out-dir",
            dir.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (_, leaf) =
        x509_parser::pem::parse_x509_pem(&std::fs::read(dir.join("tls.crt")).unwrap()).unwrap();
    let leaf = leaf.parse_x509().unwrap();
    let names = format!(
        "{:?}",
        leaf.subject_alternative_name().unwrap().unwrap().value
    );
    assert!(
        names.contains("legacy.dbbind.svc") && names.contains("legacy.example.com"),
        "{names}"
    );
}

#[test]
fn serve_without_a_cluster_fails_with_a_json_log_line() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dbbind"))
        .args([
            "serve",
            "--log-format",
            "json",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "ERROR");
    assert_eq!(last["message"], "dbbind serve failed");
}

#[test]
fn a_bad_log_filter_is_refused() {
    let run = dbbind(&["serve", "--log-level", "dbbind=loud"], "");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .starts_with("Error: invalid log filter \"dbbind=loud\""),
        "{}",
        run.stderr
    );
}

/// A kubeconfig whose API server refuses connections: `serve` starts (the client connects
/// lazily), its watch retries in the background, and nothing here needs a cluster.
fn unreachable_kubeconfig(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        r#"apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: from-kubeconfig}}]
current-context: x
"#,
    )
    .unwrap();
    path
}

/// `dbbind serve` with JSON logs; its log lines arrive on the returned channel.
fn start_serve(
    args: &[&str],
    kubeconfig: &std::path::Path,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<serde_json::Value>,
) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dbbind"))
        .args(["serve", "--log-format", "json"])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(value) = serde_json::from_str(&line) {
                let _ = send.send(value);
            }
        }
    });
    (child, lines)
}

/// Waits for a log line whose message is `message`.
fn wait_for_log(
    lines: &std::sync::mpsc::Receiver<serde_json::Value>,
    message: &str,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line["message"] == message => return line,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no log line {message:?}");
}

fn signal(child: &std::process::Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut std::process::Child) -> Option<i32> {
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("dbbind serve did not exit");
}

/// `dbbind serve` with certificates `dbbind certs` wrote into `dir`, against an API server
/// that refuses, with these extra flags.
fn serve_with_certificate_files(
    dir: &std::path::Path,
    flags: &[&str],
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<serde_json::Value>,
) {
    let certs = dir.join("certs");
    let made = dbbind(&["certs", "--out-dir", certs.to_str().unwrap()], "");
    assert_eq!(made.code, 0, "{}", made.stderr);
    let kubeconfig = unreachable_kubeconfig(dir);
    let (cert, key) = (certs.join("tls.crt"), certs.join("tls.key"));
    let mut args = vec![
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
    ];
    args.extend(flags);
    start_serve(&args, &kubeconfig)
}

#[test]
fn a_second_signal_during_the_drain_exits_at_once_with_130() {
    let temporary = tempfile::tempdir().unwrap();
    let (mut child, lines) =
        serve_with_certificate_files(temporary.path(), &["--shutdown-drain", "60s"]);
    wait_for_log(&lines, "serving");
    signal(&child, "TERM");
    wait_for_log(&lines, "shutting down: readiness is false, draining");
    signal(&child, "INT");
    assert_eq!(wait_exit(&mut child), Some(130), "not the 60 s drain");
    wait_for_log(
        &lines,
        "second signal: exited without waiting for in-flight requests",
    );
}

#[test]
fn self_managed_certificates_default_to_the_kubeconfig_namespace_outside_a_pod() {
    let temporary = tempfile::tempdir().unwrap();
    let kubeconfig = unreachable_kubeconfig(temporary.path());
    let (mut child, lines) = start_serve(&[], &kubeconfig);
    let line = wait_for_log(&lines, "self-managed certificates");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(line["namespace"], "from-kubeconfig", "{line}");
}

/// With restart on rotation and an API server that refuses: the Lease is in the kubeconfig's
/// namespace, joining it is retried with a warning, and admission serving is not held up.
#[test]
fn restart_on_rotation_retries_the_election_without_holding_up_serving() {
    let temporary = tempfile::tempdir().unwrap();
    let (mut child, lines) =
        serve_with_certificate_files(temporary.path(), &["--restart-on-rotation"]);
    let started = wait_for_log(
        &lines,
        "restart on rotation: workloads that opt in are rolled when a Secret they read through env changes",
    );
    assert_eq!(started["lease"], "from-kubeconfig/dbbind-rotation");
    wait_for_log(&lines, "serving");
    let retried = wait_for_log(&lines, "cannot join the rotation leader election; retrying");
    assert_eq!(retried["level"], "WARN");
    assert!(child.try_wait().unwrap().is_none(), "serve exited");
    let _ = child.kill();
    let _ = child.wait();

    // The chart sets the flag through its variable: only true or false.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_dbbind"))
        .arg("serve")
        .env("DBBIND_RESTART_ON_ROTATION", "yes please")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("invalid value 'yes please' for '--restart-on-rotation'"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
