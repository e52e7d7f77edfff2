//! The chart's webhook rules and rotation RBAC name exactly the kinds core's table declares
//! (`dbbind_core::kind`), so a kind added there cannot be forgotten here.

use dbbind_core::kind::WorkloadKind;

use super::*;

/// `(group, resource)` of every rule of the objects of `kind`, across their webhooks.
fn webhook_resources(objects: &[Value], kind: &str) -> BTreeSet<(String, String)> {
    let mut resources = BTreeSet::new();
    for object in objects.iter().filter(|o| o["kind"] == kind) {
        for webhook in object["webhooks"].as_array().unwrap() {
            for rule in webhook["rules"].as_array().unwrap() {
                for group in rule["apiGroups"].as_array().unwrap() {
                    for resource in rule["resources"].as_array().unwrap() {
                        let pair = (group.as_str().unwrap(), resource.as_str().unwrap());
                        resources.insert((pair.0.to_owned(), pair.1.to_owned()));
                    }
                }
            }
        }
    }
    resources
}

fn of_kinds(filter: impl Fn(WorkloadKind) -> bool) -> BTreeSet<(String, String)> {
    WorkloadKind::ALL
        .into_iter()
        .filter(|kind| filter(*kind))
        .map(|kind| (kind.group().to_owned(), kind.plural().to_owned()))
        .collect()
}

#[test]
fn the_webhooks_are_registered_for_exactly_the_kinds_dbbind_decides() {
    let objects = render(&[]).unwrap();
    assert_eq!(
        webhook_resources(&objects, "ValidatingWebhookConfiguration"),
        of_kinds(WorkloadKind::checked_at_apply),
        "the workloads webhooks' rules"
    );
    assert_eq!(
        webhook_resources(&objects, "MutatingWebhookConfiguration"),
        of_kinds(|kind| kind == WorkloadKind::Pod),
        "the Pod webhook's rules"
    );
}

#[test]
fn rotation_may_patch_exactly_the_kinds_it_rolls() {
    let objects = render(&["rotation.enabled=true"]).unwrap();
    let rules = find(&objects, "ClusterRole", "dbbind-rotation")["rules"]
        .as_array()
        .unwrap();
    let mut patched = BTreeSet::new();
    for rule in rules {
        let verbs = rule["verbs"].as_array().unwrap();
        if !verbs.contains(&json!("patch")) {
            continue;
        }
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                let pair = (group.as_str().unwrap(), resource.as_str().unwrap());
                patched.insert((pair.0.to_owned(), pair.1.to_owned()));
            }
        }
    }
    assert_eq!(patched, of_kinds(WorkloadKind::rollable));
}
