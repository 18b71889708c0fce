//! Client certificate files for every datastore: the same three files (and
//! plan keys) whatever the driver, as etcdctl's `--cacert --cert --key`. Only
//! the paths live here; reading them is each driver's business.

use std::path::PathBuf;

/// Client certificate files, as etcdctl's `--cacert --cert --key`; the same
/// three flags (and plan keys) for every datastore.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TlsFiles {
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// True when any of the three files is given.
    pub fn is_set(&self) -> bool {
        self.cacert.is_some() || self.cert.is_some() || self.key.is_some()
    }
}
