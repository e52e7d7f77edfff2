//! The `dbbind` binary: `render` over the examples (golden files), its exit codes and streams,
//! `profiles`, the secret-value canary on stdout/stderr, and the README kept in step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbbind_test_support as support;

mod canary;
mod docs;
mod hooks;
mod profiles;
mod render;
mod serve;

use std::io::Write;
use std::process::{Command, Stdio};

/// What a run of the binary printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `dbbind` with `args`, feeding `stdin`.
pub fn dbbind(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dbbind"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DBBIND_PROFILES_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// Compares with a golden file; `DBBIND_BLESS=1` rewrites it instead.
pub fn assert_golden(relative: &str, actual: &str) {
    let path = support::repo_path(relative);
    if std::env::var_os("DBBIND_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{relative} is missing; run with DBBIND_BLESS=1 to create it"));
    assert_eq!(
        actual, expected,
        "{relative} differs; rerun with DBBIND_BLESS=1 if the change is intended"
    );
}
