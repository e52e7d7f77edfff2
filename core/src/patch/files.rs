//! Bindings projected as files, in the Service Binding Specification's layout (docs/design.md §3),
//! and their TLS files (§9): one projected volume per binding, mounted at
//! `$SERVICE_BINDING_ROOT/<binding>`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapProjection, DownwardAPIProjection, DownwardAPIVolumeFile, KeyToPath,
    ObjectFieldSelector, ProjectedVolumeSource, SecretProjection, Volume, VolumeMount,
    VolumeProjection,
};

use crate::binding::{ResolvedBinding, TlsObject, ValueSource};
use crate::keys::VALUE_PREFIX;

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
    format!("{VALUE_PREFIX}{}.{entry}", binding.request.name())
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
/// literals through the downward API from the annotations above, TLS files from their Secret or
/// ConfigMap (only the named keys: never an operator CA Secret's `ca.key`). The field entries and
/// literals are there when the binding's files were asked for; TLS files always.
pub fn volume(binding: &ResolvedBinding) -> Volume {
    let mut sources = Sources::default();
    let bound = TlsObject::Secret(binding.request.secret.clone());
    if binding.request.files {
        for (field, source) in &binding.fields {
            if let ValueSource::SecretKey { key, optional } = source {
                sources.item(&bound, *optional, key, field.file_entry(), None);
            }
        }
    }
    for tls in &binding.tls {
        sources.item(
            &tls.object,
            false,
            &tls.key,
            tls.file.file_entry(),
            tls.file.mode(),
        );
    }
    // Required sources first, in the order first named (a re-invocation compares exactly).
    sources.0.sort_by_key(|(_, optional, _)| *optional);
    let mut projections: Vec<VolumeProjection> = sources
        .0
        .into_iter()
        .map(|(object, optional, items)| match object {
            TlsObject::Secret(name) => VolumeProjection {
                secret: Some(SecretProjection {
                    name,
                    items: Some(items),
                    optional: optional.then_some(true),
                }),
                ..VolumeProjection::default()
            },
            TlsObject::ConfigMap(name) => VolumeProjection {
                config_map: Some(ConfigMapProjection {
                    name,
                    items: Some(items),
                    optional: optional.then_some(true),
                }),
                ..VolumeProjection::default()
            },
        })
        .collect();
    if binding.request.files {
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
        projections.push(VolumeProjection {
            downward_api: Some(DownwardAPIProjection {
                items: Some(literal_items),
            }),
            ..VolumeProjection::default()
        });
    }
    Volume {
        name: volume_name(binding),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(DEFAULT_MODE),
            sources: Some(projections),
        }),
        ..Volume::default()
    }
}

/// The volume's Secret and ConfigMap sources, in the order first named: one per object and
/// optionality, each with its items. A source without items would project every key of its
/// object, so a source exists only with an item.
#[derive(Default)]
struct Sources(Vec<(TlsObject, bool, Vec<KeyToPath>)>);

impl Sources {
    fn item(
        &mut self,
        object: &TlsObject,
        optional: bool,
        key: &str,
        path: &str,
        mode: Option<i32>,
    ) {
        let item = KeyToPath {
            key: key.to_owned(),
            path: path.to_owned(),
            mode,
        };
        match self
            .0
            .iter_mut()
            .find(|(own, own_optional, _)| own == object && *own_optional == optional)
        {
            Some((_, _, items)) => items.push(item),
            None => self.0.push((object.clone(), optional, vec![item])),
        }
    }
}

/// Where the binding's directory is in a container whose bindings root is `root`.
pub fn directory(binding: &ResolvedBinding, root: &str) -> String {
    format!("{}/{}", root.trim_end_matches('/'), binding.request.name())
}

pub fn mount(binding: &ResolvedBinding, root: &str) -> VolumeMount {
    VolumeMount {
        name: volume_name(binding),
        mount_path: directory(binding, root),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}
