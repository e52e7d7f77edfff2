//! Flag groups' defaults. Each subsystem owns its flags as a clap `Args` group (kubert's way:
//! `server::Limits`, `tls::flags::TlsFlags`, `cache::CacheFlags`, …), with each default written
//! once, in its `#[arg]` attribute; a group's `Default` is what those attributes parse to.

use clap::{Args, Command, FromArgMatches};

/// The group `T` as its flags' defaults make it: no argument given, and no environment
/// variable read (tests and benchmarks must not depend on the shell they run in).
pub fn defaults<T: Args + FromArgMatches>() -> T {
    let command = T::augment_args(Command::new("defaults")).mut_args(|arg| arg.env(None));
    let parsed = command
        .try_get_matches_from(["defaults"])
        .and_then(|matches| T::from_arg_matches(&matches));
    match parsed {
        Ok(group) => group,
        // Only a default that does not parse gets here: a programming error the unit tests
        // of every group catch.
        Err(error) => panic!("a flag group's defaults do not parse: {error}"),
    }
}
