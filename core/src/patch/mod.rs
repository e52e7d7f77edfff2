//! The JSON patch that binds a pod (docs/design.md §3).
//!
//! The patch only adds what is missing, so running it on its own output yields no operation
//! (the webhook is registered with `reinvocationPolicy: IfNeeded`), and a container another
//! webhook added after the first pass is bound on the second. Parent arrays and maps are created
//! when absent and never replaced wholesale.

mod env;
mod files;

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, Volume, VolumeMount};
use serde::Serialize;
use serde_json::Value;

pub use files::{DEFAULT_ROOT, SERVICE_BINDING_ROOT};

use crate::binding::{AppliedBinding, OnConflict, ResolvedBinding};
use crate::keys;
use crate::message::{Denial, Warning, clip, echo};

/// Builds the patch for `pod` from its resolved bindings.
pub fn build_patch(
    pod: &Pod,
    bindings: &[ResolvedBinding],
    selection: Option<&[String]>,
    on_conflict: OnConflict,
    warnings: &mut Vec<Warning>,
) -> Result<Patch, Denial> {
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| Denial::new("the pod has no spec to inject into"))?;
    let targets = select_containers(spec, selection)?;

    let mut vars_by_root = VarsByRoot::new(bindings, warnings)?;
    let file_bindings: Vec<&ResolvedBinding> = bindings.iter().filter(|b| b.has_volume()).collect();

    let mut ops = Ops::default();
    annotate(pod, bindings, &mut ops);
    add_volumes(spec.volumes.as_deref(), &file_bindings, &mut ops)?;
    for target in &targets {
        let mut wanted: Vec<EnvVar> = Vec::new();
        let root = match binding_root(target.container)? {
            Some(root) => root,
            None if !file_bindings.is_empty() => {
                wanted.push(EnvVar {
                    name: SERVICE_BINDING_ROOT.to_owned(),
                    value: Some(DEFAULT_ROOT.to_owned()),
                    value_from: None,
                });
                DEFAULT_ROOT.to_owned()
            }
            None => DEFAULT_ROOT.to_owned(),
        };
        wanted.extend(vars_by_root.get(&root)?);
        inject_env(target, &wanted, on_conflict, &mut ops, warnings)?;
        key_readable(pod, target, &file_bindings, warnings);
        let mounts: Vec<VolumeMount> = file_bindings
            .iter()
            .map(|b| files::mount(b, &root))
            .collect();
        add_mounts(target, &mounts, on_conflict, &mut ops, warnings)?;
    }
    Ok(Patch(ops.0))
}

/// The bindings' variables for a container whose bindings root is `root`. They differ between
/// roots only in TLS file paths, so each root's are computed once; the warnings (and a denial)
/// come once, from the default root's, whatever the containers.
struct VarsByRoot<'a> {
    bindings: &'a [ResolvedBinding],
    computed: Vec<(String, Vec<EnvVar>)>,
}

impl<'a> VarsByRoot<'a> {
    fn new(
        bindings: &'a [ResolvedBinding],
        warnings: &mut Vec<Warning>,
    ) -> Result<VarsByRoot<'a>, Denial> {
        let vars = Self::compute(bindings, DEFAULT_ROOT, warnings)?;
        Ok(VarsByRoot {
            bindings,
            computed: vec![(DEFAULT_ROOT.to_owned(), vars)],
        })
    }

    fn get(&mut self, root: &str) -> Result<Vec<EnvVar>, Denial> {
        if let Some((_, vars)) = self.computed.iter().find(|(own, _)| own == root) {
            return Ok(vars.clone());
        }
        let vars = Self::compute(self.bindings, root, &mut Vec::new())?;
        self.computed.push((root.to_owned(), vars.clone()));
        Ok(vars)
    }

    fn compute(
        bindings: &[ResolvedBinding],
        root: &str,
        warnings: &mut Vec<Warning>,
    ) -> Result<Vec<EnvVar>, Denial> {
        let mut vars = Vec::new();
        for binding in bindings {
            vars.extend(env::binding_env(binding, root, warnings)?);
        }
        Ok(vars)
    }
}

