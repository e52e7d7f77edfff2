//! `dbbind render`: the whole patched pod for every example, exit codes, formats and errors.

use serde_json::Value;

use crate::support::repo_path;
use crate::{assert_golden, dbbind};

fn example_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_path("examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".yaml").map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[test]
fn every_example_renders_to_its_golden_pod() {
    let names = example_names();
    assert!(!names.is_empty());
    for name in &names {
        let run = dbbind(&["render", "-f", &format!("examples/{name}.yaml")], "");
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        assert_golden(&format!("tests/golden/{name}.yaml"), &run.stdout);
        assert_golden(&format!("tests/golden/{name}.stderr"), &run.stderr);
        // Only the workload is printed: Secrets are inputs, and their values stay out.
        assert!(!run.stdout.contains("kind: Secret"), "{name}");
        assert!(run.stdout.contains("dbbind.io/status: injected"), "{name}");
    }
    // And no golden render is left without its example.
    let mut goldens: Vec<String> = std::fs::read_dir(repo_path("tests/golden"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".yaml").map(str::to_owned))
        .collect();
    goldens.sort();
    assert_eq!(
        goldens, names,
        "tests/golden/ and examples/ name the same examples"
    );
}

#[test]
fn stdin_json_and_lists() {
    let manifest = std::fs::read_to_string(repo_path("examples/cnpg.yaml")).unwrap();
    let from_file = dbbind(&["render", "-f", "examples/cnpg.yaml", "-o", "json"], "");
    let from_stdin = dbbind(&["render", "-f", "-", "-o", "json"], &manifest);
    assert_eq!(from_file.code, 0);
    assert_eq!(from_file.stdout, from_stdin.stdout);
    let single: Value = serde_json::from_str(&from_stdin.stdout).unwrap();
    assert_eq!(single["kind"], "Deployment");

    // Two workloads: a v1 List of both, in input order.
    let two = format!(
        "{manifest}\n---\n{}",
        manifest.replace("name: pg-main-client", "name: pg-main-client-2")
    );
    let run = dbbind(&["render", "-f", "-", "-o", "json"], &two);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let list: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pg-main-client", "pg-main-client-2"]);
}

#[test]
fn every_pod_carrying_kind_is_rendered() {
    let pod_spec = "containers: [{name: app, image: 'app:1'}]";
    let annotations = "annotations: {dbbind.io/secret: orders-db-conn}";
    let kinds = [
        (
            "v1",
            "Pod",
            format!("metadata: {{name: p, {annotations}}}\nspec: {{{pod_spec}}}"),
            "/spec",
        ),
        (
            "apps/v1",
            "Deployment",
            format!(
                "metadata: {{name: d}}\nspec: {{template: {{metadata: {{{annotations}}}, spec: {{{pod_spec}}}}}}}"
            ),
            "/spec/template/spec",
        ),
        (
            "apps/v1",
            "StatefulSet",
            format!(
                "metadata: {{name: s}}\nspec: {{template: {{metadata: {{{annotations}}}, spec: {{{pod_spec}}}}}}}"
            ),
            "/spec/template/spec",
        ),
        (
            "apps/v1",
            "DaemonSet",
            format!(
                "metadata: {{name: ds}}\nspec: {{template: {{metadata: {{{annotations}}}, spec: {{{pod_spec}}}}}}}"
            ),
            "/spec/template/spec",
        ),
        (
            "apps/v1",
            "ReplicaSet",
            format!(
                "metadata: {{name: rs}}\nspec: {{template: {{metadata: {{{annotations}}}, spec: {{{pod_spec}}}}}}}"
            ),
            "/spec/template/spec",
        ),
        (
            "batch/v1",
            "Job",
            format!(
                "metadata: {{name: j}}\nspec: {{template: {{metadata: {{{annotations}}}, spec: {{{pod_spec}}}}}}}"
            ),
            "/spec/template/spec",
        ),
        (
            "batch/v1",
            "CronJob",
            format!(
                "metadata: {{name: c}}\nspec: {{schedule: '@daily', jobTemplate: {{spec: {{template: {{metadata: {{{annotations}}}, spec: {{{pod_spec}}}}}}}}}}}"
            ),
            "/spec/jobTemplate/spec/template/spec",
        ),
    ];
    for (api_version, kind, body, spec_pointer) in kinds {
        let manifest = format!("apiVersion: {api_version}\nkind: {kind}\n{body}\n");
        let run = dbbind(
            &[
                "render",
                "-f",
                "-",
                "-n",
                "shop",
                "--secret",
                "tests/fixtures/secrets/generic-external.yaml",
                "-o",
                "json",
            ],
            &manifest,
        );
        assert_eq!(run.code, 0, "{kind}: {}", run.stderr);
        let out: Value = serde_json::from_str(&run.stdout).unwrap();
        let env = out
            .pointer(&format!("{spec_pointer}/containers/0/env"))
            .unwrap();
        assert_eq!(env.as_array().unwrap().len(), 5, "{kind}");
    }
}

#[test]
fn a_denial_exits_1_with_the_message_and_prints_nothing() {
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    dbbind.io/secret: orders-db-conn\n    dbbind.io/port: abc\nspec:\n  containers: [{name: app, image: 'app:1'}]\n";
    let run = dbbind(&["render", "-f", "-"], manifest);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "Error: Pod/p denied: dbbind: annotation \"dbbind.io/port\": \"abc\" is not a port number (1-65535)\n"
    );
}

