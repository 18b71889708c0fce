//! Repository URLs: a plain path or `file:///abs/path` for a local directory,
//! `s3://bucket/prefix` for an S3-compatible service.

use crate::{LocalStore, S3Options, S3Store, Store, StoreError};
use std::path::PathBuf;
use std::sync::Arc;

/// A parsed repository URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl std::str::FromStr for StoreUrl {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        if s.is_empty() {
            return Err(StoreError::Config(
                "empty repository URL: pass --repo PATH or --repo s3://bucket/prefix".into(),
            ));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreError::Config(format!(
                    "repository URL {s:?} names no bucket: write s3://BUCKET/PREFIX"
                )));
            }
            return Ok(StoreUrl::S3 { bucket: bucket.into(), prefix: prefix.trim_matches('/').into() });
        }
        if let Some(rest) = s.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(StoreError::Config(format!("repository URL {s:?} must be file:///absolute/path")));
            }
            return Ok(StoreUrl::Local(rest.into()));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(StoreError::Config(format!(
                "repository URL scheme {scheme}:// is not supported: use a path, file:///abs/path or s3://bucket/prefix"
            )));
        }
        Ok(StoreUrl::Local(s.into()))
    }
}

/// Open the store a URL names. Opening does no I/O; the first request does.
pub fn open(url: &str, s3: &S3Options) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match url.parse::<StoreUrl>()? {
        StoreUrl::Local(p) => Arc::new(LocalStore::new(p)),
        StoreUrl::S3 { bucket, prefix } => Arc::new(S3Store::new(&bucket, &prefix, s3)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!("/srv/r".parse::<StoreUrl>().unwrap(), StoreUrl::Local("/srv/r".into()));
        assert_eq!("rel/dir".parse::<StoreUrl>().unwrap(), StoreUrl::Local("rel/dir".into()));
        assert_eq!("file:///srv/r".parse::<StoreUrl>().unwrap(), StoreUrl::Local("/srv/r".into()));
        assert_eq!(
            "s3://b/p/q/".parse::<StoreUrl>().unwrap(),
            StoreUrl::S3 { bucket: "b".into(), prefix: "p/q".into() }
        );
        assert_eq!("s3://b".parse::<StoreUrl>().unwrap(), StoreUrl::S3 { bucket: "b".into(), prefix: "".into() });
        for bad in ["", "s3://", "file://rel", "gs://b/x"] {
            assert!(bad.parse::<StoreUrl>().is_err(), "{bad}");
        }
    }
}
