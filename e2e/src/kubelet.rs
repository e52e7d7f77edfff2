//! Resolving a container's environment and binding files the way the kubelet does: Secret
//! references read from the real Secret, `$(VAR)` expanded against the variables before it,
//! projected volumes assembled from Secret keys and downward-API annotations.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::Api;

use crate::{Error, Result};

/// What a process in the container would see.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Variables in order.
    pub env: Vec<(String, String)>,
    /// Files under each mount path of a projected volume: mount path → entry → contents.
    pub files: BTreeMap<String, BTreeMap<String, String>>,
}

impl Resolved {
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub async fn resolve(client: &kube::Client, pod: &Pod, container: &str) -> Result<Resolved> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| Error::new("pod without spec"))?;
    let container: &Container = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .find(|c| c.name == container)
        .ok_or_else(|| Error::new(format!("no container {container}")))?;

    let mut resolved = Resolved::default();
    let mut defined: HashMap<String, String> = HashMap::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => expand(value, &defined),
            (None, Some(from)) => match &from.secret_key_ref {
                Some(reference) => {
                    match secret_value(&secrets, &reference.name, &reference.key).await? {
                        Some(value) => value,
                        None if reference.optional == Some(true) => continue,
                        None => {
                            return Err(Error::new(format!(
                                "{}: Secret {} has no key {} (the kubelet would not start the container)",
                                var.name, reference.name, reference.key
                            )));
                        }
                    }
                }
                None => return Err(Error::new(format!("{}: unsupported valueFrom", var.name))),
            },
            (None, None) => String::new(),
        };
        defined.insert(var.name.clone(), value.clone());
        resolved.env.push((var.name.clone(), value));
    }

    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = spec.volumes.iter().flatten().find(|v| v.name == mount.name) else {
            continue;
        };
        let Some(projected) = &volume.projected else {
            continue;
        };
        let mut files = BTreeMap::new();
        for source in projected.sources.iter().flatten() {
            if let Some(secret) = &source.secret {
                for item in secret.items.iter().flatten() {
                    match secret_value(&secrets, &secret.name, &item.key).await? {
                        Some(value) => {
                            files.insert(item.path.clone(), value);
                        }
                        None if secret.optional == Some(true) => {}
                        None => {
                            return Err(Error::new(format!(
                                "volume {}: Secret {} has no key {}",
                                volume.name, secret.name, item.key
                            )));
                        }
                    }
                }
            }
            if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    let Some(field) = &item.field_ref else {
                        continue;
                    };
                    files.insert(item.path.clone(), field_value(pod, &field.field_path)?);
                }
            }
        }
        resolved.files.insert(mount.mount_path.clone(), files);
    }
    Ok(resolved)
}

/// A downward-API field of the pod.
fn field_value(pod: &Pod, path: &str) -> Result<String> {
    let metadata = &pod.metadata;
    let from_map = |map: &Option<std::collections::BTreeMap<String, String>>, prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("']"))
            .map(|key| {
                map.as_ref()
                    .and_then(|m| m.get(key))
                    .cloned()
                    .unwrap_or_default()
            })
    };
    match path {
        "metadata.name" => Ok(metadata.name.clone().unwrap_or_default()),
        "metadata.namespace" => Ok(metadata.namespace.clone().unwrap_or_default()),
        _ => from_map(&metadata.annotations, "metadata.annotations['")
            .or_else(|| from_map(&metadata.labels, "metadata.labels['"))
            .ok_or_else(|| Error::new(format!("unsupported fieldRef {path}"))),
    }
}

async fn secret_value(secrets: &Api<Secret>, name: &str, key: &str) -> Result<Option<String>> {
    let Some(secret) = secrets.get_opt(name).await? else {
        return Ok(None);
    };
    if let Some(value) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Ok(Some(String::from_utf8_lossy(&value.0).into_owned()));
    }
    Ok(secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .cloned())
}

/// Kubernetes' dependent-variable expansion: `$(NAME)` becomes NAME's value when NAME was
/// defined before, and stays as written otherwise; `$$` is a literal `$`.
pub fn expand(input: &str, defined: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(close) = inner.find(')')
        {
            let name = &inner[..close];
            match defined.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Decodes base64 Secret data given as text (for fixtures read from files).
pub fn decode(text: &str) -> Result<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| Error::new(format!("base64: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let defined: HashMap<String, String> = [("A".to_owned(), "x".to_owned())].into();
        assert_eq!(expand("$(A):$(B)", &defined), "x:$(B)");
        assert_eq!(expand("$$(A) $ $$", &defined), "$(A) $ $");
        assert_eq!(expand("pre$(A", &defined), "pre$(A");
    }
}
