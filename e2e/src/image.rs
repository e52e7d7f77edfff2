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

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

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

/// Busybox applets the checks use, as links to `/bin/busybox`.
const APPLETS: [&str; 17] = [
    "sh", "sleep", "cat", "ls", "stat", "id", "env", "test", "[", "tr", "head", "sed", "grep",
    "printf", "echo", "sort", "true",
];

/// What goes into an image's single layer.
enum Entry {
    Dir(String),
    /// A file copied from the host (symlinks followed), with its mode.
    HostFile {
        path: String,
        host: PathBuf,
        mode: u32,
    },
    Text {
        path: String,
        text: String,
    },
    Symlink {
        path: String,
        target: String,
    },
}

/// The runtime part of an image config (OCI image spec, `config`).
struct Config<'a> {
    entrypoint: &'a [&'a str],
    cmd: &'a [&'a str],
    user: Option<&'a str>,
    env: Vec<String>,
    ports: &'a [&'a str],
}

impl Config<'_> {
    fn json(&self) -> serde_json::Value {
        let mut config = json!({
            "Entrypoint": self.entrypoint,
            "Env": self.env,
            "WorkingDir": "/",
        });
        if !self.cmd.is_empty() {
            config["Cmd"] = json!(self.cmd);
        }
        if let Some(user) = self.user {
            config["User"] = json!(user);
        }
        if !self.ports.is_empty() {
            let ports: serde_json::Map<String, serde_json::Value> = self
                .ports
                .iter()
                .map(|port| ((*port).to_owned(), json!({})))
                .collect();
            config["ExposedPorts"] = ports.into();
        }
        config
    }
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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

/// Where the app image keeps node-postgres and its check (`check.js`).
pub const NODE_POSTGRES_DIR: &str = "usr/lib/dbbind/node-postgres";
/// Where the app image keeps the JVM checks' jars (`java -cp '<dir>/*'`).
pub const JVM_LIB_DIR: &str = "usr/lib/dbbind/jvm/lib";
/// Where the app image keeps the Java runtime (`<dir>/bin/java`).
pub const JVM_RUNTIME_DIR: &str = "usr/lib/dbbind/jvm/runtime";
/// Where the app image keeps the Python packages and checks (`PYTHONPATH`).
pub const PYTHON_DIR: &str = "usr/lib/dbbind/python";

/// The UTF-8 locale the image's `LANG` names.
const C_UTF8: &str = "/usr/lib/locale/C.utf8";
/// Debian's Python, which the Python drivers' wheels (CPython 3.11) are installed for.
const PYTHON: &str = "/usr/bin/python3.11";
/// Its standard library.
const PYTHON_STDLIB: &str = "/usr/lib/python3.11";
/// Parts of the standard library no check imports (the static libpython alone is 25 MB).
const PYTHON_STDLIB_LEFT_OUT: &[&str] = &[
    "config-3.11-x86_64-linux-gnu",
    "dist-packages",
    "ensurepip",
    "idlelib",
    "lib2to3",
    "pydoc_data",
    "site-packages",
    "test",
    "tkinter",
    "turtledemo",
];
/// Java runtime libraries for a display or sound: no check loads them, and `ldd` would pull in
/// X11 for them.
const JVM_DESKTOP_LIBRARIES: &[&str] = &[
    "libawt",
    "libfontmanager",
    "libjawt",
    "libjavajpeg",
    "libjsound",
    "liblcms",
    "libmlib_image",
    "libsplashscreen",
];

