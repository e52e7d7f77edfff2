//! Inputs the fuzz targets (fuzz/, scripts/fuzz) found, each kept as a test once fixed.

use dbbind_core::manifest::{RenderError, Source, render};

use crate::support::*;

fn render_error(text: &str) -> String {
    match render(
        &Source {
            name: "m.yaml",
            text,
        },
        &[],
        None,
        &builtin(),
    ) {
        Ok(rendered) => panic!("rendered: {:?}", rendered.len()),
        Err(error @ RenderError::Document { .. }) => error.to_string(),
        Err(error) => panic!("another error: {error}"),
    }
}

/// render (2026-12-02): a Deployment whose `spec.template` was a string panicked while the
/// unchanged template was written back (`template["metadata"]` on a string).
#[test]
fn a_pod_template_that_is_not_a_mapping_is_an_error_not_a_panic() {
    for template in ["metadatmode=require", "[]", "null", "42"] {
        let text = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  template: {template}\n"
        );
        assert_eq!(
            render_error(&text),
            "m.yaml: document 1: Deployment's pod template at /spec/template is not a mapping",
            "{template}"
        );
    }
    let cronjob = "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: nightly\nspec:\n  jobTemplate:\n    spec:\n      template: x\n";
    assert_eq!(
        render_error(cronjob),
        "m.yaml: document 1: CronJob's pod template at /spec/jobTemplate/spec/template is not a mapping"
    );
}