#[test]
fn unreadable_input_exits_2() {
    let deployment = std::fs::read_to_string(repo_path("examples/cnpg.yaml")).unwrap();
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["render", "-f", "-"],
            "kind: Pod\nmetadata: {name: [unclosed\n",
            "Error: -: not valid YAML: ",
        ),
        (
            &["render", "-f", "-"],
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
            "Error: -: no Pod or pod template (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) found\n",
        ),
        (
            &["render", "-f", "-"],
            "- just\n- a list\n",
            "Error: -: document 1: is not a Kubernetes object (a YAML mapping with kind and apiVersion)\n",
        ),
        (
            &["render", "-f", "examples/does-not-exist.yaml"],
            "",
            "Error: examples/does-not-exist.yaml: No such file or directory (os error 2)\n",
        ),
        (
            &["render", "-f", "-", "--secret", "examples/cnpg.yaml"],
            &deployment,
            "Error: examples/cnpg.yaml: document 2: is a Deployment, not a Secret\n",
        ),
        (
            &["render", "-f", "-", "-n", "prod"],
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: dev}\nspec: {containers: []}\n",
            "Error: -: document 1: is in namespace \"dev\", which does not match the namespace \"prod\" given with -n\n",
        ),
        (
            &["render", "-f", "-"],
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: 7}\n",
            "Error: -: document 1: the pod of Pod/p cannot be read: ",
        ),
        (
            &["render", "-f", "-", "-o", "toml"],
            "",
            "error: invalid value 'toml' for '--output <OUTPUT>'",
        ),
    ];
    for (args, stdin, expected) in cases {
        let run = dbbind(args, stdin);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{args:?}");
        assert!(run.stderr.starts_with(expected), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn warnings_go_to_stderr_with_the_object() {
    let run = dbbind(&["render", "-f", "examples/external-generic.yaml"], "");
    assert_eq!(
        run.stderr,
        "Warning: Deployment/orders: dbbind: binding \"db\": profile \"generic\" finds no uri, sslmode in Secret \"orders-db-conn\"; left out\n"
    );
}

/// TLS files through `render`: the CA and client certificate Secrets given with the manifest
/// are read for their shape (types, key names), and a wrong one is denied.
#[test]
fn tls_files_render_as_paths_and_a_wrong_client_certificate_is_denied() {
    let secrets = "apiVersion: v1\nkind: Secret\nmetadata: {name: orders-db}\nstringData: {host: db.example, username: app, password: pw}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: db-ca}\nstringData: {ca.crt: x, ca.key: y}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: orders-client}\ntype: kubernetes.io/tls\nstringData: {tls.crt: x, tls.key: y}\n---\n";
    let pod = |client: &str| {
        format!(
            "{secrets}apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    dbbind.io/secret: orders-db\n    dbbind.io/ca: secret:db-ca\n    dbbind.io/client-cert: {client}\n    dbbind.io/env: libpq\nspec:\n  containers: [{{name: app, image: 'app:1'}}]\n"
        )
    };
    let run = dbbind(&["render", "-f", "-", "-o", "json"], &pod("orders-client"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rendered: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let env = rendered["spec"]["containers"][0]["env"].to_string();
    for expected in [
        r#""name":"PGSSLMODE","value":"verify-full""#,
        r#""name":"PGSSLROOTCERT","value":"/bindings/db/ca.crt""#,
        r#""name":"PGSSLKEY","value":"/bindings/db/tls.key""#,
    ] {
        assert!(env.contains(expected), "{expected} in {env}");
    }
    let volume = rendered["spec"]["volumes"][0].to_string();
    assert!(!volume.contains("ca.key"), "{volume}");
    assert!(volume.contains(r#""mode":384"#), "{volume}");

    let run = dbbind(&["render", "-f", "-"], &pod("db-ca"));
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with(
            "Error: Pod/p denied: dbbind: annotation \"dbbind.io/client-cert\" names Secret \"db-ca\" of type \"Opaque\""
        ),
        "{}",
        run.stderr
    );
}
