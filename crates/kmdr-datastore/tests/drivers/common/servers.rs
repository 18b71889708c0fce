//! One real server per tenant datastore driver, for the suites that run the
//! same cases against every driver (conformance, through kine).

use kmdr_datastore::Driver;
use kmdr_testkit::{Etcd, Mariadb, Nats, Postgres};
use std::path::Path;

/// A running server of one driver; stopped when dropped.
pub enum Server {
    Etcd(Etcd),
    Postgres(Postgres),
    Mysql(Mariadb),
    Nats(Nats),
}

impl Server {
    /// Start a server for `driver` in `dir/<driver>`, and the URL kmdr takes
    /// for it; `None` when its binary is missing outside CI
    /// (`kmdr_testkit::need` panics in CI).
    pub fn start(driver: Driver, dir: &Path) -> Option<(Server, String)> {
        let bin = match driver {
            Driver::Etcd => "etcd",
            Driver::Postgres => "initdb",
            Driver::Mysql => "mariadbd",
            Driver::Nats => "nats-server",
        };
        if !kmdr_testkit::need(bin) {
            return None;
        }
        let dir = dir.join(driver.as_str());
        std::fs::create_dir_all(&dir).unwrap();
        Some(match driver {
            Driver::Etcd => {
                let e = Etcd::start(&dir, "tenants");
                let url = e.client_url.replace("http://", "etcd://");
                (Server::Etcd(e), url)
            }
            Driver::Postgres => {
                let p = Postgres::start(&dir);
                let url = p.url();
                (Server::Postgres(p), url)
            }
            Driver::Mysql => {
                let m = Mariadb::start(&dir);
                let url = m.url();
                (Server::Mysql(m), url)
            }
            Driver::Nats => {
                let n = Nats::start(&dir);
                let url = n.url();
                (Server::Nats(n), url)
            }
        })
    }

    pub fn driver(&self) -> Driver {
        match self {
            Server::Etcd(_) => Driver::Etcd,
            Server::Postgres(_) => Driver::Postgres,
            Server::Mysql(_) => Driver::Mysql,
            Server::Nats(_) => Driver::Nats,
        }
    }

    /// The last lines of the server's log: what a test that lost its server
    /// mid-way prints (a flake seen once: kine's dial to MariaDB refused
    /// during the churn of tenant_kine).
    pub fn log_tail(&self) -> String {
        let log = match self {
            Server::Etcd(e) => e.log.clone(),
            Server::Postgres(p) => p.log.clone(),
            Server::Mysql(m) => m.log.clone(),
            Server::Nats(n) => n.log.clone(),
        };
        let text = std::fs::read_to_string(&log).unwrap_or_else(|e| format!("({}: {e})", log.display()));
        let lines: Vec<&str> = text.lines().collect();
        format!("{}:\n{}", log.display(), lines[lines.len().saturating_sub(60)..].join("\n"))
    }

    /// kine's `--endpoint` for tenant `schema` on this server (none for etcd:
    /// the API server talks to it directly).
    pub fn kine_endpoint(&self, schema: &str) -> Option<String> {
        match self {
            Server::Etcd(_) => None,
            Server::Postgres(p) => Some(p.kine_endpoint(schema)),
            Server::Mysql(m) => Some(m.kine_endpoint(schema)),
            Server::Nats(n) => Some(n.kine_endpoint(schema)),
        }
    }
}
