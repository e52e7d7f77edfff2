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
    cause: Cause,
}

/// What a denial depends on. A workload is checked when it is applied, perhaps in the same batch
/// as its Secret: what only the Secret's state decides is a warning there, and a denial only
/// when the Pod is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The object itself: its annotations, containers, volumes.
    Object,
    /// The Secret as it is now: missing, without the keys needed, of no known shape.
    SecretState,
}

impl Denial {
    /// A denial saying `text`, caused by the object itself; names the annotation or container
    /// at fault.
    pub fn new(text: impl fmt::Display) -> Denial {
        Denial {
            message: format!("{PREFIX}{text}"),
            cause: Cause::Object,
        }
    }

    /// A denial that the Secret's current state decides.
    pub fn about_secret(text: impl fmt::Display) -> Denial {
        Denial {
            message: format!("{PREFIX}{text}"),
            cause: Cause::SecretState,
        }
    }

    pub fn cause(&self) -> Cause {
        self.cause
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

/// The same message, as a warning (a workload's Secret-dependent problem).
impl From<Denial> for Warning {
    fn from(denial: Denial) -> Warning {
        Warning {
            message: denial.message,
        }
    }
}

impl From<Warning> for String {
    fn from(warning: Warning) -> String {
        warning.message
    }
}

/// The most of any input a message repeats.
pub const MAX_ECHO_BYTES: usize = 64;

/// Input shown in a message (an annotation value, a name): quoted, and when longer than
/// [`MAX_ECHO_BYTES`] cut there (at a character boundary) with its full length, so a huge value
/// is never sent back whole and a message stays readable.
pub struct Echo<'a> {
    input: &'a str,
    quoted: bool,
}

/// `input` quoted (`"abc"`), cut at 64 bytes.
pub fn echo(input: &str) -> Echo<'_> {
    Echo {
        input,
        quoted: true,
    }
}

/// `input` as it is (`abc`), cut at 64 bytes: for words such as a Secret's type or key names.
pub fn clip(input: &str) -> Echo<'_> {
    Echo {
        input,
        quoted: false,
    }
}

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input = self.input;
        let mut cut = input.len().min(MAX_ECHO_BYTES);
        while !input.is_char_boundary(cut) {
            cut -= 1;
        }
        let shown = &input[..cut];
        if self.quoted {
            write!(f, "{shown:?}")?;
        } else {
            f.write_str(shown)?;
        }
        if cut < input.len() {
            write!(f, "… ({} bytes)", input.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_are_quoted_and_cut_at_64_bytes() {
        assert_eq!(echo("abc").to_string(), "\"abc\"");
        let exact = "a".repeat(64);
        assert_eq!(echo(&exact).to_string(), format!("{exact:?}"));
        let long = "b".repeat(1 << 20);
        assert_eq!(
            echo(&long).to_string(),
            format!("\"{}\"… (1048576 bytes)", "b".repeat(64))
        );
        // 63 ASCII bytes, then a two-byte character across the limit: cut before it.
        let straddling = format!("{}é{}", "c".repeat(63), "d".repeat(10));
        assert_eq!(
            echo(&straddling).to_string(),
            format!("\"{}\"… (75 bytes)", "c".repeat(63))
        );
        assert_eq!(clip("Opaque").to_string(), "Opaque");
        assert_eq!(
            clip(&long).to_string(),
            format!("{}… (1048576 bytes)", "b".repeat(64))
        );
    }

    #[test]
    fn messages_start_with_the_prefix_once() {
        assert_eq!(
            Denial::new("annotation \"x\" is bad").message(),
            "dbbind: annotation \"x\" is bad"
        );
        assert_eq!(Warning::new("left out").to_string(), "dbbind: left out");
    }
}
