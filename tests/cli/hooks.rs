//! `dbbind selftest` and `dbbind unregister`, the chart's hooks, without a cluster to talk to:
//! a clear error and exit 1, nothing on stdout. (Against a real cluster they run in the
//! end-to-end suite, as `helm test` and as `helm uninstall`'s pre-delete hook.)

use std::process::Command;

fn without_a_cluster(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_dbbind"))
        .args(args)
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn selftest_without_a_cluster_fails_with_the_reason() {
    let (code, stdout, stderr) = without_a_cluster(&["selftest", "--timeout", "1s"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with("Error: cannot configure the Kubernetes client"),
        "{stderr}"
    );
}

#[test]
fn unregister_without_a_cluster_fails_with_the_reason() {
    let (code, stdout, stderr) = without_a_cluster(&["unregister"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with("Error: cannot configure the Kubernetes client"),
        "{stderr}"
    );
}
