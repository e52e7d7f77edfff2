//! No Secret value appears on `render`'s stdout or stderr: every example is rendered with its
//! Secret's values replaced by markers, as given in the manifest and with `--secret`, including
//! runs that deny.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::Value;

use crate::dbbind;
use crate::support::repo_path;

/// The example with its Secret's values replaced by markers (as `data`, base64, the way the API
/// server returns them, and the first key as `stringData`); returns (secret yaml, workload yaml, markers).
fn canary_example(name: &str) -> (String, String, Vec<String>) {
    let text = std::fs::read_to_string(repo_path(&format!("examples/{name}"))).unwrap();
    let mut secret = String::new();
    let mut workload = String::new();
    let mut markers = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let mut value = Value::deserialize(document).unwrap();
        if value["kind"] == "Secret" {
            let data = value["data"].as_object_mut().unwrap();
            for (index, (_, v)) in data.iter_mut().enumerate() {
                let marker = format!("MARKER{index:02}{}", name.len() * 104_729 + index);
                *v = Value::String(STANDARD.encode(&marker));
                markers.push(marker);
            }
            // The first key moves to stringData, plain text: the key set stays the same.
            let first = data.keys().next().unwrap().clone();
            data.remove(&first);
            let marker = format!("MARKERSTRING{}", name.len());
            value["stringData"] = serde_json::json!({ first: marker });
            markers.push(marker);
            secret = serde_yaml_ng::to_string(&value).unwrap();
        } else {
            workload = serde_yaml_ng::to_string(&value).unwrap();
        }
    }
    (secret, workload, markers)
}

fn assert_clean(text: &str, markers: &[String], context: &str) {
    for marker in markers {
        assert!(
            !text.contains(marker.as_str()),
            "{context}: value leaked:\n{text}"
        );
        assert!(
            !text.contains(&STANDARD.encode(marker)),
            "{context}: encoded value leaked:\n{text}"
        );
    }
}

#[test]
fn render_never_prints_a_secret_value() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path().to_owned();
    let mut examples: Vec<String> = std::fs::read_dir(repo_path("examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    examples.sort();
    let mut denied = 0;
    for name in examples {
        let (secret, workload, markers) = canary_example(&name);
        let secret_file = dir.join(format!("secret-{name}"));
        std::fs::write(&secret_file, &secret).unwrap();
        let secret_path = secret_file.to_str().unwrap();
        // Variants: Secret in the manifest; Secret by --secret; json; a denial naming keys.
        let denying = workload.replace(
            "dbbind.io/secret:",
            "dbbind.io/keys: password=nope\n        dbbind.io/secret:",
        );
        let runs = [
            dbbind(&["render", "-f", "-"], &format!("{secret}---\n{workload}")),
            dbbind(&["render", "-f", "-", "--secret", secret_path], &workload),
            dbbind(
                &["render", "-f", "-", "--secret", secret_path, "-o", "json"],
                &workload,
            ),
            dbbind(&["render", "-f", "-", "--secret", secret_path], &denying),
        ];
        for (index, run) in runs.iter().enumerate() {
            let context = format!("{name} variant {index}");
            assert!(run.code == 0 || index == 3, "{context}: {}", run.stderr);
            assert_clean(&run.stdout, &markers, &context);
            assert_clean(&run.stderr, &markers, &context);
        }
        if runs[3].code == 1 {
            denied += 1;
            assert!(
                runs[3].stderr.contains("which Secret"),
                "{name}: {}",
                runs[3].stderr
            );
        }
    }
    assert!(denied >= 10, "the denying variant denies ({denied})");
}
