//! Rendering manifests (`dbbind render`): the admission decision run offline.
//!
//! A Pod, or the pod template of a workload, is turned into the Pod the API server would send,
//! decided by the same [`mutate_pod`] the webhook calls, and the patch applied back to the
//! template. Secrets in the input are what the webhook's cache would hold; they are read for
//! their shape only and are never printed.

use json_patch::jsonptr::Pointer;
use k8s_openapi::api::core::v1::{Pod, Secret};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::admission::mutate_pod;
use crate::decision::Decision;
use crate::kind::WorkloadKind;
use crate::profile::ProfileSet;
use crate::secret::{SecretStore, SecretView};
use crate::workload::pod_from_template;

/// Input that cannot be rendered: the CLI exits 2.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{source_name}: not valid YAML: {error}")]
    Yaml {
        source_name: String,
        error: serde_yaml_ng::Error,
    },
    #[error("{source_name}: document {index}: {problem}")]
    Document {
        source_name: String,
        index: usize,
        problem: String,
    },
    #[error(
        "{source_name}: no Pod or pod template ({}) found",
        WorkloadKind::list(WorkloadKind::ALL)
    )]
    NothingToRender { source_name: String },
}

/// A named text: a file's path (or `-`) and its contents.
pub struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// The outcome for one pod-carrying document.
pub struct RenderedDocument {
    /// `Deployment/myshop-api`, for messages.
    pub object: String,
    /// The document with its pod (template) patched; unchanged when denied.
    pub document: Value,
    pub decision: Decision,
}

