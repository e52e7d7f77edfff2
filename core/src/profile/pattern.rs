//! A regular expression over a Secret's name: what `fromSecretName` derives a value with, and
//! what a detect rule's `name` matches.

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    #[error(transparent)]
    Regex(#[from] regex::Error),
    #[error("pattern {0:?} has more than one capture group")]
    TooManyGroups(String),
}

/// A compiled pattern; it serializes back to its source text for the profiles file.
#[derive(Clone, Debug)]
pub struct SecretNamePattern {
    regex: Regex,
}

impl SecretNamePattern {
    pub fn new(pattern: &str) -> Result<SecretNamePattern, PatternError> {
        let regex = Regex::new(pattern)?;
        if regex.captures_len() > 2 {
            return Err(PatternError::TooManyGroups(pattern.to_owned()));
        }
        Ok(SecretNamePattern { regex })
    }

    pub fn is_match(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }

    /// The value this pattern derives from `name`: its capture group, or the whole match.
    pub fn extract<'a>(&self, name: &'a str) -> Option<&'a str> {
        let captures = self.regex.captures(name)?;
        let value = captures.get(1).or_else(|| captures.get(0))?.as_str();
        (!value.is_empty()).then_some(value)
    }

    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

impl Serialize for SecretNamePattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.regex.as_str())
    }
}

impl<'de> Deserialize<'de> for SecretNamePattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        SecretNamePattern::new(&text).map_err(serde::de::Error::custom)
    }
}
