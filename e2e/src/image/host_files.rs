//! Files taken from the host into an image: shared libraries as `ldd` lists them, directory trees, programs by package.

use super::*;

/// Whether `ldd` found `library` in the host's system directories.
pub(super) fn is_system_library(library: &str) -> bool {
    ["/lib/", "/lib64/", "/usr/lib/"]
        .iter()
        .any(|dir| library.starts_with(dir))
}

/// The shared objects (`*.so`, `*.so.*`) anywhere under `dir`, but those whose name starts with
/// one of `left_out`.
pub(super) fn shared_objects(dir: &Path, left_out: &[&str]) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let listing = std::fs::read_dir(dir).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
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
pub(super) fn tree(
    host: &Path,
    path: &str,
    left_out: &[&str],
    entries: &mut Vec<Entry>,
) -> Result<()> {
    let listing = std::fs::read_dir(host).map_err(|e| anyhow!("{}: {e}", host.display()))?;
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
pub(super) fn libraries(binary: &Path) -> Result<Vec<String>> {
    let output = Command::new("ldd").arg(binary).output()?;
    if !output.status.success() {
        return Err(anyhow!("ldd {} failed", binary.display()));
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
        return Err(anyhow!("ldd found no libraries for {}", binary.display()));
    }
    Ok(found.into_iter().collect())
}

/// A program on the PATH; `package` says where it comes from, for the error.
pub(super) fn which(program: &str, package: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| anyhow!("{program} not found: install {package}"))
}
