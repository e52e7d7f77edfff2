//! No Secret value ever reaches a patch, a warning or a denial. Every fixture is rebuilt with
//! unique marker values and bound in many ways, including ones that deny; no marker may appear
//! in the output, neither as written nor base64-encoded.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dbbind_core::decision::Decision;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use crate::support::*;

/// A fixture with each value replaced by a marker; returns the Secret and its markers.
pub fn canary_secret(file: &str) -> (Secret, Vec<String>) {
    let mut secret = fixture_secret(file);
    let mut markers = Vec::new();
    for (index, value) in secret.data.iter_mut().flatten().map(|(_, v)| v).enumerate() {
        let marker = format!("CANARY{index:02}x{}", file.len() * 7919 + index);
        *value = ByteString(marker.clone().into_bytes());
        markers.push(marker);
    }
    assert!(!markers.is_empty());
    (secret, markers)
}

fn assert_clean(text: &str, markers: &[String], context: &str) {
    for marker in markers {
        assert!(
            !text.contains(marker.as_str()),
            "{context}: value leaked: {text}"
        );
        let encoded = STANDARD.encode(marker);
        assert!(
            !text.contains(&encoded),
            "{context}: encoded value leaked: {text}"
        );
    }
}

#[test]
fn no_value_reaches_patches_warnings_or_denials() {
    let variants: &[&[(&str, &str)]] = &[
        &[],
        &[
            ("dbbind.io/env", "postgres,libpq,database-url"),
            ("dbbind.io/files", "true"),
        ],
        &[
            ("dbbind.io/env", "libpq,database-url"),
            ("dbbind.io/database", "d"),
            ("dbbind.io/host", "h"),
        ],
        &[("dbbind.io/profile", "generic")],
        &[("dbbind.io/profile", "url")],
        &[("dbbind.io/profile", "rds"), ("dbbind.io/files", "true")],
        &[("dbbind.io/keys", "password=nope")],
        &[
            ("dbbind.io/keys", "user=password"),
            ("dbbind.io/env", "database-url"),
        ],
        &[("dbbind.io/user", "other"), ("dbbind.io/database", "d")],
        &[("dbbind.io/on-conflict", "deny")],
    ];
    let mut denials = 0;
    for file in fixture_names() {
        let (secret, markers) = canary_secret(&file);
        let name = secret.metadata.name.clone().unwrap();
        let namespace = secret.metadata.namespace.clone().unwrap();
        let store = store_of(&[&secret]);
        for extra in variants {
            let mut annotations = vec![("dbbind.io/secret", name.as_str())];
            annotations.extend_from_slice(extra);
            // The same Secret once more as a named binding, both as files.
            annotations.push(("dbbind.io/secret.second", name.as_str()));
            annotations.push(("dbbind.io/files.second", "true"));
            let pod = pod(&annotations, &["init:migrate", "app"]);
            let decision = decide(&pod, &namespace, &store);
            let context = format!("{file} {extra:?}");
            for warning in decision.warnings() {
                assert_clean(warning.message(), &markers, &context);
            }
            match &decision {
                Decision::Allow { patch, .. } => {
                    assert_clean(&serde_json::to_string(patch).unwrap(), &markers, &context);
                    assert_clean(
                        &serde_json::to_string(&apply(&pod, &decision)).unwrap(),
                        &markers,
                        &context,
                    );
                }
                Decision::Deny { denial, .. } => {
                    denials += 1;
                    assert_clean(denial.message(), &markers, &context);
                }
            }
        }
    }
    assert!(
        denials > 10,
        "the variants exercise denials too ({denials})"
    );
}
