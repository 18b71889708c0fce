//! How kmdr reaches a DataStore's data: its driver, endpoints, credentials
//! and certificates, resolved from the DataStore and its Secrets.

use super::*;
use crate::client::meta_name;
use base64::Engine;
use kmdr_core::TlsFiles;
use kmdr_datastore::{self as tenant, AnyTenants, DatastoreUrl, Driver, TenantError};
use serde_json::Value;
use std::collections::BTreeMap;

/// The DataStore a TCP uses: `spec.dataStore`, else `status.storage.dataStoreName`.
pub fn datastore_of(tcp: &Value) -> Option<String> {
    str_at(tcp, &["spec", "dataStore"])
        .or_else(|| str_at(tcp, &["status", "storage", "dataStoreName"]))
        .map(str::to_string)
}

pub(super) fn owner_of(obj: &Value, kind: &str) -> Option<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == kind)
        .and_then(|r| r["name"].as_str())
        .map(str::to_string)
}

/// Secrets (`namespace/name`) a DataStore's credentials and certificates come from.
pub fn datastore_secret_refs(ds: &Value) -> Vec<(String, String)> {
    let spec = &ds["spec"];
    let refs = [
        &spec["basicAuth"]["username"],
        &spec["basicAuth"]["password"],
        &spec["tlsConfig"]["certificateAuthority"]["certificate"],
        &spec["tlsConfig"]["certificateAuthority"]["privateKey"],
        &spec["tlsConfig"]["clientCertificate"]["certificate"],
        &spec["tlsConfig"]["clientCertificate"]["privateKey"],
    ];
    let mut out: Vec<(String, String)> = refs
        .iter()
        .filter_map(|r| {
            let s = &r["secretReference"];
            Some((s["namespace"].as_str()?.to_string(), s["name"].as_str()?.to_string()))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Secrets by `(namespace, name)`, for resolving a DataStore's references.
pub type SecretSource = BTreeMap<(String, String), Value>;

/// How to reach a DataStore's data: URL (with credentials), TLS files, and
/// the temporary directory holding them (removed when dropped).
pub struct DatastoreAccess {
    pub url: DatastoreUrl,
    pub tls: TlsFiles,
    _dir: Option<tempfile::TempDir>,
}

impl DatastoreAccess {
    pub async fn connect(&self) -> Result<AnyTenants, TenantError> {
        tenant::connect(&self.url, self.tls.clone()).await
    }
}

/// Kamaji's driver name as kmdr's.
fn driver_of(kamaji: &str) -> Option<Driver> {
    match kamaji {
        "etcd" => Some(Driver::Etcd),
        "PostgreSQL" => Some(Driver::Postgres),
        "MySQL" => Some(Driver::Mysql),
        "NATS" => Some(Driver::Nats),
        _ => None,
    }
}

/// Resolve a ContentRef (`content`, base64, or `secretReference` with `keyPath`).
fn content_ref(ds_name: &str, r: &Value, what: &str, secrets: &SecretSource) -> Result<Option<Vec<u8>>, TenantsError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let bad = |detail: String| TenantsError::DataStore { datastore: ds_name.into(), detail };
    if let Some(c) = r["content"].as_str().filter(|c| !c.is_empty()) {
        return b64.decode(c).map(Some).map_err(|e| bad(format!("{what}.content is not base64: {e}")));
    }
    let s = &r["secretReference"];
    let (Some(ns), Some(name)) = (s["namespace"].as_str(), s["name"].as_str()) else { return Ok(None) };
    let key = s["keyPath"].as_str().unwrap_or_default();
    let secret = secrets
        .get(&(ns.to_string(), name.to_string()))
        .ok_or_else(|| bad(format!("{what} refers to Secret {ns}/{name}, which is neither in the cluster nor in the backup; restore the platform's Secrets first")))?;
    let value =
        secret["data"][key].as_str().ok_or_else(|| bad(format!("{what}: Secret {ns}/{name} has no key {key:?}")))?;
    b64.decode(value).map(Some).map_err(|e| bad(format!("Secret {ns}/{name} key {key}: {e}")))
}

/// How to reach the data of DataStore `ds`: its driver and endpoints (or
/// `endpoint_override`, for a kmdr that runs outside the cluster's network),
/// its basicAuth, and its tlsConfig's CA and client certificate written to
/// private temporary files.
pub fn datastore_access(
    ds: &Value,
    secrets: &SecretSource,
    endpoint_override: Option<&str>,
) -> Result<DatastoreAccess, TenantsError> {
    let name = meta_name(ds).1;
    let bad = |detail: String| TenantsError::DataStore { datastore: name.clone(), detail };
    let spec = &ds["spec"];
    let kamaji_driver = spec["driver"].as_str().unwrap_or_default();
    let driver = driver_of(kamaji_driver)
        .ok_or_else(|| bad(format!("unknown spec.driver {kamaji_driver:?} (etcd, PostgreSQL, MySQL, NATS)")))?;
    let endpoints: Vec<String> = match endpoint_override {
        Some(e) => e.split(',').map(str::to_string).collect(),
        None => spec["endpoints"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
    };
    if endpoints.is_empty() {
        return Err(bad("spec.endpoints is empty".into()));
    }
    let tls_cfg = &spec["tlsConfig"];
    let has_tls = tls_cfg.is_object();
    let scheme = match (driver, has_tls) {
        (Driver::Etcd, true) => "etcds",
        (Driver::Etcd, false) => "etcd",
        (Driver::Postgres, _) => "postgres",
        (Driver::Mysql, _) => "mysql",
        (Driver::Nats, _) => "nats",
    };
    // Kamaji connects SQL and NATS drivers to the first endpoint.
    let hosts = if driver == Driver::Etcd { endpoints.join(",") } else { endpoints[0].clone() };
    let hosts = hosts.trim_start_matches("https://").trim_start_matches("http://").to_string();
    let url = DatastoreUrl::parse(&format!("{scheme}://{hosts}")).map_err(|e| bad(e.to_string()))?;
    let text = |v: Option<Vec<u8>>, what: &str| -> Result<Option<String>, TenantsError> {
        v.map(|b| {
            String::from_utf8(b)
                .map(|s| s.trim_end_matches('\n').to_string())
                .map_err(|_| bad(format!("{what} is not text")))
        })
        .transpose()
    };
    let user =
        text(content_ref(&name, &spec["basicAuth"]["username"], "basicAuth.username", secrets)?, "basicAuth.username")?;
    let password =
        text(content_ref(&name, &spec["basicAuth"]["password"], "basicAuth.password", secrets)?, "basicAuth.password")?;
    let url = url.with_credentials(user, password);
    let ca = content_ref(
        &name,
        &tls_cfg["certificateAuthority"]["certificate"],
        "tlsConfig.certificateAuthority.certificate",
        secrets,
    )?;
    let cert = content_ref(
        &name,
        &tls_cfg["clientCertificate"]["certificate"],
        "tlsConfig.clientCertificate.certificate",
        secrets,
    )?;
    let key = content_ref(
        &name,
        &tls_cfg["clientCertificate"]["privateKey"],
        "tlsConfig.clientCertificate.privateKey",
        secrets,
    )?;
    if ca.is_none() && cert.is_none() {
        return Ok(DatastoreAccess { url, tls: TlsFiles::default(), _dir: None });
    }
    let dir = tempfile::Builder::new().prefix("kmdr-datastore-").tempdir().map_err(TenantsError::Local)?;
    let write = |file: &str, content: Option<Vec<u8>>| -> Result<Option<std::path::PathBuf>, TenantsError> {
        let Some(content) = content else { return Ok(None) };
        let path = dir.path().join(file);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        use std::io::Write;
        opts.open(&path).and_then(|mut f| f.write_all(&content)).map_err(TenantsError::Local)?;
        Ok(Some(path))
    };
    let tls =
        TlsFiles { cacert: write("ca.crt", ca)?, cert: write("client.crt", cert)?, key: write("client.key", key)? };
    Ok(DatastoreAccess { url, tls, _dir: Some(dir) })
}
