//! Connecting to etcd the way etcdctl does: a list of endpoints, optional TLS
//! client certificates. Backups talk to exactly one member (the first that
//! answers), as `etcdctl snapshot save` does, so that the metadata recorded
//! and the snapshot come from the same member.

use crate::EtcdError;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
pub use kmdr_core::TlsFiles;
use std::path::PathBuf;
use std::time::Duration;

/// How to reach an etcd cluster.
#[derive(Debug, Clone)]
pub struct EtcdConnection {
    /// `host:port`, `http://host:port` or `https://host:port`.
    pub endpoints: Vec<String>,
    pub tls: TlsFiles,
    pub connect_timeout: Duration,
    /// etcd user and password (etcd's own auth), when the cluster enables it.
    pub credentials: Option<(String, String)>,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|source| EtcdError::TlsFile { path: path.clone(), source })
}

impl EtcdConnection {
    pub fn new(endpoints: Vec<String>, tls: TlsFiles) -> Self {
        EtcdConnection { endpoints, tls, connect_timeout: Duration::from_secs(5), credentials: None }
    }

    /// Endpoints with a scheme: `https://` when TLS files are given, else `http://`.
    pub fn urls(&self) -> Vec<String> {
        let scheme = if self.tls.is_set() { "https" } else { "http" };
        self.endpoints.iter().map(|e| if e.contains("://") { e.clone() } else { format!("{scheme}://{e}") }).collect()
    }

    fn options(&self) -> Result<ConnectOptions, EtcdError> {
        let mut o = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
        if let Some((user, password)) = &self.credentials {
            o = o.with_user(user.clone(), password.clone());
        }
        let uses_https = self.urls().iter().any(|u| u.starts_with("https://"));
        if self.tls.is_set() || uses_https {
            let mut t = TlsOptions::new();
            if let Some(ca) = &self.tls.cacert {
                t = t.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            match (&self.tls.cert, &self.tls.key) {
                (Some(c), Some(k)) => t = t.identity(Identity::from_pem(read(c)?, read(k)?)),
                (None, None) => {}
                _ => return Err(EtcdError::TlsConfig("--cert and --key go together: pass both or neither".into())),
            }
            o = o.with_tls(t);
        }
        Ok(o)
    }

    /// Connect to the first endpoint that answers a status request.
    pub async fn connect_one(&self) -> Result<(Client, String), EtcdError> {
        if self.endpoints.is_empty() {
            return Err(EtcdError::Unreachable { endpoints: "(none)".into(), detail: "no endpoint given".into() });
        }
        let opts = self.options()?;
        let mut details = Vec::new();
        for url in self.urls() {
            let attempt = async {
                let mut c = Client::connect([url.as_str()], Some(opts.clone())).await?;
                c.status().await?;
                Ok::<_, etcd_client::Error>(c)
            };
            match tokio::time::timeout(self.connect_timeout * 2, attempt).await {
                Ok(Ok(c)) => return Ok((c, url)),
                Ok(Err(e)) => details.push(format!("{url}: {}", describe(&e))),
                Err(_) => details.push(format!("{url}: timed out")),
            }
        }
        Err(EtcdError::Unreachable { endpoints: self.urls().join(","), detail: details.join("; ") })
    }
}

/// A one-line description of an etcd-client error: the gRPC message and its
/// underlying causes ("tcp connect error: Connection refused"), without debug dumps.
pub fn describe(e: &etcd_client::Error) -> String {
    let (mut s, mut src): (String, Option<&(dyn std::error::Error + 'static)>) = match e {
        etcd_client::Error::GRpcStatus(st) => (st.message().to_string(), std::error::Error::source(st)),
        other => (other.to_string(), std::error::Error::source(other)),
    };
    while let Some(cause) = src {
        let c = cause.to_string();
        if !c.is_empty() && !s.contains(&c) && !c.contains("tonic::") {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}
