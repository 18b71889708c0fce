//! A repository in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, ...),
//! through the `object_store` crate. A PUT is atomic on S3, so `put` needs no
//! temp objects. Requests are retried by `object_store` with exponential
//! backoff and jitter (4 retries within 60 s), so a brief network fault does
//! not fail a backup; a dead endpoint fails within about a minute. Every PUT
//! carries a Content-MD5 ([`Md5Connector`]), which a bucket under Object Lock
//! requires. Object Lock and versions are object_lock.rs's.

use crate::object_lock::{ObjectLock, S3Admin};
use crate::{ObjectInfo, Store, StoreError, check_key};
use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use std::time::Duration;

/// How to reach the S3 service; credentials come from the usual `AWS_*` variables.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Endpoint URL (`http://127.0.0.1:9000`); default: `AWS_ENDPOINT_URL`, else AWS.
    pub endpoint: Option<String>,
    /// Use `https://bucket.host/` instead of path-style `https://host/bucket/`.
    pub virtual_hosted_style: bool,
    /// Access key id and secret; default: the `AWS_*` variables, else instance credentials.
    pub credentials: Option<(String, String)>,
    /// Requests in flight per stream of objects ([`Store::concurrency`]);
    /// default [`S3_CONCURRENCY`].
    pub concurrency: Option<usize>,
}

/// Requests in flight per stream of objects to S3 unless told otherwise:
/// measured against moto and restic in docs/benchmarks.md ("S3 throughput").
pub const S3_CONCURRENCY: usize = 16;

/// A store under `s3://bucket/prefix`.
#[derive(Debug)]
pub struct S3Store {
    inner: AmazonS3,
    bucket: String,
    prefix: String,
    /// Object Lock and versions, with the same credentials and endpoint.
    admin: S3Admin,
    concurrency: usize,
}

impl S3Store {
    /// Connect lazily to `bucket`, keeping every object under `prefix`.
    pub fn new(bucket: &str, prefix: &str, opts: &S3Options) -> Result<Self, StoreError> {
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let endpoint = opts.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        if let Some(ep) = &endpoint {
            b = b.with_endpoint(ep.clone());
        }
        if let Some((id, secret)) = &opts.credentials {
            b = b.with_access_key_id(id.clone()).with_secret_access_key(secret.clone());
        }
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            b = b.with_region("us-east-1");
        } else if let Ok(r) = std::env::var("AWS_DEFAULT_REGION")
            && std::env::var("AWS_REGION").is_err()
        {
            b = b.with_region(r);
        }
        let client = ClientOptions::new()
            .with_allow_http(endpoint.as_deref().is_some_and(|e| e.starts_with("http://")))
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(120));
        let retry = RetryConfig { max_retries: 4, retry_timeout: Duration::from_secs(60), ..Default::default() };
        // The bucket's URL as object_store makes it, for the requests it does not make (object_lock.rs).
        let region = b.get_config_value(&AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
        let bucket_endpoint = match (&endpoint, opts.virtual_hosted_style) {
            (Some(ep), true) => ep.clone(),
            (Some(ep), false) => format!("{}/{bucket}", ep.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let inner = b
            .with_http_connector(Md5Connector)
            // One DELETE per object (kmdr deletes one key at a time): IAM then
            // checks s3:DeleteObject against that key, which a policy allowing
            // deletes only under locks/ needs; some servers (moto) check a bulk
            // DeleteObjects against the bucket instead.
            .with_disable_bulk_delete(true)
            .with_virtual_hosted_style_request(opts.virtual_hosted_style)
            .with_client_options(client)
            .with_retry(retry)
            .build()
            .map_err(|e| StoreError::Config(format!("cannot configure S3 for bucket {bucket}: {e}")))?;
        let prefix = prefix.trim_matches('/').to_string();
        let location = if prefix.is_empty() { format!("s3://{bucket}") } else { format!("s3://{bucket}/{prefix}") };
        let admin = S3Admin::new(inner.credentials().clone(), bucket_endpoint, region, &prefix, location)?;
        let concurrency = opts.concurrency.unwrap_or(S3_CONCURRENCY).max(1);
        Ok(S3Store { inner, bucket: bucket.to_string(), prefix, admin, concurrency })
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() { Path::from(key) } else { Path::from(format!("{}/{key}", self.prefix)) }
    }

    fn err(&self, op: &'static str, key: &str, e: object_store::Error) -> StoreError {
        let location = self.location();
        let key = key.to_string();
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound { location, key },
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                StoreError::PermissionDenied { location, op, key, source: Box::new(e) }
            }
            other => {
                let text = format!("{other:#}").to_lowercase();
                if text.contains("169.254.169.254") || text.contains("credential") {
                    return StoreError::Config(format!(
                        "no usable S3 credentials for {location}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or run where instance credentials are available)"
                    ));
                }
                let transient =
                    ["connect", "timed out", "timeout", "sending request", "dns", "connection", "broken pipe", "reset"]
                        .iter()
                        .any(|w| text.contains(w));
                if transient {
                    StoreError::Unavailable { location, op, key, source: Box::new(other) }
                } else if text.contains("nosuchbucket") || text.contains("bucket does not exist") {
                    StoreError::Config(format!(
                        "bucket {} does not exist at the S3 endpoint: create it (e.g. `aws s3 mb s3://{}`) or fix --repo",
                        self.bucket, self.bucket
                    ))
                } else {
                    StoreError::Io { location, op, key, source: Box::new(other) }
                }
            }
        }
    }
}

