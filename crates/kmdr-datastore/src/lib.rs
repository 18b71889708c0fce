//! Tenant control-plane data: one tenant's keys in a shared Kamaji datastore,
//! backed up and restored without touching any other tenant.
//!
//! Every driver turns its datastore into the same sorted record stream
//! ([`records`]) and back, so a backup taken from one driver restores into any
//! other. Keys are stored relative to the tenant's key root: `/<schema>` on
//! etcd (Kamaji runs the API server with `--etcd-prefix=/<schema>`), `/registry`
//! under kine (database or bucket `<schema>`).
//!
//! | driver   | tenant is                       | point in time                           |
//! |----------|---------------------------------|-----------------------------------------|
//! | etcd     | keys in `[/<schema>/, /<schema>0)` | one revision, paginated reads pinned to it |
//! | postgres | table `kine` of database `<schema>` | one REPEATABLE READ transaction         |
//! | mysql    | table `kine` of database `<schema>` | one transaction WITH CONSISTENT SNAPSHOT |
//! | nats     | JetStream KV bucket `<schema>`  | the stream's last sequence at the start |

//!
//! Each driver is a store ([`TenantStore`], the contract in [`store`]) and a
//! change feed (`feed` in its module, behind [`feed::ChangeFeed`]) that the
//! one capture core ([`capture`]) turns into delta segments. A point in time
//! is the full backup's records merged with the segments' changes
//! ([`point`]).

pub mod any;
pub mod capture;
pub mod driver;
pub mod etcd;
pub mod feed;
pub mod inventory;
pub mod kine_sql;
pub mod mysql;
pub mod nats;
pub mod point;
pub mod postgres;
pub mod records;
pub mod spill;
pub mod store;
pub mod tenant;
pub mod url;

pub use any::{AnyTenants, connect};
pub use records::{RECORDS_FILE, Record, RecordReader, RecordSummary, RecordWriter};
pub use store::{ExportInfo, ImportInfo, KIND, TenantError, TenantStore};
pub use tenant::{
    TenantBackupOptions, TenantRestorePlan, backup_tenant, backup_tenant_in, export_into, plan_tenant_restore,
    restore_records, restore_tenant, tenant_info,
};
pub use url::{DatastoreUrl, Driver, read_password_file};