/// Renders every pod-carrying document of `manifest`, with the Secrets found in it and in
/// `secret_files`. `namespace` applies to documents that name none; a document naming another
/// namespace is an error, as with `kubectl apply -n`.
pub fn render(
    manifest: &Source<'_>,
    secret_files: &[Source<'_>],
    namespace: Option<&str>,
    profiles: &ProfileSet,
) -> Result<Vec<RenderedDocument>, RenderError> {
    let default_namespace = namespace.unwrap_or("default");
    let mut secrets = SecretStore::new();
    let mut workloads = Vec::new();

    for (index, document) in documents(manifest)? {
        let problem = |problem: String| RenderError::Document {
            source_name: manifest.name.to_owned(),
            index,
            problem,
        };
        let kind = document
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind == "Secret" {
            secrets.insert(secret_view(&document, default_namespace).map_err(problem)?);
        } else if WorkloadKind::named(kind).is_some() {
            check_namespace(&document, namespace).map_err(problem)?;
            workloads.push((index, document));
        }
    }
    for file in secret_files {
        for (index, document) in documents(file)? {
            let view = match document.get("kind").and_then(Value::as_str) {
                Some("Secret") => secret_view(&document, default_namespace),
                Some(kind) => Err(format!("is a {kind}, not a Secret")),
                None => Err("has no kind; expected a Secret".to_owned()),
            };
            secrets.insert(view.map_err(|problem| RenderError::Document {
                source_name: file.name.to_owned(),
                index,
                problem,
            })?);
        }
    }
    if workloads.is_empty() {
        return Err(RenderError::NothingToRender {
            source_name: manifest.name.to_owned(),
        });
    }

    workloads
        .into_iter()
        .map(|(index, document)| {
            render_one(document, default_namespace, &secrets, profiles).map_err(|problem| {
                RenderError::Document {
                    source_name: manifest.name.to_owned(),
                    index,
                    problem,
                }
            })
        })
        .collect()
}

/// The documents of a YAML stream, numbered from 1, empty ones skipped and `List` items
/// flattened (the shape `kubectl get -o yaml` prints).
fn documents(source: &Source<'_>) -> Result<Vec<(usize, Value)>, RenderError> {
    let mut out = Vec::new();
    for (position, document) in serde_yaml_ng::Deserializer::from_str(source.text).enumerate() {
        let index = position + 1;
        let value = Value::deserialize(document).map_err(|error| RenderError::Yaml {
            source_name: source.name.to_owned(),
            error,
        })?;
        match value {
            Value::Null => {}
            Value::Object(ref object) => {
                if object.get("kind").and_then(Value::as_str) == Some("List") {
                    let items = object.get("items").and_then(Value::as_array);
                    out.extend(
                        items
                            .into_iter()
                            .flatten()
                            .cloned()
                            .map(|item| (index, item)),
                    );
                } else {
                    out.push((index, value));
                }
            }
            _ => {
                return Err(RenderError::Document {
                    source_name: source.name.to_owned(),
                    index,
                    problem: "is not a Kubernetes object (a YAML mapping with kind and apiVersion)"
                        .to_owned(),
                });
            }
        }
    }
    Ok(out)
}

fn secret_view(document: &Value, default_namespace: &str) -> Result<SecretView, String> {
    let secret: Secret = serde_json::from_value(document.clone())
        .map_err(|error| format!("is not a valid Secret: {error}"))?;
    let view = SecretView::from_secret(&secret, default_namespace);
    if view.name.is_empty() {
        return Err("is a Secret without metadata.name".to_owned());
    }
    Ok(view)
}

fn check_namespace(document: &Value, namespace: Option<&str>) -> Result<(), String> {
    let own = document
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    match (own, namespace) {
        (Some(own), Some(given)) if own != given => Err(format!(
            "is in namespace {own:?}, which does not match the namespace {given:?} given with -n"
        )),
        _ => Ok(()),
    }
}

fn object_name(document: &Value) -> String {
    let kind = document
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("Object");
    let name = document
        .pointer("/metadata/name")
        .or_else(|| document.pointer("/metadata/generateName"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    format!("{kind}/{name}")
}

fn render_one(
    mut document: Value,
    default_namespace: &str,
    secrets: &SecretStore,
    profiles: &ProfileSet,
) -> Result<RenderedDocument, String> {
    let object = object_name(&document);
    let name = document
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(kind) = WorkloadKind::named(name) else {
        return Err(format!("{} carries no pod", crate::message::echo(name)));
    };
    let pointer = kind.pod_pointer();
    let namespace = document
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(default_namespace)
        .to_owned();
    let template = match Pointer::parse(pointer)
        .ok()
        .and_then(|p| p.resolve(&document).ok())
    {
        Some(template) if template.is_object() => template.clone(),
        Some(_) => {
            return Err(format!(
                "{kind}'s pod template at {pointer} is not a mapping"
            ));
        }
        None => return Err(format!("{kind} has no pod template at {pointer}")),
    };
    let mut pod_json = match kind {
        WorkloadKind::Pod => template,
        _ => pod_from_template(&template),
    };
    let pod: Pod = serde_json::from_value(pod_json.clone())
        .map_err(|error| format!("the pod of {object} cannot be read: {error}"))?;

    let decision = mutate_pod(&pod, &namespace, secrets, profiles);
    if let Decision::Allow { patch, .. } = &decision {
        json_patch::patch(&mut pod_json, &patch.0)
            .map_err(|error| format!("dbbind's patch does not apply to {object}: {error}"))?;
        write_back(&mut document, kind, pod_json);
    }
    Ok(RenderedDocument {
        object,
        document,
        decision,
    })
}

/// Puts the patched pod back: the whole document for a Pod, the template's annotations and spec
/// for a workload (the only parts the patch touches).
fn write_back(document: &mut Value, kind: WorkloadKind, mut pod: Value) {
    if kind == WorkloadKind::Pod {
        *document = pod;
        return;
    }
    let pointer = kind.pod_pointer();
    // render_one read a mapping here, and a pod from its metadata mapping: indexing cannot
    // meet a scalar (which would panic), but stay safe if that ever changes.
    let Some(template) = document.pointer_mut(pointer).and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(annotations) = pod.pointer_mut("/metadata/annotations").map(Value::take) {
        let metadata = template
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(metadata) = metadata.as_object_mut() {
            metadata.insert("annotations".to_owned(), annotations);
        }
    }
    if let Some(spec) = pod.get_mut("spec").map(Value::take) {
        template.insert("spec".to_owned(), spec);
    }
}
