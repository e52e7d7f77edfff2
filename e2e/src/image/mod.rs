//! Container images built by the harness, with no registry: the sandbox ("pause") image, the app
//! image and dbbind's own image, written as OCI image layouts (one uncompressed layer each) in a
//! tar archive that `ctr images import` reads.
//!
//! dbbind's image is what the Dockerfile's final stage makes, assembled without a Docker engine:
//! the binary of the Dockerfile's own locked release build, the libraries `ldd` lists for it
//! (what the distroless `cc` base provides), and the base's `/etc/passwd` entry for the nonroot
//! user; no shell. Its config (user, entrypoint, command, ports) is checked against the
//! Dockerfile by `e2e/tests/image.rs`.
//!
//! The app image holds real, unmodified clients: Debian's `psql` with every library `ldd` lists,
//! pgx (`pgx-check`, static), node-postgres (the machine's `node` with its libraries, and `pg`
//! from the npm registry), Spring Boot and pgjdbc (a `jlink` runtime of the machine's JDK 17 and
//! jars from Maven Central), psycopg and Django (Debian's `python3.11` with its standard library,
//! packages from PyPI), built by `scripts/drivers`; and busybox (Debian's `busybox-static`) for
//! a shell. Containers get their check as a shell command, so the image stays the same for
//! every scenario.

use anyhow::anyhow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

mod app;
mod host_files;
mod oci;
pub use app::*;
use host_files::*;
pub use oci::*;

/// The sandbox image the node's containerd pins.
pub const PAUSE_IMAGE: &str = "registry.invalid/dbbind-e2e/pause:1";

/// The app image scenarios run.
pub const APP_IMAGE: &str = "registry.invalid/dbbind-e2e/app:1";

/// dbbind's image as the chart pulls it by default (`image.repository` `dbbind`, the tag the
/// chart's appVersion), under the name containerd's CRI gives an unqualified reference.
pub const DBBIND_REPOSITORY: &str = "docker.io/library/dbbind";

/// A second tag of the same image, for the upgrade the suite performs.
pub const DBBIND_NEXT_TAG_SUFFIX: &str = "-next";

/// The Dockerfile's final stage, as an image config: `USER`, `ENTRYPOINT`, `CMD`, `EXPOSE`.
pub const DBBIND_USER: &str = "65532:65532";

pub const DBBIND_ENTRYPOINT: &[&str] = &["/dbbind"];

pub const DBBIND_CMD: &[&str] = &["serve"];

pub const DBBIND_PORTS: &[&str] = &["8443/tcp", "9090/tcp"];

/// The pause image: the static binary `scripts/node-tools` built.
pub fn write_pause(pause_binary: &Path, out: &Path) -> Result<()> {
    let entries = vec![Entry::HostFile {
        path: "pause".to_owned(),
        host: pause_binary.to_owned(),
        mode: 0o755,
    }];
    let config = Config {
        entrypoint: &["/pause"],
        cmd: &[],
        user: None,
        env: vec![DEFAULT_PATH.to_owned()],
        ports: &[],
    };
    write_archive(&[PAUSE_IMAGE], &entries, &config, out)
}

/// dbbind's image names: `<repository>:<tag>` and the same with [`DBBIND_NEXT_TAG_SUFFIX`].
pub fn dbbind_images(tag: &str) -> [String; 2] {
    [
        format!("{DBBIND_REPOSITORY}:{tag}"),
        format!("{DBBIND_REPOSITORY}:{tag}{DBBIND_NEXT_TAG_SUFFIX}"),
    ]
}

/// dbbind's image, as the Dockerfile's final stage makes it: `binary` (the release build) at
/// `/dbbind`, the shared libraries it links to, the nonroot user, and nothing else; tagged
/// `tag` and `tag` + [`DBBIND_NEXT_TAG_SUFFIX`].
pub fn write_dbbind(binary: &Path, tag: &str, out: &Path) -> Result<()> {
    let mut entries = vec![
        Entry::HostFile {
            path: "dbbind".to_owned(),
            host: binary.to_owned(),
            mode: 0o755,
        },
        // As in the distroless base: root, nobody, and the nonroot user the image runs as.
        Entry::Text {
            path: "etc/passwd".to_owned(),
            text: "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n".to_owned(),
        },
        Entry::Text {
            path: "etc/group".to_owned(),
            text: "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n".to_owned(),
        },
        Entry::Dir("tmp".to_owned()),
    ];
    for library in libraries(binary)? {
        entries.push(Entry::HostFile {
            path: library.trim_start_matches('/').to_owned(),
            host: PathBuf::from(&library),
            mode: 0o755,
        });
    }
    let config = Config {
        entrypoint: DBBIND_ENTRYPOINT,
        cmd: DBBIND_CMD,
        user: Some(DBBIND_USER),
        env: vec![DEFAULT_PATH.to_owned()],
        ports: DBBIND_PORTS,
    };
    let names = dbbind_images(tag);
    write_archive(&[&names[0], &names[1]], &entries, &config, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_is_an_oci_layout_whose_digests_match() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("bin");
        std::fs::write(&binary, b"#!fake").unwrap();
        let out = dir.path().join("image.tar");
        write_pause(&binary, &out).unwrap();
        let image = read_archive(&out).unwrap();
        assert_eq!(image.names, [PAUSE_IMAGE]);
        assert_eq!(image.paths, ["pause"]);
        assert_eq!(image.config["config"]["Entrypoint"], json!(["/pause"]));
    }
}