/// object_store's HTTP client, with a Content-MD5 on every PUT that is not a
/// copy, empty ones included: S3 then checks the upload, and a bucket with a default retention
/// (Object Lock) refuses a PUT without one (AWS also takes an
/// `x-amz-checksum-*`, MinIO and moto want Content-MD5). It is added after
/// object_store signed the request, which SigV4 allows for Content-MD5 (only
/// `host` and `x-amz-*` headers must be signed).
#[derive(Debug)]
struct Md5Connector;

impl HttpConnector for Md5Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(Md5Service(ReqwestConnector::default().connect(options)?)))
    }
}

#[derive(Debug)]
struct Md5Service(HttpClient);

#[async_trait]
impl HttpService for Md5Service {
    async fn call(&self, mut req: HttpRequest) -> Result<HttpResponse, HttpError> {
        if req.method() == http::Method::PUT && !req.headers().contains_key("content-md5") {
            use base64::Engine;
            use http_body_util::BodyExt;
            use md5::Digest;
            // Empty objects too (the series index's markers); not a copy, whose body is the source's.
            if !req.headers().contains_key("x-amz-copy-source") {
                let body = req.body().clone().collect().await?.to_bytes();
                let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
                req.headers_mut().insert("content-md5", md5.parse().expect("base64 is a header value"));
            }
        }
        self.0.execute(req).await
    }
}

impl S3Store {
    /// The objects under `prefix`, after the key `after` if given (S3's
    /// `StartAfter`: the listing starts there).
    async fn list_from(&self, prefix: &str, after: Option<&str>) -> Result<Vec<ObjectInfo>, StoreError> {
        // object_store lists by whole path segments: list the directory part
        // of the prefix and filter the rest.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let dir_path = if dir.is_empty() {
            if self.prefix.is_empty() { None } else { Some(Path::from(self.prefix.as_str())) }
        } else {
            Some(self.path(dir))
        };
        let strip = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        // A prefix that ends inside a name (`backups/20261208T03`) starts the
        // listing at itself less its last character, which sorts before every
        // key it starts, and stops after the last such key: S3 lists in key
        // order, so the pages of the rest of the directory are never asked for.
        let name = prefix.rsplit('/').next().unwrap_or(prefix);
        let partial = name.len() > 1 && name.is_ascii();
        let start = match after {
            Some(a) => Some(a),
            None if partial => Some(&prefix[..prefix.len() - 1]),
            None => None,
        };
        let listing = match start {
            // A key sorts after `start` exactly when its full path does: the store's prefix is common to both.
            Some(a) => self.inner.list_with_offset(dir_path.as_ref(), &Path::from(format!("{strip}{a}"))),
            None => self.inner.list(dir_path.as_ref()),
        };
        let listed: Vec<ObjectInfo> = listing
            .map_ok(|m| {
                let full = m.location.to_string();
                let key = full.strip_prefix(&strip).map_or_else(|| full.clone(), str::to_string);
                ObjectInfo { key, size: m.size, modified: m.last_modified }
            })
            .try_take_while(|o| {
                std::future::ready(Ok(!partial || o.key.as_str() <= prefix || o.key.starts_with(prefix)))
            })
            .try_collect()
            .await
            .map_err(|e| self.err("list", prefix, e))?;
        Ok(listed
            .into_iter()
            .filter(|o| o.key.starts_with(prefix) && after.is_none_or(|a| o.key.as_str() > a))
            .collect())
    }
}

#[async_trait]
impl Store for S3Store {
    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        check_key(key)?;
        self.inner.put(&self.path(key), PutPayload::from(data)).await.map_err(|e| self.err("put", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        check_key(key)?;
        let r = self.inner.get(&self.path(key)).await.map_err(|e| self.err("get", key, e))?;
        r.bytes().await.map_err(|e| self.err("get", key, e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.list_from(prefix, None).await
    }

    async fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.list_from(prefix, Some(after)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", key, e)),
        }
    }

    fn object_lock(&self) -> Option<&dyn ObjectLock> {
        Some(&self.admin)
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        check_key(key)?;
        match self.inner.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err("head", key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the conformance suite against the S3 server named by
    /// `KMDR_TEST_S3_ENDPOINT` (scripts/test.sh starts one). Without it the
    /// test fails when `KMDR_TEST_REQUIRE_SERVERS=1` (CI), and is reported as
    /// skipped on stderr otherwise.
    #[tokio::test]
    async fn conformance() {
        let Some(endpoint) = crate::conformance::s3_test_endpoint() else { return };
        let bucket = crate::conformance::s3_test_bucket();
        let store = S3Store::new(
            &bucket,
            &crate::conformance::unique_prefix("conformance"),
            &S3Options { endpoint: Some(endpoint), ..Default::default() },
        )
        .unwrap();
        crate::conformance::run(&store).await;
    }

    #[tokio::test]
    async fn dead_endpoint_is_unavailable() {
        let creds = Some(("id".to_string(), "secret".to_string()));
        let store = S3Store::new(
            "b",
            "",
            &S3Options { endpoint: Some("http://127.0.0.1:9".into()), credentials: creds, ..Default::default() },
        )
        .unwrap();
        let err = tokio::time::timeout(Duration::from_secs(120), store.get("config")).await.unwrap().unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
        assert!(err.is_retryable());
    }
}
