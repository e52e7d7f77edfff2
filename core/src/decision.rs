//! What the core decides for a pod. Denials are values, not errors: denying a pod is dbbind
//! working as intended.

use json_patch::Patch;

use crate::binding::AppliedBinding;
use crate::message::{Denial, Warning};

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Admit the pod. An empty patch means it is left as it is (nothing asked, opted out, or
    /// already bound).
    Allow {
        patch: Patch,
        warnings: Vec<Warning>,
        bindings: Vec<AppliedBinding>,
    },
    Deny {
        denial: Denial,
        warnings: Vec<Warning>,
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

    /// Deny, with nothing else to say.
    pub fn deny(denial: impl Into<Denial>) -> Decision {
        Decision::Deny {
            denial: denial.into(),
            warnings: Vec::new(),
        }
    }

    pub fn warnings(&self) -> &[Warning] {
        match self {
            Decision::Allow { warnings, .. } | Decision::Deny { warnings, .. } => warnings,
        }
    }

    /// Admitted with no patch operation.
    pub fn is_unchanged(&self) -> bool {
        matches!(self, Decision::Allow { patch, .. } if patch.0.is_empty())
    }
}
