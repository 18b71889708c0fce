//! A repository in a local directory (or a mounted NFS/SMB share).
//!
//! `put` writes `<dir>/.<name>.tmp-<random>`, fsyncs it, renames it over the
//! final name and fsyncs the directory: a reader or a crash sees the old state
//! or the whole new object. Leftover temp files of a killed writer are never
//! listed; `sweep_temp_files` removes them.

use crate::{ObjectInfo, Store, StoreError, check_key};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A store rooted at a local directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store at `root`; the directory is created on the first `put`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn loc(&self) -> String {
        self.root.display().to_string()
    }

    /// Remove temp files left by writers that were killed mid-`put`, when
    /// older than `min_age`. Returns how many were removed.
    pub fn sweep_temp_files(&self, min_age: std::time::Duration) -> std::io::Result<usize> {
        let mut removed = 0;
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in read_dir_if_exists(&dir)? {
                let entry = entry?;
                let ft = entry.file_type()?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if ft.is_dir() {
                    stack.push(entry.path());
                } else if name.starts_with('.') && name.contains(".tmp-") {
                    let age = entry.metadata()?.modified()?.elapsed().unwrap_or_default();
                    if age >= min_age {
                        fs::remove_file(entry.path())?;
                        removed += 1;
                    }
                }
            }
        }
        Ok(removed)
    }
}

/// The entries of `dir`, or none when it does not exist (a store's
/// directories appear with their first object).
fn read_dir_if_exists(dir: &Path) -> std::io::Result<Box<dyn Iterator<Item = std::io::Result<fs::DirEntry>>>> {
    match fs::read_dir(dir) {
        Ok(rd) => Ok(Box::new(rd)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Box::new(std::iter::empty())),
        Err(e) => Err(e),
    }
}

fn put_blocking(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("keys always have a parent under the root");
    if !dir.is_dir() {
        // Note which directories are new, create them, then make their
        // entries durable by syncing each new directory's parent.
        let new_dirs: Vec<&Path> = dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.is_dir()).collect();
        fs::create_dir_all(dir)?;
        for d in new_dirs {
            if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::File::open(parent)?.sync_all()?;
            }
        }
    }
    let name = path.file_name().expect("keys have a file name").to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{:016x}", rand::random::<u64>()));
    let result = (|| {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn list_blocking(root: &Path, prefix: &str) -> std::io::Result<Vec<ObjectInfo>> {
    // Start at the deepest directory named entirely by the prefix.
    let start_rel = match prefix.rfind('/') {
        Some(i) => &prefix[..i],
        None => "",
    };
    let mut out = Vec::new();
    let mut stack = vec![(root.join(start_rel), start_rel.to_string())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in read_dir_if_exists(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let key = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                if key.starts_with(prefix) || prefix.starts_with(&format!("{key}/")) {
                    stack.push((entry.path(), key));
                }
            } else if key.starts_with(prefix) {
                let modified: DateTime<Utc> = meta.modified().map(Into::into).unwrap_or_else(|_| Utc::now());
                out.push(ObjectInfo { key, size: meta.len(), modified });
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl Store for LocalStore {
    fn location(&self) -> String {
        self.loc()
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        check_key(key)?;
        let path = self.path(key);
        tokio::task::spawn_blocking(move || put_blocking(&path, &data))
            .await
            .expect("put task panicked")
            .map_err(|e| StoreError::from_io(&self.loc(), "put", key, e))
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        check_key(key)?;
        tokio::fs::read(self.path(key))
            .await
            .map(Bytes::from)
            .map_err(|e| StoreError::from_io(&self.loc(), "get", key, e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let root = self.root.clone();
        let p = prefix.to_string();
        tokio::task::spawn_blocking(move || list_blocking(&root, &p))
            .await
            .expect("list task panicked")
            .map_err(|e| StoreError::from_io(&self.loc(), "list", prefix, e))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::from_io(&self.loc(), "delete", key, e)),
        }
    }

    async fn sweep_incomplete(&self, min_age: std::time::Duration) -> Result<usize, StoreError> {
        let s = self.clone();
        tokio::task::spawn_blocking(move || s.sweep_temp_files(min_age))
            .await
            .expect("sweep task panicked")
            .map_err(|e| StoreError::from_io(&self.loc(), "sweep", "", e))
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        check_key(key)?;
        match tokio::fs::metadata(self.path(key)).await {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::from_io(&self.loc(), "stat", key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        crate::conformance::run(&LocalStore::new(dir.path().join("repo"))).await;
    }

    #[tokio::test]
    async fn temp_files_are_invisible_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path());
        s.put("data/aa/x", Bytes::from_static(b"1")).await.unwrap();
        fs::write(dir.path().join("data/aa/.y.tmp-0001"), b"partial").unwrap();
        let keys: Vec<_> = s.list("data/").await.unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, vec!["data/aa/x".to_string()]);
        assert_eq!(s.sweep_temp_files(std::time::Duration::ZERO).unwrap(), 1);
        assert!(s.exists("data/aa/x").await.unwrap());
    }
}