/// A client key is projected with mode 0600, owned by root: a container running as another
/// user reads it only through `fsGroup` (the kubelet then gives it the group, mode 0640, which
/// libpq accepts for a root-owned key). Says what to set when the pod would make libpq refuse it.
fn key_readable(
    pod: &Pod,
    target: &Target<'_>,
    file_bindings: &[&ResolvedBinding],
    warnings: &mut Vec<Warning>,
) {
    let Some(binding) = file_bindings
        .iter()
        .find(|binding| binding.has_tls(crate::field::TlsFile::Key))
    else {
        return;
    };
    let pod_context = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.security_context.as_ref());
    if pod_context.and_then(|context| context.fs_group).is_some() {
        return;
    }
    let container_context = target.container.security_context.as_ref();
    let user = container_context
        .and_then(|context| context.run_as_user)
        .or_else(|| pod_context.and_then(|context| context.run_as_user));
    let non_root = container_context
        .and_then(|context| context.run_as_non_root)
        .or_else(|| pod_context.and_then(|context| context.run_as_non_root))
        .unwrap_or(false);
    let who = match user {
        Some(0) => return,
        Some(user) => format!("runs as user {user}"),
        None if non_root => "must run as non-root".to_owned(),
        None => return,
    };
    warnings.push(Warning::new(format!(
        "binding {:?}: container {} {who} without spec.securityContext.fsGroup, so it cannot read the client key (tls.key, mode 0600, owned by root) and libpq refuses to connect; set spec.securityContext.fsGroup (the kubelet then gives the key that group, mode 0640, which libpq accepts)",
        binding.request.name(),
        echo(&target.container.name)
    )));
}

/// A container the patch writes into, with its place in the pod.
struct Target<'a> {
    /// `containers` or `initContainers`.
    list: &'static str,
    index: usize,
    container: &'a Container,
}

impl Target<'_> {
    fn path(&self, tail: &[&str]) -> PointerBuf {
        let index = self.index.to_string();
        let mut tokens = vec!["spec", self.list, index.as_str()];
        tokens.extend_from_slice(tail);
        PointerBuf::from_tokens(tokens)
    }
}

/// Init containers first (they run first), then containers; all of them unless the pod names
/// some in `dbbind.io/containers`.
fn select_containers<'a>(
    spec: &'a k8s_openapi::api::core::v1::PodSpec,
    selection: Option<&[String]>,
) -> Result<Vec<Target<'a>>, Denial> {
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(index, container)| Target {
            list: "initContainers",
            index,
            container,
        });
    let regular = spec
        .containers
        .iter()
        .enumerate()
        .map(|(index, container)| Target {
            list: "containers",
            index,
            container,
        });
    let all: Vec<Target<'a>> = init.chain(regular).collect();
    let Some(names) = selection else {
        return Ok(all);
    };
    if let Some(missing) = names
        .iter()
        .find(|name| !all.iter().any(|t| &t.container.name == *name))
    {
        let present: Vec<String> = all
            .iter()
            .map(|t| clip(&t.container.name).to_string())
            .collect();
        return Err(Denial::new(format!(
            "annotation \"dbbind.io/containers\" names container {}, which the pod does not have; its containers and init containers: [{}]",
            echo(missing),
            present.join(", ")
        )));
    }
    Ok(all
        .into_iter()
        .filter(|t| names.contains(&t.container.name))
        .collect())
}

/// The container's own `SERVICE_BINDING_ROOT`, when it sets one.
fn binding_root(container: &Container) -> Result<Option<String>, Denial> {
    let Some(var) = container
        .env
        .iter()
        .flatten()
        .find(|var| var.name == SERVICE_BINDING_ROOT)
    else {
        return Ok(None);
    };
    match &var.value {
        Some(root) if var.value_from.is_none() && root.starts_with('/') => Ok(Some(root.clone())),
        _ => Err(Denial::new(format!(
            "container {} sets {SERVICE_BINDING_ROOT} to something other than an absolute path; dbbind needs a literal path to know where to mount the binding files",
            echo(&container.name)
        ))),
    }
}

/// Adds each wanted variable the container lacks, keeping the wanted order and placing them
/// before the container's own entries so those can refer to them as `$(POSTGRES_HOST)`.
fn inject_env(
    target: &Target<'_>,
    wanted: &[EnvVar],
    on_conflict: OnConflict,
    ops: &mut Ops,
    warnings: &mut Vec<Warning>,
) -> Result<(), Denial> {
    let Some(existing) = &target.container.env else {
        if !wanted.is_empty() {
            ops.add(target.path(&["env"]), wanted);
        }
        return Ok(());
    };
    // Names in the container's env as the patch so far leaves it.
    let mut names: Vec<&str> = existing.iter().map(|var| var.name.as_str()).collect();
    // Where the previous wanted variable stands; the next missing one goes right after it.
    let mut anchor: Option<usize> = None;
    for var in wanted {
        match existing.iter().find(|own| own.name == var.name) {
            Some(own) if own == var => anchor = names.iter().position(|n| *n == var.name),
            Some(_) => conflict(
                target,
                &format!("already defines {}", var.name),
                on_conflict,
                warnings,
            )?,
            None => {
                let index = anchor.map_or(0, |i| i + 1);
                names.insert(index, &var.name);
                ops.add(target.path(&["env", &index.to_string()]), var);
                anchor = Some(index);
            }
        }
    }
    Ok(())
}

