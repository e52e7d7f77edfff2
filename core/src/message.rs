//! What dbbind tells the user: denials and warnings.
//!
//! Every message a user reads starts with `dbbind:`, so `kubectl` output says which webhook
//! spoke. The prefix is added here, when a message is made, and nowhere else: the modules that
//! find problems describe them, and this one says who is talking. A leaf module.

use std::fmt;

/// What starts every message.
pub const PREFIX: &str = "dbbind: ";

/// A refusal: the pod (or workload) is not admitted. A value, not an error: denying is dbbind
/// working as intended. The server answers it with HTTP-style code 400 (`BadRequest`): every
/// denial is about the object the user sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    message: String,
}

impl Denial {
    /// A denial saying `text`; names the annotation, Secret, key or container at fault.
    pub fn new(text: impl fmt::Display) -> Denial {
        Denial {
            message: format!("{PREFIX}{text}"),
        }
    }

    /// The message as the user reads it, `dbbind:` first.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Something the user should know about an admitted object (`kubectl` prints it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    message: String,
}

impl Warning {
    pub fn new(text: impl fmt::Display) -> Warning {
        Warning {
            message: format!("{PREFIX}{text}"),
        }
    }

    /// The message as the user reads it, `dbbind:` first.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Warning> for String {
    fn from(warning: Warning) -> String {
        warning.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_start_with_the_prefix_once() {
        assert_eq!(
            Denial::new("annotation \"x\" is bad").message(),
            "dbbind: annotation \"x\" is bad"
        );
        assert_eq!(Warning::new("left out").to_string(), "dbbind: left out");
    }
}
