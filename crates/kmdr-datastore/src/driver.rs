//! The datastore drivers Kamaji supports, by name.

use std::fmt;

/// The datastore drivers Kamaji supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    Etcd,
    Postgres,
    Mysql,
    Nats,
}

impl Driver {
    pub const ALL: [Driver; 4] = [Driver::Etcd, Driver::Postgres, Driver::Mysql, Driver::Nats];

    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Etcd => "etcd",
            Driver::Postgres => "postgres",
            Driver::Mysql => "mysql",
            Driver::Nats => "nats",
        }
    }

    /// The port a URL without one means.
    pub fn default_port(self) -> u16 {
        match self {
            Driver::Etcd => 2379,
            Driver::Postgres => 5432,
            Driver::Mysql => 3306,
            Driver::Nats => 4222,
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