/// The app image: busybox, psql, pgx-check, node and node-postgres, the Java runtime and the JVM
/// checks, Python and its packages, with the libraries they need; users for non-root checks,
/// and the database CA where libpq looks for it by default (`~/.postgresql/root.crt`, for
/// root). `drivers` is what `scripts/drivers` built.
pub fn write_app(psql: &Path, drivers: &Path, database_ca: &str, out: &Path) -> Result<()> {
    let node = which(
        "node",
        "Node.js (the machine's own; scripts/drivers needs its npm too)",
    )?;
    let python = PathBuf::from(PYTHON);
    if !python.is_file() {
        return Err(Error::new(format!(
            "{PYTHON} not found: install Debian's python3.11 (.ci/run does)"
        )));
    }
    let mut entries = vec![
        Entry::Dir("tmp".to_owned()),
        Entry::HostFile {
            path: "bin/busybox".to_owned(),
            host: which("busybox", "Debian's busybox-static package (.ci/run does)")?,
            mode: 0o755,
        },
        Entry::HostFile {
            path: "usr/bin/psql".to_owned(),
            host: psql.to_owned(),
            mode: 0o755,
        },
        Entry::HostFile {
            path: "usr/bin/pgx-check".to_owned(),
            host: drivers.join("pgx-check"),
            mode: 0o755,
        },
        Entry::HostFile {
            path: "usr/bin/node".to_owned(),
            host: node.clone(),
            mode: 0o755,
        },
        Entry::HostFile {
            path: "usr/bin/python3".to_owned(),
            host: python.clone(),
            mode: 0o755,
        },
        Entry::Text {
            path: "etc/passwd".to_owned(),
            text: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n".to_owned(),
        },
        Entry::Text {
            path: "root/.postgresql/root.crt".to_owned(),
            text: database_ca.to_owned(),
        },
        Entry::Text {
            path: "etc/group".to_owned(),
            text: "root:x:0:\napp:x:1000:\ndb:x:2000:\nnogroup:x:65534:\n".to_owned(),
        },
    ];
    for applet in APPLETS {
        entries.push(Entry::Symlink {
            path: format!("bin/{applet}"),
            target: "busybox".to_owned(),
        });
    }
    tree(
        &drivers.join("node-postgres"),
        NODE_POSTGRES_DIR,
        &[],
        &mut entries,
    )?;
    tree(&drivers.join("jvm/lib"), JVM_LIB_DIR, &[], &mut entries)?;
    let jvm = drivers.join("jvm/runtime");
    tree(&jvm, JVM_RUNTIME_DIR, &[], &mut entries)?;
    tree(&drivers.join("python"), PYTHON_DIR, &[], &mut entries)?;
    // The locale `LANG` names (Debian's libc-bin ships it; glibc has no built-in C.UTF-8).
    tree(
        Path::new(C_UTF8),
        C_UTF8.trim_start_matches('/'),
        &[],
        &mut entries,
    )?;
    let stdlib = Path::new(PYTHON_STDLIB);
    tree(
        stdlib,
        PYTHON_STDLIB.trim_start_matches('/'),
        PYTHON_STDLIB_LEFT_OUT,
        &mut entries,
    )?;

    // What the binaries and the native modules they load link to, from the host's system
    // directories (libraries shipped inside a tree, like psycopg's, come with the tree).
    let mut linked = vec![psql.to_owned(), node, python, jvm.join("bin/java")];
    linked.extend(shared_objects(&jvm.join("lib"), JVM_DESKTOP_LIBRARIES)?);
    linked.extend(shared_objects(&stdlib.join("lib-dynload"), &[])?);
    linked.extend(shared_objects(&drivers.join("python/psycopg_binary"), &[])?);
    let mut needed = BTreeSet::new();
    for binary in &linked {
        needed.extend(
            libraries(binary)?
                .into_iter()
                .filter(|library| is_system_library(library)),
        );
    }
    for library in needed {
        entries.push(Entry::HostFile {
            path: library.trim_start_matches('/').to_owned(),
            host: PathBuf::from(&library),
            mode: 0o755,
        });
    }
    let config = Config {
        entrypoint: &["/bin/sh"],
        cmd: &[],
        user: None,
        // A UTF-8 locale, as the JDK's and Python's official images set: without one the JVM
        // decodes the environment as ASCII and a non-ASCII password arrives mangled (seen:
        // pgjdbc's and Spring Boot's logins failed with `é` in the password, also with LANG
        // set while the locale's files were missing from the image).
        env: vec![
            DEFAULT_PATH.to_owned(),
            "LANG=C.UTF-8".to_owned(),
            // Where the image's Python packages are, as `pip install` in an image would.
            format!("PYTHONPATH=/{PYTHON_DIR}"),
        ],
        ports: &[],
    };
    write_archive(&[APP_IMAGE], &entries, &config, out)
}

/// Whether `ldd` found `library` in the host's system directories.
fn is_system_library(library: &str) -> bool {
    ["/lib/", "/lib64/", "/usr/lib/"]
        .iter()
        .any(|dir| library.starts_with(dir))
}

