//! Every rule a pod or a pod template goes through, in order: the one place to read them, and
//! where a new one goes. The Pod webhook (`admission`), the workloads webhook (`workload`) and
//! `dbbind render` (`manifest`) all decide through [`decide`].
//!
//! 1. **The annotations** ([`binding::parse_annotations`]): `dbbind.io/inject: "false"` wins;
//!    every `dbbind.io/` key is known, none is `password`, aliases are DNS labels other than
//!    `db`, every value is valid for its key, every binding names its Secret.
//! 2. **Restart on rotation with files only**: a warning, nothing to restart (`files_only`).
//! 3. **Each binding resolved** ([`binding::resolve`]): the profile named exists or one is
//!    detected, the Secret exists (else a warning for a template), required fields are found,
//!    an endpoint role is one the profile knows, TLS objects are named right.
//! 4. **The patch** (`patch::build_patch`): the containers named exist, each binding root is
//!    free, a variable the container already defines follows `dbbind.io/on-conflict`, volume
//!    names do not collide.
//! 5. **Restart on rotation while this dbbind does not restart**: a warning
//!    (`restarts_off`).
//!
//! A rule is a function that returns a denial or a warning and says in its message what is
//! wrong and what is allowed; a rule about the pod as a whole is added here as a step, a rule
//! about one annotation, binding or container in the module that step calls.

use json_patch::Patch;
use k8s_openapi::api::core::v1::Pod;

use crate::binding::{self, AppliedBinding, BindingRequests, PodRequest};
use crate::decision::Decision;
use crate::keys::RESTART_ON_ROTATION;
use crate::message::{Cause, Denial, Warning};
use crate::patch;
use crate::profile::ProfileSet;
use crate::secret::SecretLookup;

/// Whether the dbbind deciding restarts workloads when a Secret they read rotates
/// (`dbbind serve --restart-on-rotation`, docs/design.md §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationRestarts {
    On,
    /// A pod or template that opts in is warned that nothing will restart it.
    Off,
    /// Outside a server (`dbbind render`): nothing is said about it.
    Unknown,
}

/// What a problem that only the Secret's current state decides does to the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretProblems {
    /// Deny: the Pod is being created now, and would start without its database.
    Deny,
    /// Warn: a workload's template, whose Secret may be applied in the same batch after it.
    Warn,
}

/// The decision for a pod or a pod template: the rules above, in order. With
/// [`SecretProblems::Warn`], a binding whose Secret is not usable yet is reported and left
/// out, and the rest is still checked.
pub fn decide(
    pod: &Pod,
    namespace: &str,
    secrets: &dyn SecretLookup,
    profiles: &ProfileSet,
    secret_problems: SecretProblems,
    restarts: RotationRestarts,
) -> Decision {
    let Some(annotations) = &pod.metadata.annotations else {
        return Decision::unchanged();
    };
    // 1. The annotations.
    let requests = match binding::parse_annotations(annotations, profiles) {
        Ok(PodRequest::Bind(requests)) => requests,
        Ok(PodRequest::NotRequested | PodRequest::OptedOut) => return Decision::unchanged(),
        Err(error) => return Decision::deny(error),
    };
    // 2. Restart on rotation with files only.
    let mut warnings: Vec<Warning> = files_only(&requests).into_iter().collect();
    let warn_instead = |denial: &Denial| {
        secret_problems == SecretProblems::Warn && denial.cause() == Cause::SecretState
    };
    // 3. Each binding resolved.
    let mut resolved = Vec::with_capacity(requests.bindings.len());
    for request in &requests.bindings {
        match binding::resolve(request, namespace, secrets, profiles, &mut warnings) {
            Ok(binding) => resolved.push(binding),
            Err(denial) if warn_instead(&denial) => warnings.push(denial.into()),
            Err(denial) => return Decision::Deny { denial, warnings },
        }
    }
    // 4. The patch.
    let patch = match patch::build_patch(
        pod,
        &resolved,
        requests.containers.as_deref(),
        requests.on_conflict,
        &mut warnings,
    ) {
        Ok(patch) => patch,
        Err(denial) if warn_instead(&denial) => {
            warnings.push(denial.into());
            Patch(Vec::new())
        }
        Err(denial) => return Decision::Deny { denial, warnings },
    };
    // 5. Restart on rotation while this dbbind does not restart.
    warnings.extend(restarts_off(&requests, restarts));
    let bindings = resolved.iter().map(AppliedBinding::from).collect();
    Decision::Allow {
        patch,
        warnings,
        bindings,
    }
}

/// Rule 2: restart on rotation asked by a pod that binds by files only, which the kubelet
/// updates in place.
fn files_only(requests: &BindingRequests) -> Option<Warning> {
    let by_files_only = requests
        .bindings
        .iter()
        .all(|binding| binding.env.is_empty());
    (requests.restart_on_rotation && by_files_only).then(|| {
        Warning::new(format!(
            "{RESTART_ON_ROTATION}: this pod binds by files only, which the kubelet updates in place when the Secret changes; no restart is needed and none will be made"
        ))
    })
}

/// Rule 5: restart on rotation asked while this dbbind runs without it.
fn restarts_off(requests: &BindingRequests, restarts: RotationRestarts) -> Option<Warning> {
    (requests.restart_on_rotation && restarts == RotationRestarts::Off).then(|| {
        Warning::new(format!(
            "{RESTART_ON_ROTATION}: this dbbind runs without --restart-on-rotation (chart value rotation.enabled), so nothing restarts this workload when its Secret changes"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::OnConflict;
    use crate::env_set::EnvSets;

    fn requests(restart_on_rotation: bool, env: EnvSets) -> BindingRequests {
        BindingRequests {
            bindings: vec![crate::binding::BindingRequest {
                alias: None,
                secret: "s".to_owned(),
                profile: None,
                literals: Default::default(),
                keys: Default::default(),
                env,
                files: true,
                endpoint: None,
                pooler: None,
                ca: None,
                client_cert: None,
            }],
            containers: None,
            on_conflict: OnConflict::Keep,
            restart_on_rotation,
        }
    }

    #[test]
    fn restarts_asked_for_files_only_are_pointless_and_said_so() {
        assert!(files_only(&requests(true, EnvSets::NONE)).is_some());
        assert!(files_only(&requests(true, EnvSets::postgres_only())).is_none());
        assert!(files_only(&requests(false, EnvSets::NONE)).is_none());
    }

    #[test]
    fn restarts_asked_of_a_dbbind_that_does_not_restart_are_warned_only_when_it_is_known() {
        let asked = requests(true, EnvSets::postgres_only());
        assert!(restarts_off(&asked, RotationRestarts::Off).is_some());
        assert!(restarts_off(&asked, RotationRestarts::On).is_none());
        assert!(restarts_off(&asked, RotationRestarts::Unknown).is_none());
        let not_asked = requests(false, EnvSets::postgres_only());
        assert!(restarts_off(&not_asked, RotationRestarts::Off).is_none());
    }
}
