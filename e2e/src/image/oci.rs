//! OCI image layouts in a tar archive, as `ctr images import` reads them: one uncompressed layer, the config, the manifest and index; and reading one back.

use super::*;

/// What goes into an image's single layer.
pub(super) enum Entry {
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
pub(super) struct Config<'a> {
    pub(super) entrypoint: &'a [&'a str],
    pub(super) cmd: &'a [&'a str],
    pub(super) user: Option<&'a str>,
    pub(super) env: Vec<String>,
    pub(super) ports: &'a [&'a str],
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

pub(super) const DEFAULT_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The layer: a tar of the entries, parent directories included.
pub(super) fn layer(entries: &[Entry]) -> Result<Vec<u8>> {
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
                let data = std::fs::read(host).map_err(|e| anyhow!("{}: {e}", host.display()))?;
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

pub(super) fn append(
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

pub(super) fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// An OCI image layout in a tar archive at `out`, its one manifest named each of `names` for
/// containerd.
pub(super) fn write_archive(
    names: &[&str],
    entries: &[Entry],
    config: &Config,
    out: &Path,
) -> Result<()> {
    let layer = layer(entries)?;
    let layer_digest = sha256(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config.json(),
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .map_err(|e| anyhow!("{e}"))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))
    .map_err(|e| anyhow!("{e}"))?;
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
    .map_err(|e| anyhow!("{e}"))?;

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
            .ok_or_else(|| anyhow!("no blob {digest}"))
    };
    let index: serde_json::Value = serde_json::from_slice(
        files
            .get("index.json")
            .ok_or_else(|| anyhow!("no index.json"))?,
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
        return Err(anyhow!("the manifest's digest does not match"));
    }
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes)?;
    let config: serde_json::Value = serde_json::from_slice(&blob(&manifest["config"]["digest"])?)?;
    if config["rootfs"]["diff_ids"][0] != manifest["layers"][0]["digest"] {
        return Err(anyhow!("the config's diff_id is not the layer's digest"));
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
