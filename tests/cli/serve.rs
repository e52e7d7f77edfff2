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
            "--service",
            "dbbind",
            "--namespace",
            "platform",
            "--out-dir",
            dir.to_str().unwrap(),
            "--ip-address",
            "127.0.0.1",
            "--extra-dns-name",
            "dbbind.example.com",
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
        "IPAddress(7f:00:00:01)",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
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
