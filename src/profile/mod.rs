//! Profiles: how to read a connection out of a Secret of a given shape (DESIGN §4).
//!
//! Profiles are data. The built-ins live in `builtin.yaml`, written in exactly the schema an
//! operator's `--profiles-file` uses, so a user profile can start as a copy of a built-in.

mod detect;
mod schema;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

pub use detect::{DetectRule, OwnerMatch, SecretNamePattern};
pub use schema::{FieldSource, Profile, ProfileFile};

use crate::secret::SecretView;

/// The built-in profiles, in `auto` detection order.
const BUILTIN_YAML: &str = include_str!("builtin.yaml");

/// The profile name that asks dbbind to detect the profile from the Secret.
pub const AUTO: &str = "auto";

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("dbbind: cannot read profiles file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("dbbind: profiles file {path} is not valid: {source}")]
    Parse {
        path: String,
        source: serde_yaml_ng::Error,
    },
    #[error("dbbind: profiles file {path}: profile {profile:?}: {problem}")]
    Invalid {
        path: String,
        profile: String,
        problem: String,
    },
}

/// The profiles in effect, in `auto` detection order.
#[derive(Clone, Debug)]
pub struct ProfileSet {
    profiles: Vec<Profile>,
}

impl ProfileSet {
    /// The built-in profiles alone.
    pub fn builtin() -> ProfileSet {
        static BUILTIN: LazyLock<Vec<Profile>> = LazyLock::new(|| {
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

    /// Built-ins with a user file laid over them. A user profile with a built-in's name replaces
    /// it in place (keeping its detection position); new profiles are tried before the
    /// built-ins, since an operator adds a profile for a shape more specific than ours.
    pub fn with_file(path: &Path) -> Result<ProfileSet, ProfileError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: display.clone(),
            source,
        })?;
        let user = parse_profiles(&text, &display)?;
        Ok(ProfileSet::builtin().overlay(user))
    }

    /// Loads the built-ins, and the user file when one is given.
    pub fn load(path: Option<&Path>) -> Result<ProfileSet, ProfileError> {
        match path {
            Some(path) => ProfileSet::with_file(path),
            None => Ok(ProfileSet::builtin()),
        }
    }

    fn overlay(mut self, user: Vec<Profile>) -> ProfileSet {
        let mut added = Vec::new();
        for profile in user {
            match self.profiles.iter_mut().find(|p| p.name == profile.name) {
                Some(existing) => *existing = profile,
                None => added.push(profile),
            }
        }
        added.append(&mut self.profiles);
        ProfileSet { profiles: added }
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|profile| profile.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.iter()
    }

    pub fn names(&self) -> Vec<&str> {
        self.profiles.iter().map(|p| p.name.as_str()).collect()
    }

    /// The first profile whose detection rules match, in order.
    pub fn detect(&self, secret: &SecretView) -> Option<&Profile> {
        self.profiles.iter().find(|profile| {
            profile
                .detect
                .iter()
                .any(|rule| rule.matches(secret, profile))
        })
    }

    /// What `auto` tried, for the denial when nothing matched: `name (rule, or rule)` each.
    pub fn detection_summary(&self) -> String {
        self.profiles
            .iter()
            .filter(|profile| !profile.detect.is_empty())
            .map(|profile| {
                let rules: Vec<String> = profile.detect.iter().map(ToString::to_string).collect();
                format!("{} ({})", profile.name, rules.join(" or "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The whole set in the profiles-file schema.
    pub fn to_yaml(&self) -> String {
        let file = ProfileFile {
            profiles: self.profiles.clone(),
        };
        serde_yaml_ng::to_string(&file).unwrap_or_default()
    }
}

fn parse_profiles(text: &str, path: &str) -> Result<Vec<Profile>, ProfileError> {
    let file: ProfileFile =
        serde_yaml_ng::from_str(text).map_err(|source| ProfileError::Parse {
            path: path.to_owned(),
            source,
        })?;
    let mut seen = BTreeMap::new();
    for profile in &file.profiles {
        let invalid = |problem: String| ProfileError::Invalid {
            path: path.to_owned(),
            profile: profile.name.clone(),
            problem,
        };
        profile.validate().map_err(invalid)?;
        if seen.insert(profile.name.clone(), ()).is_some() {
            return Err(invalid("defined twice in the same file".to_owned()));
        }
    }
    Ok(file.profiles)
}

#[cfg(test)]
mod tests;