fn add_mounts(
    target: &Target<'_>,
    mounts: &[VolumeMount],
    on_conflict: OnConflict,
    ops: &mut Ops,
    warnings: &mut Vec<Warning>,
) -> Result<(), Denial> {
    let existing = target
        .container
        .volume_mounts
        .as_deref()
        .unwrap_or_default();
    let mut missing = Vec::new();
    for mount in mounts {
        // A mount of the same volume, or anything at the same path, is already there.
        let clash = existing
            .iter()
            .find(|own| own.name == mount.name || own.mount_path == mount.mount_path);
        match clash {
            Some(own) if own.name == mount.name && own.mount_path == mount.mount_path => {}
            Some(own) => conflict(
                target,
                &format!(
                    "already mounts volume {} at {}",
                    clip(&own.name),
                    clip(&own.mount_path)
                ),
                on_conflict,
                warnings,
            )?,
            None => missing.push(mount),
        }
    }
    if target.container.volume_mounts.is_none() {
        if !missing.is_empty() {
            ops.add(target.path(&["volumeMounts"]), &missing);
        }
    } else {
        for mount in missing {
            ops.add(target.path(&["volumeMounts", "-"]), mount);
        }
    }
    Ok(())
}

/// A container already defines what dbbind would inject: keep it with a warning, or deny.
fn conflict(
    target: &Target<'_>,
    what: &str,
    on_conflict: OnConflict,
    warnings: &mut Vec<Warning>,
) -> Result<(), Denial> {
    let container = echo(&target.container.name);
    match on_conflict {
        OnConflict::Keep => {
            warnings.push(Warning::new(format!(
                "container {container} {what}; kept its own definition (dbbind.io/on-conflict: keep)"
            )));
            Ok(())
        }
        OnConflict::Deny => Err(Denial::new(format!(
            "container {container} {what}, and dbbind.io/on-conflict is \"deny\""
        ))),
    }
}

/// The binding volumes. Names starting with `dbbind-` are dbbind's: a pod volume of that name
/// that differs from what dbbind would write is refused whatever the conflict policy, since
/// mounting someone else's volume as a binding would be silently wrong.
fn add_volumes(
    existing: Option<&[Volume]>,
    file_bindings: &[&ResolvedBinding],
    ops: &mut Ops,
) -> Result<(), Denial> {
    let mut missing = Vec::new();
    for binding in file_bindings {
        let volume = files::volume(binding);
        match existing
            .unwrap_or_default()
            .iter()
            .find(|v| v.name == volume.name)
        {
            Some(own) if *own == volume => {}
            Some(_) => {
                return Err(Denial::new(format!(
                    "the pod already has a volume named {:?}, a name dbbind reserves for binding {:?}'s files",
                    volume.name,
                    binding.request.name()
                )));
            }
            None => missing.push(volume),
        }
    }
    if existing.is_none() {
        if !missing.is_empty() {
            ops.add(PointerBuf::from_tokens(["spec", "volumes"]), &missing);
        }
    } else {
        for volume in &missing {
            ops.add(PointerBuf::from_tokens(["spec", "volumes", "-"]), volume);
        }
    }
    Ok(())
}

/// `dbbind.io/status`, `dbbind.io/bindings`, and the values behind literal file entries.
fn annotate(pod: &Pod, bindings: &[ResolvedBinding], ops: &mut Ops) {
    let mut wanted = BTreeMap::new();
    wanted.insert(keys::STATUS.to_owned(), keys::STATUS_INJECTED.to_owned());
    let summary: Vec<String> = bindings
        .iter()
        .map(|b| AppliedBinding::from(b).to_string())
        .collect();
    wanted.insert(keys::BINDINGS.to_owned(), summary.join(","));
    for binding in bindings.iter().filter(|b| b.request.files) {
        wanted.extend(files::value_annotations(binding));
    }

    let Some(existing) = &pod.metadata.annotations else {
        ops.add(
            PointerBuf::from_tokens(["metadata", "annotations"]),
            &wanted,
        );
        return;
    };
    for (key, value) in &wanted {
        let path = PointerBuf::from_tokens(["metadata", "annotations", key.as_str()]);
        match existing.get(key) {
            Some(current) if current == value => {}
            Some(_) => ops.replace(path, value),
            None => ops.add(path, value),
        }
    }
}

/// Patch operations under construction.
#[derive(Default)]
struct Ops(Vec<PatchOperation>);

impl Ops {
    fn add<T: Serialize + ?Sized>(&mut self, path: PointerBuf, value: &T) {
        self.0.push(PatchOperation::Add(AddOperation {
            path,
            value: to_value(value),
        }));
    }

    fn replace<T: Serialize + ?Sized>(&mut self, path: PointerBuf, value: &T) {
        self.0.push(PatchOperation::Replace(ReplaceOperation {
            path,
            value: to_value(value),
        }));
    }
}

/// Kubernetes types and string maps always serialize; `Null` is unreachable but not a panic.
fn to_value<T: Serialize + ?Sized>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests;
