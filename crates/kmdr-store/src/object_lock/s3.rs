//! [`ObjectLock`] for an S3 bucket: requests signed with object_store's
//! SigV4 signer and the store's credentials, sent with reqwest, their XML
//! answers read with quick-xml.

use super::{
    BucketLock, DefaultRetention, LockMode, ObjectLock, ObjectVersion, Retention, Versioning, is_admin_action,
};
use crate::StoreError;
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::HttpRequestBody;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// [`ObjectLock`] for an S3 bucket, next to an [`crate::S3Store`].
pub struct S3Admin {
    http: reqwest::Client,
    credentials: object_store::aws::AwsCredentialProvider,
    /// `https://s3.REGION.amazonaws.com/BUCKET`, `http://host:port/BUCKET`, or virtual-hosted.
    bucket_endpoint: String,
    region: String,
    /// `prefix/` or empty.
    prefix: String,
    location: String,
}

impl std::fmt::Debug for S3Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Admin").field("bucket_endpoint", &self.bucket_endpoint).finish_non_exhaustive()
    }
}

/// What one request is, for signing and for messages.
struct Call<'a> {
    method: reqwest::Method,
    /// Key relative to the store (`None`: the bucket).
    key: Option<&'a str>,
    /// Query string, already encoded (`versioning`, `versionId=...`).
    query: String,
    body: Option<Bytes>,
    /// The S3 action, named in refusals.
    action: &'static str,
}

impl S3Admin {
    /// For the bucket at `bucket_endpoint` (as object_store computes it),
    /// objects under `prefix`.
    pub(crate) fn new(
        credentials: object_store::aws::AwsCredentialProvider,
        bucket_endpoint: String,
        region: String,
        prefix: &str,
        location: String,
    ) -> Result<S3Admin, StoreError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| StoreError::Config(format!("cannot set up the S3 client for {location}: {e}")))?;
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        Ok(S3Admin { http, credentials, bucket_endpoint, region, prefix, location })
    }

    fn url(&self, key: Option<&str>, query: &str) -> String {
        let mut u = self.bucket_endpoint.trim_end_matches('/').to_string();
        if let Some(k) = key {
            u.push('/');
            u.push_str(&self.prefix);
            u.push_str(k);
        }
        if !query.is_empty() {
            u.push('?');
            u.push_str(query);
        }
        u
    }

    /// Sign and send, retrying what may pass on a second try (4 retries,
    /// backoff from 200 ms). Returns the status, headers and body.
    async fn send(&self, c: &Call<'_>) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Bytes), StoreError> {
        let url = self.url(c.key, &c.query);
        let what = c.key.unwrap_or("bucket").to_string();
        let mut backoff = Duration::from_millis(200);
        for attempt in 0.. {
            let cred: Arc<AwsCredential> = self.credentials.get_credential().await.map_err(|e| {
                StoreError::Config(format!(
                    "no usable S3 credentials for {}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY ({e})",
                    self.location
                ))
            })?;
            let body = c.body.clone().unwrap_or_default();
            let mut req = http::Request::builder()
                .method(c.method.clone())
                .uri(&url)
                .body(HttpRequestBody::from(body.clone()))
                .map_err(|e| StoreError::Config(format!("bad S3 request URL {url}: {e}")))?;
            if !body.is_empty() {
                use base64::Engine;
                use md5::Digest;
                let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
                req.headers_mut().insert("content-md5", md5.parse().expect("base64 is a header value"));
                req.headers_mut().insert("content-type", "application/xml".parse().expect("header"));
            }
            AwsAuthorizer::new(&cred, "s3", &self.region)
                .try_authorize(&mut req, None)
                .map_err(|e| StoreError::Config(format!("cannot sign the S3 request: {e}")))?;
            let sent = self.http.request(c.method.clone(), &url).headers(req.headers().clone()).body(body).send().await;
            let retry = match sent {
                Ok(r) => {
                    let (status, headers) = (r.status(), r.headers().clone());
                    match r.bytes().await {
                        Ok(b) if !(status.is_server_error() || status.as_u16() == 429) => {
                            return Ok((status, headers, b));
                        }
                        Ok(b) => format!("HTTP {status}: {}", String::from_utf8_lossy(&b)),
                        Err(e) => e.to_string(),
                    }
                }
                Err(e) => format!("{e:#}"),
            };
            if attempt >= 4 {
                return Err(StoreError::Unavailable {
                    location: self.location.clone(),
                    op: c.action,
                    key: what,
                    source: retry.into(),
                });
            }
            tracing::debug!("{} {what} failed ({retry}), retrying in {backoff:?}", c.action);
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        unreachable!("the loop returns")
    }

    /// A non-2xx answer as a [`StoreError`].
    fn refusal(&self, c: &Call<'_>, status: reqwest::StatusCode, body: &[u8]) -> StoreError {
        let err: S3ErrorXml = quick_xml::de::from_str(&String::from_utf8_lossy(body)).unwrap_or_default();
        let (location, key) = (self.location.clone(), c.key.unwrap_or("bucket").to_string());
        let message = err.message.unwrap_or_else(|| status.to_string());
        match (status.as_u16(), err.code.as_str()) {
            (404, "NoSuchKey") | (404, "NoSuchVersion") => StoreError::NotFound { location, key },
            (404, "NoSuchBucket") => StoreError::Config(format!(
                "bucket of {location} does not exist at the S3 endpoint: create it (with Object Lock: `aws s3api create-bucket --bucket BUCKET --object-lock-enabled-for-bucket`) or fix --repo"
            )),
            (403, _) if message.to_ascii_lowercase().contains("object lock") => StoreError::Retained { location, key },
            (403, _) => StoreError::Denied { location, action: c.action, key, hint: hint(c.action, &message) },
            _ => StoreError::Io {
                location,
                op: c.action,
                key,
                source: format!("HTTP {status} {}: {message}", err.code).into(),
            },
        }
    }

    async fn call(&self, c: Call<'_>) -> Result<(reqwest::header::HeaderMap, Bytes), StoreError> {
        let (status, headers, body) = self.send(&c).await?;
        if status.is_success() { Ok((headers, body)) } else { Err(self.refusal(&c, status, &body)) }
    }
}

