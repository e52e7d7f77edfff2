//! The architecture, checked: the core crate stays pure (no runtime, HTTP, TLS or API client
//! among its dependencies), and within each crate a module imports only the modules its
//! `lib.rs` lists before it, so no two modules import each other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_core_crate_depends_on_no_runtime_http_tls_or_client() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "--locked", "-p", "dbbind-core", "-e", "normal"])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    assert!(tree.contains("kube-core"), "{tree}");
    for forbidden in [
        "tokio",
        "hyper",
        "rustls",
        "axum",
        "kube-client",
        "kube-runtime",
        "kube v",
    ] {
        assert!(
            !tree.lines().any(|line| line.starts_with(forbidden)),
            "dbbind-core depends on {forbidden}:\n{tree}"
        );
    }
}

/// The top-level modules in the order `lib.rs`'s doc comment lists them ("Modules, leaves
/// first: [`a`], [`b`], …").
fn module_order(lib: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(lib).unwrap();
    let doc: String = text
        .lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join(" ");
    let listed = doc
        .split_once("Modules, leaves first:")
        .expect("lib.rs lists its modules, leaves first")
        .1;
    let listed = listed.split_once(". Each").map_or(listed, |(list, _)| list);
    listed
        .split("[`")
        .skip(1)
        .filter_map(|part| part.split_once("`]").map(|(name, _)| name.to_owned()))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Which top-level module a file of `src` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_owned()
}

fn check_layers(crate_dir: &str) -> usize {
    let src = root().join(crate_dir).join("src");
    let order = module_order(&src.join("lib.rs"));
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut checked = 0;
    for file in files {
        let module = module_of(&src, &file);
        if module == "lib" || module == "main" || file.ends_with("tests.rs") {
            continue;
        }
        let position = order
            .iter()
            .position(|m| *m == module)
            .unwrap_or_else(|| panic!("{crate_dir}: module {module} is not in lib.rs's list"));
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests may reach anywhere: only the code above them counts.
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if name == module || name.is_empty() {
                continue;
            }
            let used = order.iter().position(|m| *m == name).unwrap_or_else(|| {
                panic!("{}: crate::{name} is not in lib.rs's list", file.display())
            });
            assert!(
                used < position,
                "{}: module {module} imports {name}, which lib.rs lists after it",
                file.display()
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn modules_import_only_the_modules_listed_before_them() {
    assert!(check_layers("core") > 10);
    assert!(check_layers(".") > 10);
}
