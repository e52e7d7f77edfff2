//! What the core decides for a pod. Denials are values, not errors: denying a pod is dbbind
//! working as intended.

use std::fmt;

use json_patch::Patch;

use crate::binding::ResolvedBinding;

/// A refusal with the HTTP-style code the API server reports and a message for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub code: u16,
    /// Starts with `dbbind:`; names the annotation, Secret, key or container at fault.
    pub message: String,
}

impl Denial {
    pub fn bad_request(message: String) -> Denial {
        Denial { code: 400, message }
    }
}

/// One binding as applied, for the `dbbind.io/bindings` annotation, logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedBinding {
    pub name: String,
    pub secret: String,
    pub profile: String,
}

impl From<&ResolvedBinding> for AppliedBinding {
    fn from(binding: &ResolvedBinding) -> AppliedBinding {
        AppliedBinding {
            name: binding.request.name().to_owned(),
            secret: binding.request.secret.clone(),
            profile: binding.profile.clone(),
        }
    }
}

/// `<binding>=<secret>/<profile>`: one entry of the `dbbind.io/bindings` annotation, and of the
/// admission log line.
impl fmt::Display for AppliedBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}/{}", self.name, self.secret, self.profile)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Admit the pod. An empty patch means it is left as it is (nothing asked, opted out, or
    /// already bound).
    Allow {
        patch: Patch,
        warnings: Vec<String>,
        bindings: Vec<AppliedBinding>,
    },
    Deny {
        denial: Denial,
        warnings: Vec<String>,
    },
}

impl Decision {
    /// Admit unchanged, with nothing to say.
    pub fn unchanged() -> Decision {
        Decision::Allow {
            patch: Patch(Vec::new()),
            warnings: Vec::new(),
            bindings: Vec::new(),
        }
    }

    pub fn warnings(&self) -> &[String] {
        match self {
            Decision::Allow { warnings, .. } | Decision::Deny { warnings, .. } => warnings,
        }
    }

    /// The label used for the outcome in logs and metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Decision::Allow { patch, .. } if patch.0.is_empty() => "unchanged",
            Decision::Allow { .. } => "patched",
            Decision::Deny { .. } => "denied",
        }
    }
}