/// What to do about a refused `action`.
fn hint(action: &str, message: &str) -> String {
    if is_admin_action(action) {
        format!(
            "{action} is an admin permission ({message}): run this with the admin credentials (deploy/s3/admin-policy.json); the agent's policy leaves it out on purpose"
        )
    } else {
        format!("grant {action} to these credentials ({message}; deploy/s3/agent-policy.json lists what kmdr needs)")
    }
}

/// `<Error><Code>..</Code><Message>..</Message></Error>`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct S3ErrorXml {
    code: String,
    message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct VersioningXml {
    status: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct LockConfigXml {
    object_lock_enabled: Option<String>,
    rule: Option<RuleXml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RuleXml {
    default_retention: Option<DefaultRetentionXml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DefaultRetentionXml {
    mode: Option<String>,
    days: Option<u32>,
    years: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ListVersionsXml {
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_version_id_marker: Option<String>,
    #[serde(rename = "Version")]
    versions: Vec<VersionXml>,
    #[serde(rename = "DeleteMarker")]
    delete_markers: Vec<VersionXml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct VersionXml {
    key: String,
    version_id: String,
    is_latest: bool,
    size: u64,
}

/// Percent-encode a query value (S3's strict set: unreserved characters only).
fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, STRICT).to_string()
}

const STRICT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn parse_xml<T: for<'de> Deserialize<'de> + Default>(
    location: &str,
    what: &'static str,
    body: &[u8],
) -> Result<T, StoreError> {
    quick_xml::de::from_str(&String::from_utf8_lossy(body)).map_err(|e| StoreError::Io {
        location: location.to_string(),
        op: what,
        key: "bucket".into(),
        source: format!("unexpected answer: {e}").into(),
    })
}

#[async_trait]
impl ObjectLock for S3Admin {
    async fn bucket_lock(&self) -> Result<BucketLock, StoreError> {
        let get = |query: &str, action| Call {
            method: reqwest::Method::GET,
            key: None,
            query: query.into(),
            body: None,
            action,
        };
        let (_, body) = self.call(get("versioning", "s3:GetBucketVersioning")).await?;
        let v: VersioningXml = parse_xml(&self.location, "s3:GetBucketVersioning", &body)?;
        let versioning = match v.status.as_deref() {
            Some("Enabled") => Versioning::Enabled,
            Some("Suspended") => Versioning::Suspended,
            _ => Versioning::Off,
        };
        let c = get("object-lock", "s3:GetBucketObjectLockConfiguration");
        let (status, _, body) = self.send(&c).await?;
        if status.as_u16() == 404 {
            let err: S3ErrorXml = quick_xml::de::from_str(&String::from_utf8_lossy(&body)).unwrap_or_default();
            if err.code == "ObjectLockConfigurationNotFoundError" {
                return Ok(BucketLock { versioning, lock_enabled: false, default: None });
            }
        }
        if !status.is_success() {
            return Err(self.refusal(&c, status, &body));
        }
        let l: LockConfigXml = parse_xml(&self.location, "s3:GetBucketObjectLockConfiguration", &body)?;
        let default = l.rule.and_then(|r| r.default_retention).and_then(|d| {
            let days = d.days.unwrap_or(0) + d.years.unwrap_or(0) * 365;
            Some(DefaultRetention { mode: LockMode::from_s3(d.mode.as_deref()?)?, days }).filter(|d| d.days > 0)
        });
        Ok(BucketLock { versioning, lock_enabled: l.object_lock_enabled.as_deref() == Some("Enabled"), default })
    }

    async fn set_default_retention(&self, r: DefaultRetention) -> Result<(), StoreError> {
        let xml = format!(
            "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>{}</Mode><Days>{}</Days></DefaultRetention></Rule></ObjectLockConfiguration>",
            r.mode.s3_name(),
            r.days
        );
        self.call(Call {
            method: reqwest::Method::PUT,
            key: None,
            query: "object-lock".into(),
            body: Some(Bytes::from(xml)),
            action: "s3:PutBucketObjectLockConfiguration",
        })
        .await?;
        Ok(())
    }

    async fn head(&self, key: &str, version: Option<&str>) -> Result<Option<Retention>, StoreError> {
        crate::check_key(key)?;
        let c = Call {
            method: reqwest::Method::HEAD,
            key: Some(key),
            query: version.map(|v| format!("versionId={}", enc(v))).unwrap_or_default(),
            body: None,
            action: if version.is_some() { "s3:GetObjectVersion" } else { "s3:GetObject" },
        };
        let (status, headers, body) = self.send(&c).await?;
        if status.as_u16() == 404 || status.as_u16() == 405 {
            // Missing, or a delete marker (405 when named by version).
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.refusal(&c, status, &body));
        }
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let until = match h("x-amz-object-lock-retain-until-date") {
            Some(s) => {
                Some(DateTime::parse_from_rfc3339(&s).map(|d| d.with_timezone(&Utc)).map_err(|e| StoreError::Io {
                    location: self.location.clone(),
                    op: c.action,
                    key: key.to_string(),
                    source: format!("unreadable x-amz-object-lock-retain-until-date {s:?}: {e}").into(),
                })?)
            }
            None => None,
        };
        Ok(Some(Retention {
            version_id: h("x-amz-version-id").or(version.map(str::to_string)).unwrap_or_else(|| "null".into()),
            mode: h("x-amz-object-lock-mode").and_then(|m| LockMode::from_s3(&m)),
            until,
            legal_hold: h("x-amz-object-lock-legal-hold").is_some_and(|s| s.eq_ignore_ascii_case("ON")),
        }))
    }

    async fn put_retention(
        &self,
        key: &str,
        version: &str,
        mode: LockMode,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        crate::check_key(key)?;
        let xml = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            mode.s3_name(),
            until.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        self.call(Call {
            method: reqwest::Method::PUT,
            key: Some(key),
            query: format!("retention&versionId={}", enc(version)),
            body: Some(Bytes::from(xml)),
            action: "s3:PutObjectRetention",
        })
        .await?;
        Ok(())
    }

    async fn delete_version(&self, key: &str, version: &str) -> Result<(), StoreError> {
        crate::check_key(key)?;
        let c = Call {
            method: reqwest::Method::DELETE,
            key: Some(key),
            query: format!("versionId={}", enc(version)),
            body: None,
            action: "s3:DeleteObjectVersion",
        };
        match self.call(c).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            // AWS says "object protected by object lock"; others (moto) only
            // "Access Denied": the version's own retention tells which.
            Err(StoreError::Denied { location, .. })
                if self.head(key, Some(version)).await.is_ok_and(|r| r.is_some_and(|r| r.locked_at(Utc::now()))) =>
            {
                Err(StoreError::Retained { location, key: key.to_string() })
            }
            Err(e) => Err(e),
        }
    }

    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            let mut query = format!("prefix={}&versions", enc(&format!("{}{prefix}", self.prefix)));
            if let Some((k, v)) = &marker {
                query = format!("key-marker={}&{query}&version-id-marker={}", enc(k), enc(v));
            }
            let (_, body) = self
                .call(Call {
                    method: reqwest::Method::GET,
                    key: None,
                    query,
                    body: None,
                    action: "s3:ListBucketVersions",
                })
                .await?;
            let page: ListVersionsXml = parse_xml(&self.location, "s3:ListBucketVersions", &body)?;
            let strip = |k: &str| k.strip_prefix(&self.prefix).unwrap_or(k).to_string();
            for (v, delete_marker) in
                page.versions.iter().map(|v| (v, false)).chain(page.delete_markers.iter().map(|v| (v, true)))
            {
                out.push(ObjectVersion {
                    key: strip(&v.key),
                    version_id: v.version_id.clone(),
                    latest: v.is_latest,
                    delete_marker,
                    size: v.size,
                });
            }
            match (page.is_truncated, page.next_key_marker, page.next_version_id_marker) {
                (true, Some(k), v) => marker = Some((k, v.unwrap_or_default())),
                _ => break,
            }
        }
        // Newest first per key: the latest version first, then the listing's order.
        out.sort_by(|a, b| a.key.cmp(&b.key).then(b.latest.cmp(&a.latest)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_answers_s3_gives() {
        let l: LockConfigXml = quick_xml::de::from_str(
            "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Days>30</Days></DefaultRetention></Rule></ObjectLockConfiguration>",
        )
        .unwrap();
        assert_eq!(l.object_lock_enabled.as_deref(), Some("Enabled"));
        let d = l.rule.unwrap().default_retention.unwrap();
        assert_eq!((d.mode.as_deref(), d.days, d.years), (Some("COMPLIANCE"), Some(30), None));
        let page: ListVersionsXml = quick_xml::de::from_str(
            "<ListVersionsResult><IsTruncated>true</IsTruncated><NextKeyMarker>p/b</NextKeyMarker><NextVersionIdMarker>v3</NextVersionIdMarker>\
             <Version><Key>p/a</Key><VersionId>v1</VersionId><IsLatest>true</IsLatest><Size>3</Size></Version>\
             <DeleteMarker><Key>p/b</Key><VersionId>v2</VersionId><IsLatest>true</IsLatest></DeleteMarker>\
             <Version><Key>p/b</Key><VersionId>v3</VersionId><IsLatest>false</IsLatest><Size>5</Size></Version></ListVersionsResult>",
        )
        .unwrap();
        assert!(page.is_truncated);
        assert_eq!(page.versions.len(), 2, "versions around a delete marker are all kept");
        assert_eq!(page.delete_markers[0].version_id, "v2");
        let e: S3ErrorXml = quick_xml::de::from_str(
            "<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>x</RequestId></Error>",
        )
        .unwrap();
        assert_eq!(e.code, "AccessDenied");
    }

    #[test]
    fn admin_permissions_are_named_as_such() {
        assert!(hint("s3:DeleteObjectVersion", "Access Denied").contains("admin credentials"));
        assert!(hint("s3:PutObject", "Access Denied").contains("grant s3:PutObject"));
        assert_eq!(enc("p/data/"), "p%2Fdata%2F");
        let r = Retention { version_id: "v".into(), mode: None, until: Some(Utc::now()), legal_hold: false };
        assert!(!r.locked_at(Utc::now() + chrono::Duration::seconds(1)));
        assert!(Retention { legal_hold: true, ..r }.locked_at(Utc::now()));
    }

    /// The contract against the S3 server of the tests (moto): a bucket made
    /// with Object Lock, its default retention on every PUT, a retained
    /// version S3 refuses to delete, a plain DELETE that only adds a delete
    /// marker, and a version deleted once its date has passed (moved there
    /// with PutObjectRetention, which moto allows and S3 would not).
    #[tokio::test]
    async fn the_contract_on_the_s3_test_server() {
        use crate::{S3Options, S3Store, Store};
        let Some(endpoint) = crate::conformance::s3_test_endpoint() else { return };
        let bucket = format!("lock-{:012x}", rand::random::<u64>() >> 16);
        let made = reqwest::Client::new()
            .put(format!("{endpoint}/{bucket}"))
            .header("x-amz-bucket-object-lock-enabled", "true")
            .send()
            .await
            .unwrap();
        assert!(made.status().is_success(), "{made:?}");
        let store = S3Store::new(&bucket, "p", &S3Options { endpoint: Some(endpoint), ..Default::default() }).unwrap();
        let api = store.object_lock().unwrap();
        let state = api.bucket_lock().await.unwrap();
        assert_eq!((state.versioning, state.lock_enabled, state.default), (Versioning::Enabled, true, None));
        api.set_default_retention(DefaultRetention { mode: LockMode::Governance, days: 2 }).await.unwrap();
        assert_eq!(
            api.bucket_lock().await.unwrap().default,
            Some(DefaultRetention { mode: LockMode::Governance, days: 2 })
        );

        store.put("data/aa", Bytes::from_static(b"one")).await.unwrap();
        store.put("data/aa", Bytes::from_static(b"two")).await.unwrap();
        let r = api.head("data/aa", None).await.unwrap().unwrap();
        assert_eq!(r.mode, Some(LockMode::Governance));
        let until = r.until.unwrap();
        assert!(until > Utc::now() + chrono::Duration::hours(47), "{until}");
        let versions = api.list_versions("data/").await.unwrap();
        assert_eq!(versions.len(), 2, "{versions:?}");
        assert!(versions[0].latest && versions[0].version_id == r.version_id && versions[0].size == 3);
        let old = versions[1].version_id.clone();
        let refused = api.delete_version("data/aa", &old).await.unwrap_err();
        assert!(matches!(refused, StoreError::Retained { .. }), "{refused:?}");

        // A plain DELETE hides the object behind a delete marker and frees nothing.
        store.delete("data/aa").await.unwrap();
        assert!(store.list("data/").await.unwrap().is_empty());
        assert!(api.head("data/aa", None).await.unwrap().is_none());
        let after = api.list_versions("data/").await.unwrap();
        assert_eq!(after.iter().filter(|v| v.delete_marker).count(), 1, "{after:?}");
        assert_eq!(after.iter().filter(|v| !v.delete_marker).count(), 2);

        // Once a version's date has passed, it goes for good.
        let past = Utc::now() - chrono::Duration::minutes(1);
        api.put_retention("data/aa", &old, LockMode::Governance, past).await.unwrap();
        assert_eq!(
            api.head("data/aa", Some(&old)).await.unwrap().unwrap().until.unwrap().timestamp(),
            past.timestamp()
        );
        api.delete_version("data/aa", &old).await.unwrap();
        assert!(api.list_versions("data/").await.unwrap().iter().all(|v| v.version_id != old));
        api.delete_version("data/aa", &old).await.unwrap(); // gone already: not an error
    }
}
