//! The container image, without a Docker engine (none runs on these machines): the Dockerfile
//! passes a linter, its stages are what a production image should be, its build command, run
//! here, builds a release binary that works, and the image the suite assembles for the node from
//! that binary has the final stage's config.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use dbbind_e2e::tools::repo_root;

fn dockerfile() -> String {
    std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap()
}

/// The instructions, without comments: (instruction, arguments).
fn instructions() -> Vec<(String, String)> {
    dockerfile()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (instruction, args) = line.split_once(' ').unwrap_or((line, ""));
            (instruction.to_uppercase(), args.trim().to_owned())
        })
        .collect()
}

#[test]
fn the_dockerfile_passes_the_linter() {
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/dockerfilelint"))
        .arg(repo_root().join("Dockerfile"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("Issues: None found"), "{report}");
}

#[test]
fn two_stages_and_a_minimal_non_root_final_image() {
    let instructions = instructions();
    let froms: Vec<&String> = instructions
        .iter()
        .filter(|(i, _)| i == "FROM")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[0].ends_with(" AS build"), "{}", froms[0]);
    assert!(
        froms[1].contains("distroless") && froms[1].ends_with(":nonroot"),
        "{}",
        froms[1]
    );
    let final_stage: Vec<&(String, String)> = instructions
        .iter()
        .skip_while(|(i, a)| !(i == "FROM" && a == froms[1]))
        .collect();
    let copies: Vec<&String> = final_stage
        .iter()
        .filter(|(i, _)| i == "COPY")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(
        copies,
        [&"--from=build /src/target/release/dbbind /dbbind".to_owned()],
        "only the binary"
    );
    assert!(
        final_stage
            .iter()
            .any(|(i, a)| i == "USER" && a == "65532:65532")
    );
    assert!(
        final_stage
            .iter()
            .any(|(i, a)| i == "ENTRYPOINT" && a == "[\"/dbbind\"]")
    );
    assert!(
        !final_stage.iter().any(|(i, _)| i == "RUN"),
        "nothing runs in the final stage"
    );
    let ignored = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    for entry in [".git", "target", "certs"] {
        assert!(
            ignored.lines().any(|l| l == entry),
            "{entry} not in .dockerignore"
        );
    }
}

/// Runs the build stage's `RUN cargo build …` as written, then the binary it produced.
#[test]
fn the_build_command_builds_a_working_release_binary() {
    let (_, command) = instructions()
        .into_iter()
        .find(|(i, a)| i == "RUN" && a.starts_with("cargo build"))
        .unwrap();
    assert!(
        command.contains("--locked") && command.contains("--release"),
        "{command}"
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let status = Command::new(cargo)
        .args(&args)
        .current_dir(repo_root())
        .status()
        .unwrap();
    assert!(status.success(), "{command}");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let output = Command::new(target.join("release/dbbind"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    let version = String::from_utf8_lossy(&output.stdout);
    assert!(version.starts_with("dbbind "), "{version}");
}

/// The final stage's instruction's arguments, e.g. `USER` → `65532:65532`.
fn final_stage(instruction: &str) -> Vec<String> {
    let instructions = instructions();
    let last_from = instructions.iter().rposition(|(i, _)| i == "FROM").unwrap();
    instructions[last_from..]
        .iter()
        .filter(|(i, _)| i == instruction)
        .map(|(_, a)| a.clone())
        .collect()
}

/// The image the suite runs on the node (e2e/src/image.rs) is the Dockerfile's final stage:
/// the same user, entrypoint, command and ports, the binary at the path the Dockerfile copies
/// it to, no shell, and nothing but the binary, what it links to and the nonroot user's entry.
#[test]
fn the_assembled_image_has_the_final_stages_config() {
    use dbbind_e2e::image;
    let binary = dbbind_e2e::tools::dbbind_release().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("dbbind.tar");
    image::write_dbbind(&binary, "0.1.0", &archive).unwrap();
    let read = image::read_archive(&archive).unwrap();
    let config = &read.config["config"];

    let json_form = |instruction: &str| -> serde_json::Value {
        let args = final_stage(instruction);
        assert_eq!(args.len(), 1, "{instruction}: {args:?}");
        serde_json::from_str(&args[0]).unwrap()
    };
    assert_eq!(config["Entrypoint"], json_form("ENTRYPOINT"));
    assert_eq!(config["Cmd"], json_form("CMD"));
    assert_eq!(config["User"], final_stage("USER")[0].as_str());
    let exposed: Vec<String> = final_stage("EXPOSE")
        .iter()
        .flat_map(|ports| ports.split_whitespace())
        .map(|port| format!("{port}/tcp"))
        .collect();
    let mut ports: Vec<String> = config["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    ports.sort();
    assert_eq!(ports, exposed);

    // COPY --from=build <path> /dbbind: the binary where the entrypoint expects it.
    let copy = &final_stage("COPY")[0];
    let target = copy.split_whitespace().last().unwrap();
    assert_eq!(format!("/{}", read.paths[0]), target);
    assert_eq!(config["Entrypoint"][0], target);
    for path in &read.paths {
        let allowed = path == "dbbind"
            || path == "etc/passwd"
            || path == "etc/group"
            || path.ends_with('/')
            || path.contains(".so");
        assert!(allowed, "{path} is more than the binary needs");
    }
    assert!(
        !read
            .paths
            .iter()
            .any(|p| p.ends_with("/sh") || p.contains("busybox")),
        "a shell in the image"
    );
    assert!(read.paths.iter().any(|p| p.contains("libc.so")));
    assert_eq!(
        read.names,
        [
            "docker.io/library/dbbind:0.1.0",
            "docker.io/library/dbbind:0.1.0-next"
        ]
    );
}
