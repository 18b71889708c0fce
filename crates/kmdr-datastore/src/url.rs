//! `--datastore URL`: which driver, where, and as whom.
//!
//! ```text
//! etcd://host:port[,host:port...]     etcds://... (TLS: --cacert/--cert/--key)
//! postgres://user:pass@host:port[/maintenance-db][?sslmode=...]
//! mysql://user:pass@host:port
//! nats://[user:pass@]host:port
//! ```
//!
//! Credentials may also come from the environment or a file (the CLI fills
//! them in); they are never printed: [`DatastoreUrl::redacted`] is what
//! messages, logs and manifests show.

pub use crate::driver::Driver;
use crate::store::TenantError;
use percent_encoding::percent_decode_str;
use std::fmt;

/// A parsed `--datastore` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct DatastoreUrl {
    pub driver: Driver,
    /// `etcds://` (TLS); SQL and NATS take TLS settings from their query.
    pub tls: bool,
    pub hosts: Vec<(String, u16)>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Path after the hosts, without the leading `/` (PostgreSQL: the database to connect to for listing).
    pub path: Option<String>,
    /// Query parameters, in order.
    pub params: Vec<(String, String)>,
}

impl fmt::Debug for DatastoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl DatastoreUrl {
    pub fn parse(url: &str) -> Result<Self, TenantError> {
        let bad = |why: String| {
            TenantError::BadUrl(format!(
                "{why} in {:?}; expected e.g. etcd://127.0.0.1:2379, postgres://user:pass@host:5432, mysql://user:pass@host:3306 or nats://host:4222",
                redact_str(url)
            ))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme".into()))?;
        let (driver, tls) = match scheme.to_ascii_lowercase().as_str() {
            "etcd" | "http" => (Driver::Etcd, false),
            "etcds" | "https" => (Driver::Etcd, true),
            "postgres" | "postgresql" => (Driver::Postgres, false),
            "mysql" => (Driver::Mysql, false),
            "nats" => (Driver::Nats, false),
            "tls" => (Driver::Nats, true),
            other => return Err(bad(format!("unknown scheme {other:?} (etcd, etcds, postgres, mysql, nats)"))),
        };
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, q),
            None => (tail, ""),
        };
        let (userinfo, hostlist) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let decode = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| bad("credentials are not valid UTF-8 after percent-decoding".into()))
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((a, b)) => (Some(decode(a)?), Some(decode(b)?)),
                None => (Some(decode(u)?), None),
            },
        };
        if hostlist.is_empty() {
            return Err(bad("no host".into()));
        }
        let mut hosts = Vec::new();
        for h in hostlist.split(',') {
            let (host, port) = if let Some(v6) = h.strip_prefix('[') {
                let (addr, after) = v6.split_once(']').ok_or_else(|| bad(format!("unclosed [ in host {h:?}")))?;
                (addr.to_string(), after.strip_prefix(':'))
            } else {
                match h.rsplit_once(':') {
                    Some((a, p)) => (a.to_string(), Some(p)),
                    None => (h.to_string(), None),
                }
            };
            if host.is_empty() {
                return Err(bad(format!("empty host in {h:?}")));
            }
            let port = match port {
                None => driver.default_port(),
                Some(p) => p.parse::<u16>().map_err(|_| bad(format!("port {p:?} is not a number from 0 to 65535")))?,
            };
            hosts.push((host, port));
        }
        if driver != Driver::Etcd && hosts.len() > 1 {
            return Err(bad(format!("{driver} takes one host")));
        }
        let path = path.trim_start_matches('/');
        let params = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                Ok((decode(k)?, decode(v)?))
            })
            .collect::<Result<Vec<_>, TenantError>>()?;
        Ok(DatastoreUrl {
            driver,
            tls,
            hosts,
            user,
            password,
            path: (!path.is_empty()).then(|| path.to_string()),
            params,
        })
    }

    /// Fill in credentials the URL lacks (from the environment or a file).
    pub fn with_credentials(mut self, user: Option<String>, password: Option<String>) -> Self {
        if self.user.is_none() {
            self.user = user;
        }
        if self.password.is_none() {
            self.password = password;
        }
        self
    }

    /// `host:port` of every host.
    pub fn host_ports(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|(h, p)| if h.contains(':') { format!("[{h}]:{p}") } else { format!("{h}:{p}") })
            .collect()
    }

    /// The URL as shown to people: no password, no secret query values.
    pub fn redacted(&self) -> String {
        let scheme = match (self.driver, self.tls) {
            (Driver::Etcd, false) => "etcd",
            (Driver::Etcd, true) => "etcds",
            (Driver::Nats, true) => "tls",
            (d, _) => d.as_str(),
        };
        let user = self.user.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
        let mut s = format!("{scheme}://{user}{}", self.host_ports().join(","));
        if let Some(p) = &self.path {
            s.push('/');
            s.push_str(p);
        }
        let shown: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| if is_secret_param(k) { format!("{k}=***") } else { format!("{k}={v}") })
            .collect();
        if !shown.is_empty() {
            s.push('?');
            s.push_str(&shown.join("&"));
        }
        s
    }

    /// The value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A datastore password kept in a file (`--password-file`, a plan's
