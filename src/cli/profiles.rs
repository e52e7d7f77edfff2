//! `dbbind profiles [NAME]`.

use std::io::Write;

use clap::Args;

use super::EXIT_BAD_INPUT;
use dbbind_core::profile::{ProfileFile, ProfileSet};

#[derive(Debug, Args)]
pub struct ProfilesArgs {
    /// Show this profile in the profiles-file schema, ready to copy into --profiles-file.
    pub name: Option<String>,
}

pub fn run(
    args: &ProfilesArgs,
    profiles: &ProfileSet,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> u8 {
    let text = match &args.name {
        None => table(profiles),
        Some(name) => match profiles.get(name) {
            Some(profile) => {
                let file = ProfileFile {
                    profiles: vec![profile.clone()],
                };
                serde_yaml_ng::to_string(&file).unwrap_or_default()
            }
            None => {
                let _ = writeln!(
                    stderr,
                    "Error: unknown profile {name:?}; profiles: {}",
                    profiles.names().join(", ")
                );
                return EXIT_BAD_INPUT;
            }
        },
    };
    if stdout.write_all(text.as_bytes()).is_err() {
        return EXIT_BAD_INPUT;
    }
    0
}

/// Name, whether `auto` can pick it, and what it is for; in detection order.
fn table(profiles: &ProfileSet) -> String {
    let width = profiles
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!("{:<width$}  AUTO  DESCRIPTION\n", "NAME");
    for profile in profiles.iter() {
        let auto = if profile.detect.is_empty() {
            "no"
        } else {
            "yes"
        };
        out.push_str(&format!(
            "{:<width$}  {auto:<4}  {}\n",
            profile.name, profile.description
        ));
    }
    out
}
