//! Seeding the lab's datastores through the driver kmdr's own restore uses, so
//! that what the lab holds is what kmdr reads back.

use crate::LabError;
use crate::error::DatastoreFailure;
use kmdr_core::TlsFiles;
use kmdr_datastore::{self as tenant, DatastoreUrl, RecordReader, RecordWriter, TenantError, TenantStore};
use kmdr_testkit::data::Records;
use std::path::Path;
use std::time::{Duration, Instant};

/// A datastore of the lab: its URL (without credentials) and password.
pub(crate) struct Target<'a> {
    pub url: &'a str,
    pub password: Option<&'a str>,
}

impl Target<'_> {
    async fn connect(&self) -> Result<tenant::AnyTenants, TenantError> {
        let url = DatastoreUrl::parse(self.url)?.with_credentials(None, self.password.map(str::to_string));
        tenant::connect(&url, TlsFiles::default()).await
    }

    /// Wait (30s) until kmdr's driver lists the datastore's tenants; `alive`
    /// says whether the server still runs.
    pub async fn wait(&self, server: &'static str, log: &Path, alive: impl Fn() -> bool) -> Result<(), LabError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let err = match self.connect().await {
                Ok(s) => match s.list_tenants().await {
                    Ok(_) => return Ok(()),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if !alive() || Instant::now() > deadline {
                return Err(DatastoreFailure::Unreachable { server, log: log.into(), source: err }.into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Write `records` as tenant `schema`, replacing what the tenant held.
    pub async fn seed(&self, schema: &str, records: &Records) -> Result<(), LabError> {
        let seed = async {
            let mut stream = Vec::new();
            let mut w = RecordWriter::new(&mut stream);
            for (i, (k, v)) in records.iter().enumerate() {
                w.write(k, v, i as i64 + 1, i as i64 + 1).await?;
            }
            w.finish().await?;
            let store = self.connect().await?;
            store.import(schema, &mut RecordReader::new(stream.as_slice()), true).await
        };
        seed.await.map(|_| ()).map_err(|source| DatastoreFailure::Seed { schema: schema.into(), source }.into())
    }
}
