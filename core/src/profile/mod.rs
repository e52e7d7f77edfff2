//! Profiles: how to read a connection out of a Secret of a given shape (docs/design.md §4).
//!
//! Profiles are data. The built-ins live in `builtin.yaml`, written in exactly the schema an
//! operator's `--profiles-file` uses, so a user profile can start as a copy of a built-in.

mod detect;
mod pattern;
mod schema;

use std::collections::BTreeSet;
use std::sync::LazyLock;

pub use detect::Detection;
pub use pattern::{PatternError, SecretNamePattern};
pub use schema::{
    CLUSTER_PLACEHOLDER, CaSecret, DetectRule, Endpoints, FieldSource, InvalidProfile, OwnerMatch,
    POOLER_PLACEHOLDER, PoolerEndpoint, Profile, ProfileFile, Tls,
};

use crate::secret::{OwnerKind, SecretView, ShapeFilter};

/// The built-in profiles, in `auto` detection order.
const BUILTIN_YAML: &str = include_str!("builtin.yaml");

/// The profile name that asks dbbind to detect the profile from the Secret.
pub const AUTO: &str = "auto";

/// A profiles file that does not load. `source_name` names the file (its path, or `builtin.yaml`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    #[error("profiles file {source_name} is not valid: {error}")]
    Parse {
        source_name: String,
        error: serde_yaml_ng::Error,
    },
    #[error("profiles file {source_name}: profile {profile:?}: {problem}")]
    Invalid {
        source_name: String,
        profile: String,
        problem: InvalidProfile,
    },
}

/// A profile with its detect rules compiled.
#[derive(Clone, Debug)]
struct Loaded {
    profile: Profile,
    detections: Vec<Detection>,
}

impl Loaded {
    fn new(profile: Profile) -> Loaded {
        let detections = profile
            .detect
            .iter()
            .map(|rule| Detection::compile(rule, &profile))
            .collect();
        Loaded {
            profile,
            detections,
        }
    }
}

/// The profiles in effect, in `auto` detection order.
#[derive(Clone, Debug)]
pub struct ProfileSet {
    profiles: Vec<Loaded>,
}

impl ProfileSet {
    /// The built-in profiles alone.
    pub fn builtin() -> ProfileSet {
        static BUILTIN: LazyLock<Vec<Loaded>> = LazyLock::new(|| {
            match parse_profiles(BUILTIN_YAML, "builtin.yaml") {
                Ok(profiles) => profiles,
                // The file is compiled in and covered by the unit tests: this cannot fail at run
                // time unless the build itself is broken.
                Err(error) => panic!("built-in profiles are invalid: {error}"),
            }
        });
        ProfileSet {
            profiles: BUILTIN.clone(),
        }
    }

    /// Built-ins with a profiles file's text laid over them. A user profile with a built-in's
    /// name replaces it in place (keeping its detection position); new profiles are tried before
    /// the built-ins, since an operator adds a profile for a shape more specific than ours.
    /// `source_name` names the file in errors.
    pub fn with_overlay(text: &str, source_name: &str) -> Result<ProfileSet, ProfileError> {
        let user = parse_profiles(text, source_name)?;
        Ok(ProfileSet::builtin().overlay(user))
    }

    fn overlay(mut self, user: Vec<Loaded>) -> ProfileSet {
        let mut added = Vec::new();
        for profile in user {
            match self
                .profiles
                .iter_mut()
                .find(|p| p.profile.name == profile.profile.name)
            {
                Some(existing) => *existing = profile,
                None => added.push(profile),
            }
        }
        added.append(&mut self.profiles);
        ProfileSet { profiles: added }
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.iter().find(|profile| profile.name == name)
    }

    /// The profiles in detection order.
    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.iter().map(|loaded| &loaded.profile)
    }

    pub fn names(&self) -> Vec<&str> {
        self.iter().map(|p| p.name.as_str()).collect()
    }

    /// The first profile whose detection rules match, in order.
    pub fn detect(&self, secret: &SecretView) -> Option<&Profile> {
        self.profiles
            .iter()
            .find(|loaded| loaded.detections.iter().any(|rule| rule.matches(secret)))
            .map(|loaded| &loaded.profile)
    }

    /// Every profile whose rules match, in detection order, with the rules that do: what
    /// `auto` would choose from (it takes the first), for the detection matrix.
    pub fn matching(&self, secret: &SecretView) -> Vec<(&str, Vec<String>)> {
        self.profiles
            .iter()
            .filter_map(|loaded| {
                let rules: Vec<String> = loaded
                    .detections
                    .iter()
                    .filter(|rule| rule.matches(secret))
                    .map(ToString::to_string)
                    .collect();
                (!rules.is_empty()).then_some((loaded.profile.name.as_str(), rules))
            })
            .collect()
    }

    /// What `auto` tried, for the denial when nothing matched: `name (rule, or rule)` each.
    pub fn detection_summary(&self) -> String {
        self.profiles
            .iter()
            .filter(|loaded| !loaded.detections.is_empty())
            .map(|loaded| {
                let rules: Vec<String> =
                    loaded.detections.iter().map(ToString::to_string).collect();
                format!("{} ({})", loaded.profile.name, rules.join(" or "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// What of a Secret's labels and owners these profiles read; a cache needs nothing else.
    pub fn shape_filter(&self) -> ShapeFilter {
        let mut filter = ShapeFilter::default();
        for profile in self.iter() {
            for rule in &profile.detect {
                filter.labels.extend(rule.labels.keys().cloned());
                if let Some(owner) = &rule.owner {
                    filter.owners.insert(OwnerKind {
                        group: owner.group.clone(),
                        kind: owner.kind.clone(),
                    });
                }
            }
            if let Some(label) = profile
                .endpoints
                .as_ref()
                .and_then(|e| e.cluster_label.as_ref())
            {
                filter.labels.insert(label.clone());
            }
        }
        filter
    }

    /// The whole set in the profiles-file schema.
    pub fn to_yaml(&self) -> String {
        let file = ProfileFile {
            profiles: self.iter().cloned().collect(),
        };
        serde_yaml_ng::to_string(&file).unwrap_or_default()
    }
}

fn parse_profiles(text: &str, source_name: &str) -> Result<Vec<Loaded>, ProfileError> {
    let file: ProfileFile = serde_yaml_ng::from_str(text).map_err(|error| ProfileError::Parse {
        source_name: source_name.to_owned(),
        error,
    })?;
    let mut seen = BTreeSet::new();
    for profile in &file.profiles {
        let invalid = |problem: InvalidProfile| ProfileError::Invalid {
            source_name: source_name.to_owned(),
            profile: profile.name.clone(),
            problem,
        };
        profile.validate().map_err(invalid)?;
        if !seen.insert(profile.name.as_str()) {
            return Err(invalid(InvalidProfile::Duplicate));
        }
    }
    Ok(file.profiles.into_iter().map(Loaded::new).collect())
}

#[cfg(test)]
mod tests;
