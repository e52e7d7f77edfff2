//! Things re-checked on a timer: the profiles file, the certificate files, the self-managed
//! certificates. One loop serves all three, and [`FileContents`] tells the two file-based ones
//! when a file really changed.
//!
//! Files are polled and compared by content rather than watched with inotify: Kubernetes
//! updates a mounted Secret or ConfigMap by swapping the `..data` symlink, which file-level
//! watches miss, and a half-written file is simply read again on the next pass.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Something re-checked periodically. A check reports what it found itself (logs, metrics) and
/// never fails the loop: the next pass tries again.
pub trait Recheck: Send + 'static {
    fn recheck(&mut self) -> impl Future<Output = ()> + Send;
}

/// Checks `target` now, then every `interval`, forever. A slow check delays the next one rather
/// than bunching them up.
pub async fn every(interval: Duration, mut target: impl Recheck) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        target.recheck().await;
    }
}

/// The last contents seen of `N` files.
#[derive(Debug)]
pub struct FileContents<const N: usize> {
    paths: [PathBuf; N],
    seen: Option<[Vec<u8>; N]>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct ReadError {
    pub path: String,
    pub source: std::io::Error,
}

impl<const N: usize> FileContents<N> {
    /// Nothing seen yet: the first [`FileContents::changed`] reports the files as changed.
    pub fn new(paths: [&Path; N]) -> FileContents<N> {
        FileContents {
            paths: paths.map(Path::to_path_buf),
            seen: None,
        }
    }

    /// The files as they are now count as seen (for a file already loaded at start).
    pub fn primed(paths: [&Path; N]) -> FileContents<N> {
        let mut contents = FileContents::new(paths);
        contents.seen = contents.read().ok();
        contents
    }

    /// Reads every file; returns their contents when they differ from what the last call saw.
    /// A file that cannot be read is an error, and does not count as seen.
    pub fn changed(&mut self) -> Result<Option<[Vec<u8>; N]>, ReadError> {
        let now = self.read()?;
        if self.seen.as_ref() == Some(&now) {
            return Ok(None);
        }
        self.seen = Some(now.clone());
        Ok(Some(now))
    }

    fn read(&self) -> Result<[Vec<u8>; N], ReadError> {
        let mut contents: [Vec<u8>; N] = std::array::from_fn(|_| Vec::new());
        for (slot, path) in contents.iter_mut().zip(&self.paths) {
            *slot = std::fs::read(path).map_err(|source| ReadError {
                path: path.display().to_string(),
                source,
            })?;
        }
        Ok(contents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "one").unwrap();
        let mut contents = FileContents::new([&path]);
        assert_eq!(contents.changed().unwrap(), Some([b"one".to_vec()]));
        assert_eq!(contents.changed().unwrap(), None);
        std::fs::write(&path, "two").unwrap();
        assert_eq!(contents.changed().unwrap(), Some([b"two".to_vec()]));
        assert_eq!(contents.changed().unwrap(), None);
        std::fs::remove_file(&path).unwrap();
        assert!(contents.changed().is_err());

        std::fs::write(&path, "three").unwrap();
        let mut primed = FileContents::primed([&path]);
        assert_eq!(primed.changed().unwrap(), None);
    }
}
