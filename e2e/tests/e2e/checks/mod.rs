//! Behaviour beyond the scenarios, against the same live environment, one module per theme;
//! the helpers here are shared by them.

use anyhow::anyhow;
use std::time::Duration;

use dbbind_e2e::Result;
use dbbind_e2e::release::Release;
use dbbind_e2e::scenarios::{self, Environment};
use dbbind_e2e::trials::{Check, CheckFuture};
use dbbind_e2e::webhook::Dbbind;
use dbbind_e2e::workload;
use serde_json::{Value, json};

mod admission;
mod api_shapes;
mod cache;
mod events;
mod installed;
mod node;
mod rbac;
mod rotation;
mod stopped;
mod under_load;

/// Every check, in order: the chart's install first, its uninstall last but one; the last
/// starts dbbind as a process beside the cluster to watch it stop.
pub fn all() -> Vec<Check<Environment>> {
    let check = |name: &str, run: fn(&mut Environment) -> CheckFuture<'_>| {
        Check::new(format!("check::{name}"), run)
    };
    vec![
        check(
            "the_chart_serves_from_its_own_pods_behind_its_service",
            |e| Box::pin(installed::serves_from_its_own_pods(e)),
        ),
        check("an_unlabelled_namespace_is_untouched", |e| {
            Box::pin(admission::unlabelled_namespace(e))
        }),
        check(
            "only_opted_in_namespaces_secrets_are_cached_from_the_moment_they_opt_in",
            |e| Box::pin(cache::cache_scope(e)),
        ),
        check("an_opted_out_pod_is_untouched", |e| {
            Box::pin(admission::opted_out_pod(e))
        }),
        check("a_pod_without_annotations_never_reaches_dbbind", |e| {
            Box::pin(admission::plain_pod(e))
        }),
        check("kubectl_shows_warnings_and_denials", |e| {
            Box::pin(admission::kubectl_messages(e))
        }),
        check("kubectl_apply_checks_workload_templates", |e| {
            Box::pin(admission::workload_templates(e))
        }),
        check(
            "a_controller_made_pods_warning_is_an_event_on_its_owner",
            |e| Box::pin(events::owner_events(e)),
        ),
        check("a_server_side_dry_run_is_patched_and_leaves_nothing", |e| {
            Box::pin(admission::dry_run(e))
        }),
        check(
            "a_secret_created_after_its_deployment_starts_the_pod_once_whole",
            |e| Box::pin(node::secret_later(e)),
        ),
        check(
            "every_driver_connects_with_a_plain_and_a_reserved_character_password",
            |e| Box::pin(node::every_driver(e)),
        ),
        check(
            "tls_to_the_database_verifies_the_server_and_logs_in_by_certificate",
            |e| Box::pin(node::tls_to_the_database(e)),
        ),
        check("an_endpoint_role_reaches_the_roles_service", |e| {
            Box::pin(node::endpoint_role(e))
        }),
        check(
            "a_non_root_app_reads_its_files_with_and_without_fs_group",
            |e| Box::pin(node::file_modes(e)),
        ),
        check(
            "a_rotated_password_rolls_the_opted_in_deployment_once_and_nothing_else",
            |e| Box::pin(rotation::restart_on_rotation(e)),
        ),
        check(
            "admission_review_fixtures_have_the_api_servers_shape",
            |e| Box::pin(api_shapes::captured_reviews(e)),
        ),
        check(
            "every_chart_mode_and_webhook_config_pass_server_side_validation",
            |e| Box::pin(api_shapes::server_side_validation(e)),
        ),
        check(
            "the_charts_rotation_rbac_grants_the_controllers_calls_and_no_more",
            |e| Box::pin(rbac::rotation_rbac(e)),
        ),
        check(
            "an_upgrade_under_load_fails_no_create_and_keeps_the_certificates",
            |e| Box::pin(under_load::upgrade(e)),
        ),
        check("a_deleted_replica_under_load_fails_no_create", |e| {
            Box::pin(under_load::deleted_replica(e))
        }),
        check("a_killed_process_under_load_fails_no_create", |e| {
            Box::pin(under_load::killed_process(e))
        }),
        check("an_eviction_under_load_fails_no_create", |e| {
            Box::pin(under_load::eviction(e))
        }),
        check("idle_connections_under_load_fail_no_create", |e| {
            Box::pin(under_load::idle_flood(e))
        }),
        check("an_uninstall_under_load_fails_no_create", |e| {
            Box::pin(under_load::uninstall(e))
        }),
        check("sigterm_drains_then_opted_in_pods_fail_closed", |e| {
            Box::pin(stopped::stopped(e))
        }),
    ]
}

fn pod(name: &str, annotations: &[(&str, &str)]) -> String {
    let annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.0"}]},
    })
    .to_string()
}

fn deployment(name: &str, annotations: &[(&str, &str)]) -> String {
    let annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}, "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.0"}]}}},
    })
    .to_string()
}

/// The Secret of an example, applied alone (the example's Deployment would make pods of its own).
fn apply_secret(
    environment: &Environment,
    example: &str,
    namespace: &str,
    name: Option<&str>,
) -> Result<()> {
    let mut secret = scenarios::example_secret_object(example)?;
    if let Some(name) = name {
        secret["metadata"]["name"] = json!(name);
    }
    kubectl(
        environment,
        &["apply", "-n", namespace, "-f", "-"],
        &secret.to_string(),
    )
    .map(|_| ())
}

fn kubectl(
    environment: &Environment,
    args: &[&str],
    stdin: &str,
) -> Result<dbbind_e2e::cluster::KubectlOutput> {
    environment.plane.kubectl_run(args, Some(stdin))
}

fn get_pod(environment: &Environment, namespace: &str, name: &str) -> Result<Value> {
    let output = kubectl(
        environment,
        &["get", "pod", name, "-n", namespace, "-o", "json"],
        "",
    )?;
    serde_json::from_str(&output.stdout).map_err(|e| anyhow!("{e}"))
}

/// The pod as sent: see `dbbind_e2e::workload::untouched`.
fn untouched(pod: &Value) -> Result<()> {
    workload::untouched(pod)
}

fn helm(environment: &Environment, args: &[&str]) -> Result<String> {
    let bin = dbbind_e2e::tools::k8s_bin_dir()?;
    let output = std::process::Command::new(bin.join("helm"))
        .arg(format!(
            "--kubeconfig={}",
            environment.plane.kubeconfig.display()
        ))
        .args(args)
        .current_dir(dbbind_e2e::tools::repo_root())
        .output()?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(anyhow!(
            "helm {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
