//! The lab's repository (`DIR/repo`) and its key (`DIR/kmdr.key`), made as
//! `kmdr repo init` makes them, and kept across labs.

use crate::LabError;
use kmdr_repo::{Error as RepoError, Repository};
use kmdr_store::{LocalStore, Store};
use std::path::Path;
use std::sync::Arc;

/// Create the repository at `repo` when there is none, with the key in
/// `key_file` (a new one, mode 0600, when that file is missing).
pub(crate) async fn ensure(repo: &Path, key_file: &Path) -> Result<(), LabError> {
    let failed = |source: RepoError| LabError::Repository { path: repo.into(), source };
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(repo));
    if store.exists("config").await.map_err(|e| failed(e.into()))? {
        return Ok(());
    }
    if !key_file.exists() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let new_key = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(key_file)?;
            f.write_all(kmdr_repo::crypto::generate_secret().as_bytes())?;
            f.sync_all()
        };
        new_key().map_err(LabError::io("write the key file", key_file))?;
    }
    let content =
        std::fs::read(key_file).map_err(|source| failed(RepoError::KeyFile { path: key_file.into(), source }))?;
    let secret = kmdr_repo::crypto::secret_from_file_content(&content);
    if secret.is_empty() {
        let source = std::io::Error::other("the file is empty");
        return Err(failed(RepoError::KeyFile { path: key_file.into(), source }));
    }
    Repository::init(store, secret, Default::default()).await.map_err(failed)?;
    Ok(())
}