/// `passwordFile`): its content without the trailing newline.
pub fn read_password_file(path: &std::path::Path) -> Result<String, TenantError> {
    std::fs::read_to_string(path)
        .map(|p| p.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|e| TenantError::BadUrl(format!("cannot read the password file {}: {e}", path.display())))
}

fn is_secret_param(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    k.contains("pass") || k.contains("secret") || k.contains("token")
}

/// Best-effort redaction of a URL that did not parse: drop whatever follows
/// the first `:` of the user info.
fn redact_str(url: &str) -> String {
    let Some(at) = url.rfind('@') else { return url.to_string() };
    let start = url[..at].find("://").map(|i| i + 3).unwrap_or(0);
    match url[start..at].find(':') {
        Some(c) => format!("{}:***{}", &url[..start + c], &url[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_driver() {
        let u = DatastoreUrl::parse("etcd://10.0.0.1:2379,10.0.0.2:2379").unwrap();
        assert_eq!((u.driver, u.tls, u.hosts.len()), (Driver::Etcd, false, 2));
        assert!(DatastoreUrl::parse("etcds://e:2379").unwrap().tls);
        let u = DatastoreUrl::parse("postgres://kamaji:s%40cret@db:5433/postgres?sslmode=disable").unwrap();
        assert_eq!(u.driver, Driver::Postgres);
        assert_eq!(u.user.as_deref(), Some("kamaji"));
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert_eq!(u.hosts, vec![("db".to_string(), 5433)]);
        assert_eq!(u.path.as_deref(), Some("postgres"));
        assert_eq!(u.param("sslmode"), Some("disable"));
        assert_eq!(DatastoreUrl::parse("mysql://root@127.0.0.1").unwrap().hosts[0].1, 3306);
        assert_eq!(DatastoreUrl::parse("nats://[::1]:4223").unwrap().host_ports(), vec!["[::1]:4223"]);
    }

    #[test]
    fn never_shows_passwords() {
        let u = DatastoreUrl::parse("postgres://kamaji:hunter2@db:5432?password=hunter3").unwrap();
        assert_eq!(u.redacted(), "postgres://kamaji@db:5432?password=***");
        assert!(!format!("{u:?}").contains("hunter"));
        for bad in [
            "postgres://kamaji:hunter2@db:notaport",
            "redis://kamaji:hunter2@db",
            "kamaji:hunter2@db",
            "mysql://kamaji:hunter2@a:1,b:2",
        ] {
            let e = DatastoreUrl::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.starts_with("invalid --datastore URL"), "{e}");
        }
    }
}