/// The shared objects (`*.so`, `*.so.*`) anywhere under `dir`, but those whose name starts with
/// one of `left_out`.
fn shared_objects(dir: &Path, left_out: &[&str]) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let listing =
        std::fs::read_dir(dir).map_err(|e| Error::new(format!("{}: {e}", dir.display())))?;
    for child in listing {
        let child = child?;
        let name = child.file_name().to_string_lossy().into_owned();
        if child.file_type()?.is_dir() {
            found.extend(shared_objects(&child.path(), left_out)?);
        } else if (name.ends_with(".so") || name.contains(".so."))
            && !left_out.iter().any(|prefix| name.starts_with(prefix))
        {
            found.push(child.path());
        }
    }
    found.sort();
    Ok(found)
}

/// Every file and symlink under `host`, as entries under `path` in the image (directories
/// follow from their files), with the files' own modes; entries named in `left_out` (at any
/// depth) are not copied.
fn tree(host: &Path, path: &str, left_out: &[&str], entries: &mut Vec<Entry>) -> Result<()> {
    let listing =
        std::fs::read_dir(host).map_err(|e| Error::new(format!("{}: {e}", host.display())))?;
    let mut children: Vec<std::fs::DirEntry> = listing.collect::<std::io::Result<_>>()?;
    // The layer's bytes, and so its digest, do not depend on directory order.
    children.sort_by_key(std::fs::DirEntry::file_name);
    for child in children {
        let name = child.file_name().to_string_lossy().into_owned();
        if left_out.contains(&name.as_str()) {
            continue;
        }
        let (host, path) = (child.path(), format!("{path}/{name}"));
        let kind = child.file_type()?;
        if kind.is_dir() {
            tree(&host, &path, left_out, entries)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&host)?.to_string_lossy().into_owned();
            entries.push(Entry::Symlink { path, target });
        } else {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = child.metadata()?.permissions().mode() & 0o777;
            entries.push(Entry::HostFile { path, host, mode });
        }
    }
    Ok(())
}

/// The shared libraries `ldd` lists for `binary`, and its loader.
fn libraries(binary: &Path) -> Result<Vec<String>> {
    let output = Command::new("ldd").arg(binary).output()?;
    if !output.status.success() {
        return Err(Error::new(format!("ldd {} failed", binary.display())));
    }
    let mut found = BTreeSet::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        // `libpq.so.5 => /lib/x86_64-linux-gnu/libpq.so.5 (0x...)` or `/lib64/ld-linux... (0x...)`
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            found.insert(path.to_owned());
        }
    }
    // A module that links to nothing (Python's `_contextvars`) is "statically linked" to ldd.
    if found.is_empty() && !String::from_utf8_lossy(&output.stdout).contains("statically linked") {
        return Err(Error::new(format!(
            "ldd found no libraries for {}",
            binary.display()
        )));
    }
    Ok(found.into_iter().collect())
}

/// A program on the PATH; `package` says where it comes from, for the error.
fn which(program: &str, package: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| Error::new(format!("{program} not found: install {package}")))
}

/// The layer: a tar of the entries, parent directories included.
fn layer(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs = BTreeSet::new();
    let mut add_parents = |builder: &mut tar::Builder<Vec<u8>>, path: &str| -> Result<()> {
        let mut parent = String::new();
        let components: Vec<&str> = path.split('/').collect();
        for component in &components[..components.len().saturating_sub(1)] {
            parent = if parent.is_empty() {
                (*component).to_owned()
            } else {
                format!("{parent}/{component}")
            };
            if dirs.insert(parent.clone()) {
                append(
                    builder,
                    tar::EntryType::Directory,
                    &format!("{parent}/"),
                    0o755,
                    &[],
                    None,
                )?;
            }
        }
        Ok(())
    };
    for entry in entries {
        match entry {
            Entry::Dir(path) => {
                add_parents(&mut builder, path)?;
                append(
                    &mut builder,
                    tar::EntryType::Directory,
                    &format!("{path}/"),
                    0o1777,
                    &[],
                    None,
                )?;
            }
            Entry::HostFile { path, host, mode } => {
                add_parents(&mut builder, path)?;
                let data = std::fs::read(host)
                    .map_err(|e| Error::new(format!("{}: {e}", host.display())))?;
                append(
                    &mut builder,
                    tar::EntryType::Regular,
                    path,
                    *mode,
                    &data,
                    None,
                )?;
            }
            Entry::Text { path, text } => {
                add_parents(&mut builder, path)?;
                append(
                    &mut builder,
                    tar::EntryType::Regular,
                    path,
                    0o644,
                    text.as_bytes(),
                    None,
                )?;
            }
            Entry::Symlink { path, target } => {
                add_parents(&mut builder, path)?;
                append(
                    &mut builder,
                    tar::EntryType::Symlink,
                    path,
                    0o777,
                    &[],
                    Some(target),
                )?;
            }
        }
    }
    builder.into_inner().map_err(Error::from)
}

fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    path: &str,
    mode: u32,
    data: &[u8],
    link: Option<&str>,
) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(data.len() as u64);
    if let Some(link) = link {
        header.set_link_name(link)?;
    }
    builder.append_data(&mut header, path, data)?;
    Ok(())
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// An OCI image layout in a tar archive at `out`, its one manifest named each of `names` for
/// containerd.
fn write_archive(names: &[&str], entries: &[Entry], config: &Config, out: &Path) -> Result<()> {
    let layer = layer(entries)?;
    let layer_digest = sha256(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config.json(),
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .map_err(|e| Error::new(e.to_string()))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))
    .map_err(|e| Error::new(e.to_string()))?;
    let manifests: Vec<serde_json::Value> = names
        .iter()
        .map(|name| {
            let tag = name.rsplit_once(':').map_or("latest", |(_, tag)| tag);
            json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha256(&manifest),
                "size": manifest.len(),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag},
            })
        })
        .collect();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .map_err(|e| Error::new(e.to_string()))?;

    let mut archive = tar::Builder::new(Vec::new());
    let blob = |archive: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        append(archive, tar::EntryType::Regular, path, 0o644, data, None)
    };
    blob(
        &mut archive,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    blob(&mut archive, "index.json", &index)?;
    for data in [&layer, &config, &manifest] {
        let digest = sha256(data);
        let hex = digest.trim_start_matches("sha256:");
        blob(&mut archive, &format!("blobs/sha256/{hex}"), data)?;
    }
    std::fs::write(out, archive.into_inner()?)?;
    Ok(())
}

/// An image archive read back: its names, its config, and the paths in its layer.
pub struct ReadImage {
    pub names: Vec<String>,
    pub config: serde_json::Value,
    pub paths: Vec<String>,
}

/// Reads an archive [`write_archive`] wrote (for tests that compare it with the Dockerfile).
pub fn read_archive(archive: &Path) -> Result<ReadImage> {
    let mut files = std::collections::BTreeMap::new();
    let mut outer = tar::Archive::new(std::fs::File::open(archive)?);
    for entry in outer.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data)?;
        files.insert(path, data);
    }
    let blob = |digest: &serde_json::Value| -> Result<Vec<u8>> {
        let hex = digest
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("sha256:");
        files
            .get(&format!("blobs/sha256/{hex}"))
            .cloned()
            .ok_or_else(|| Error::new(format!("no blob {digest}")))
    };
    let index: serde_json::Value = serde_json::from_slice(
        files
            .get("index.json")
            .ok_or_else(|| Error::new("no index.json"))?,
    )?;
    let names = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["annotations"]["io.containerd.image.name"].as_str())
        .map(str::to_owned)
        .collect();
    let manifest_bytes = blob(&index["manifests"][0]["digest"])?;
    if sha256(&manifest_bytes) != index["manifests"][0]["digest"] {
        return Err(Error::new("the manifest's digest does not match"));
    }
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes)?;
    let config: serde_json::Value = serde_json::from_slice(&blob(&manifest["config"]["digest"])?)?;
    if config["rootfs"]["diff_ids"][0] != manifest["layers"][0]["digest"] {
        return Err(Error::new("the config's diff_id is not the layer's digest"));
    }
    let layer = blob(&manifest["layers"][0]["digest"])?;
    let mut paths = Vec::new();
    for entry in tar::Archive::new(layer.as_slice()).entries()? {
        paths.push(entry?.path()?.display().to_string());
    }
    Ok(ReadImage {
        names,
        config,
        paths,
    })
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
