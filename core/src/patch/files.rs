//! Bindings projected as files, in the Service Binding Specification's layout (docs/design.md §3):
//! one projected volume per binding, mounted at `$SERVICE_BINDING_ROOT/<binding>`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DownwardAPIProjection, DownwardAPIVolumeFile, KeyToPath, ObjectFieldSelector,
    ProjectedVolumeSource, SecretProjection, Volume, VolumeMount, VolumeProjection,
};

use crate::binding::{ResolvedBinding, VALUE_ANNOTATION, ValueSource};

/// The variable telling applications where bindings are mounted.
pub const SERVICE_BINDING_ROOT: &str = "SERVICE_BINDING_ROOT";
/// Where bindings are mounted unless a container sets `SERVICE_BINDING_ROOT` itself.
pub const DEFAULT_ROOT: &str = "/bindings";
/// The binding `type` entry: what the Service Binding Specification calls this service.
const BINDING_TYPE: &str = "postgresql";
/// API servers default a projected volume's mode to 0644; stating it keeps a re-invocation's
/// comparison with the defaulted volume exact.
const DEFAULT_MODE: i32 = 0o644;

pub fn volume_name(binding: &ResolvedBinding) -> String {
    format!("dbbind-{}", binding.request.name())
}

/// The annotation a literal entry is read from: `dbbind.io/value.<binding>.<entry>`.
pub fn value_annotation(binding: &ResolvedBinding, entry: &str) -> String {
    format!("{VALUE_ANNOTATION}{}.{entry}", binding.request.name())
}

/// The literal entries of a binding's files, as the pod annotations that carry them.
pub fn value_annotations(binding: &ResolvedBinding) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    values.insert(value_annotation(binding, "type"), BINDING_TYPE.to_owned());
    values.insert(
        value_annotation(binding, "provider"),
        binding.profile.clone(),
    );
    for (field, source) in &binding.fields {
        if let ValueSource::Literal(value) = source {
            values.insert(value_annotation(binding, field.file_entry()), value.clone());
        }
    }
    values
}

/// The projected volume: Secret keys through secret sources (values never leave the Secret),
/// literals through the downward API from the annotations above.
pub fn volume(binding: &ResolvedBinding) -> Volume {
    let mut required = Vec::new();
    let mut optional = Vec::new();
    for (field, source) in &binding.fields {
        if let ValueSource::SecretKey {
            key,
            optional: is_optional,
        } = source
        {
            let item = KeyToPath {
                key: key.clone(),
                path: field.file_entry().to_owned(),
                mode: None,
            };
            if *is_optional {
                optional.push(item);
            } else {
                required.push(item);
            }
        }
    }
    let mut sources = Vec::new();
    // A secret source without items would project every key of the Secret: only add one with
    // items.
    for (items, is_optional) in [(required, false), (optional, true)] {
        if !items.is_empty() {
            sources.push(VolumeProjection {
                secret: Some(SecretProjection {
                    name: binding.request.secret.clone(),
                    items: Some(items),
                    optional: is_optional.then_some(true),
                }),
                ..VolumeProjection::default()
            });
        }
    }
    let literal_items = value_annotations(binding)
        .into_keys()
        .map(|annotation| {
            let path = annotation.rsplit('.').next().unwrap_or_default().to_owned();
            DownwardAPIVolumeFile {
                path,
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".to_owned()),
                    field_path: format!("metadata.annotations['{annotation}']"),
                }),
                mode: None,
                resource_field_ref: None,
            }
        })
        .collect();
    sources.push(VolumeProjection {
        downward_api: Some(DownwardAPIProjection {
            items: Some(literal_items),
        }),
        ..VolumeProjection::default()
    });
    Volume {
        name: volume_name(binding),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(DEFAULT_MODE),
            sources: Some(sources),
        }),
        ..Volume::default()
    }
}

pub fn mount(binding: &ResolvedBinding, root: &str) -> VolumeMount {
    VolumeMount {
        name: volume_name(binding),
        mount_path: format!("{}/{}", root.trim_end_matches('/'), binding.request.name()),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}
