//! Any driver, chosen at run time by the datastore URL's scheme.

use crate::records::{RecordReader, RecordWriter};
use crate::store::{ExportInfo, ImportInfo, TenantError, TenantStore};
use crate::url::{DatastoreUrl, Driver};
use crate::{etcd, mysql, nats, postgres};
use kmdr_core::TlsFiles;
use tokio::io::{AsyncRead, AsyncWrite};

/// Any driver, chosen by the `--datastore` URL's scheme.
// One per connected datastore, held for its life: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum AnyTenants {
    Etcd(etcd::EtcdTenants),
    Postgres(postgres::PostgresTenants),
    Mysql(mysql::MysqlTenants),
    Nats(nats::NatsTenants),
}

/// Connect to the datastore `url` names. `tls` (`--cacert/--cert/--key`)
/// applies to every driver: etcds://, PostgreSQL (verify-full), MySQL, NATS.
pub async fn connect(url: &DatastoreUrl, tls: TlsFiles) -> Result<AnyTenants, TenantError> {
    Ok(match url.driver {
        Driver::Postgres => AnyTenants::Postgres(postgres::PostgresTenants::connect(url, &tls).await?),
        Driver::Mysql => AnyTenants::Mysql(mysql::MysqlTenants::connect(url, &tls).await?),
        Driver::Etcd => AnyTenants::Etcd(etcd::EtcdTenants::connect(url, tls).await?),
        Driver::Nats => AnyTenants::Nats(nats::NatsTenants::connect(url, &tls).await?),
    })
}

/// Forward a call to whichever driver `AnyTenants` holds.
macro_rules! each_driver {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            AnyTenants::Etcd($s) => $body,
            AnyTenants::Postgres($s) => $body,
            AnyTenants::Mysql($s) => $body,
            AnyTenants::Nats($s) => $body,
        }
    };
}

impl TenantStore for AnyTenants {
    fn driver(&self) -> Driver {
        each_driver!(self, s => s.driver())
    }
    fn datastore(&self) -> String {
        each_driver!(self, s => s.datastore())
    }
    fn key_root(&self, schema: &str) -> String {
        each_driver!(self, s => s.key_root(schema))
    }
    async fn list_tenants(&self) -> Result<Vec<String>, TenantError> {
        each_driver!(self, s => s.list_tenants().await)
    }
    async fn shared_read_point(&self) -> Result<Option<i64>, TenantError> {
        each_driver!(self, s => s.shared_read_point().await)
    }
    async fn export<W: AsyncWrite + Unpin + Send>(
        &self,
        schema: &str,
        at: Option<i64>,
        out: &mut RecordWriter<W>,
    ) -> Result<ExportInfo, TenantError> {
        each_driver!(self, s => s.export(schema, at, out).await)
    }
    async fn count(&self, schema: &str) -> Result<u64, TenantError> {
        each_driver!(self, s => s.count(schema).await)
    }
    async fn import<R: AsyncRead + Unpin + Send>(
        &self,
        schema: &str,
        input: &mut RecordReader<R>,
        replace: bool,
    ) -> Result<ImportInfo, TenantError> {
        each_driver!(self, s => s.import(schema, input, replace).await)
    }
}
