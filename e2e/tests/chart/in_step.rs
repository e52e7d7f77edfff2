//! What must stay in step with the chart: the plain manifests and the README's install commands.

use super::*;

/// webhook-config/ holds the chart's objects (certificates.mode=secret, release dbbind in
/// namespace dbbind) as plain manifests; only Helm's bookkeeping labels and the caBundle differ.
#[test]
fn the_plain_manifests_are_in_step_with_the_chart() {
    let chart = render(&[
        "certificates.mode=secret",
        "certificates.secret.name=dbbind-tls",
        "certificates.secret.caBundle=PLACEHOLDER",
    ])
    .unwrap();
    let dir = repo_root().join("webhook-config");
    let kustomization: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    // Helm's hooks (the test, the uninstall's unregister) are Helm's own; plain manifests have
    // no install or uninstall to hook into.
    let chart: Vec<Value> = chart
        .into_iter()
        .filter(|object| object["metadata"]["annotations"]["helm.sh/hook"].is_null())
        .collect();
    let mut plain = Vec::new();
    for file in kustomization["resources"].as_array().unwrap() {
        plain.extend(yaml_documents(
            &std::fs::read_to_string(dir.join(file.as_str().unwrap())).unwrap(),
        ));
    }
    let normalize = |object: &Value| {
        let mut object = object.clone();
        object["metadata"].as_object_mut().unwrap().remove("labels");
        object["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        for webhook in object["webhooks"].as_array_mut().into_iter().flatten() {
            webhook["clientConfig"]
                .as_object_mut()
                .unwrap()
                .remove("caBundle");
        }
        object
    };
    for object in &chart {
        let (kind, name) = (
            object["kind"].as_str().unwrap(),
            object["metadata"]["name"].as_str().unwrap(),
        );
        let counterpart = plain
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name);
        let counterpart =
            counterpart.unwrap_or_else(|| panic!("webhook-config/ lacks {kind} {name}"));
        assert_eq!(
            normalize(counterpart),
            normalize(object),
            "{kind} {name} differs from the chart"
        );
    }
    assert_eq!(
        plain.len(),
        chart.len() + 1,
        "the chart's objects and the Namespace"
    );
}

/// The README's install path is the suite's: the image tag it builds is the one the chart pulls
/// (its appVersion) and the node's image carries, and its `helm install` line is the one the
/// suite runs (which adds only where the API server is, for its kube-proxy-free network).
#[test]
fn the_readmes_install_commands_are_what_the_suite_runs() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let version = dbbind_e2e::tools::chart_app_version().unwrap();
    let build = format!("docker build -t dbbind:{version} .");
    assert!(readme.contains(&build), "README lacks `{build}`");
    let install = format!("helm {}", dbbind_e2e::release::INSTALL.join(" "));
    assert!(readme.contains(&install), "README lacks `{install}`");
    for line in [
        "kubectl create namespace shop",
        "kubectl label namespace shop dbbind.io/inject=enabled",
    ] {
        assert!(readme.contains(line), "README lacks `{line}`");
    }
    let objects = render(&[]).unwrap();
    let image = find(&objects, "Deployment", "dbbind")["spec"]["template"]["spec"]["containers"][0]
        ["image"]
        .clone();
    assert_eq!(image, format!("dbbind:{version}"));
    assert_eq!(
        dbbind_e2e::image::dbbind_images(&version)[0],
        format!("docker.io/library/dbbind:{version}"),
        "the node's image is what containerd makes of the chart's reference"
    );
}
