//! Exit codes. They are part of the interface: scripts and the drill runner
//! branch on them. [`TABLE`] is the one source: the code of an error is the
//! code of its class ([`kmdr_core::ErrorClass`], which every library error
//! declares), `kmdr --help` lists the table, and a test checks that
//! docs/design.md section 14 shows the same table.

use kmdr_core::{Classify, ErrorClass};
use std::sync::LazyLock;

pub const OK: i32 = 0;
/// A check found problems (verify found damage, a drill failed).
pub const CHECK_FAILED: i32 = 1;
pub const OTHER: i32 = 10;

/// One exit code: the class it stands for (none for success and a failed
/// check, which are results, not errors), what it means and what to do.
pub struct ExitCode {
    pub code: i32,
    pub class: Option<ErrorClass>,
    pub meaning: &'static str,
    pub next: &'static str,
}

const fn row(code: i32, class: Option<ErrorClass>, meaning: &'static str, next: &'static str) -> ExitCode {
    ExitCode { code, class, meaning, next }
}

/// Every exit code kmdr returns.
pub const TABLE: &[ExitCode] = &[
    row(OK, None, "success", ""),
    row(
        CHECK_FAILED,
        None,
        "a check failed: verify found damaged backups, a drill failed, plan check found problems, status or runbook check found a breach",
        "Read the report it printed",
    ),
    row(
        2,
        Some(ErrorClass::Usage),
        "usage error: unknown flag, missing argument, a malformed id, URL, reference or plan, a plan that cannot be drilled",
        "See the command's --help",
    ),
    row(
        3,
        Some(ErrorClass::Repository),
        "repository problem: none at --repo, already initialized, locked, unsupported format, bad repository URL or missing bucket",
        "Check --repo; `kmdr repo init` creates one, `kmdr repo unlock` removes a stale lock",
    ),
    row(
        4,
        Some(ErrorClass::Key),
        "key problem: no key file, unreadable, or not this repository's key; inspect: a Secret encrypted at rest without the key that decrypts it",
        "Pass the key file `kmdr repo init` wrote (--key-file or KMDR_KEY_FILE); for inspect, --encryption-config",
    ),
    row(
        5,
        Some(ErrorClass::NotFound),
        "not found: unknown or ambiguous backup id, a backup of the wrong kind, an unknown or empty tenant, an unknown Helm release, Secret or object",
        "`kmdr backups list` shows what the repository holds",
    ),
    row(
        6,
        Some(ErrorClass::Source),
        "source problem: etcd, a tenant datastore or the Kubernetes API unreachable, credentials refused, TLS failure, a failed query, a snapshot that failed its checksum, a tenant restore stopped part way, the volume backup tool reported failure",
        "Check the endpoint, the credentials and TLS files, and that the server runs",
    ),
    row(
        7,
        Some(ErrorClass::Damaged),
        "damaged data: a stored object failed its checks, or inspect cannot read a snapshot or a value; nothing was restored",
        "`kmdr verify --all` names the affected backups; restore an older, intact one",
    ),
    row(
        8,
        Some(ErrorClass::Refused),
        "refused or local target problem: data dir or tenant not empty, file exists, restore tool (etcdutl, etcd, helm) missing, the restore target cannot be written, a TenantControlPlane with another dataStoreSchema, volume backup tool not installed, a PVC to restore already exists",
        "Nothing was changed: read why, then clear the way (or pass --force where the command offers it)",
    ),
    row(
        9,
        Some(ErrorClass::Storage),
        "storage failure: disk full, permission denied, object store unreachable",
        "Free space or fix the repository's permissions or endpoint, then run the command again",
    ),
    row(
        OTHER,
        Some(ErrorClass::Other),
        "any other error, including a failed etcdutl/etcdctl snapshot restore",
        "Read the message",
    ),
    row(
        11,
        Some(ErrorClass::Timeout),
        "timed out waiting: TenantControlPlanes not Ready, pods not Running, watch --until-healthy, a run step, a volume backup tool still in progress past its timeout",
        "Look at what it waited for; raise the timeout if it is only slow",
    ),
    row(
        12,
        Some(ErrorClass::ChainGap),
        "the delta chain has a gap: no segment covers the revisions named; nothing was restored",
        "Pick a point the chain covers, or the full backup before the gap",
    ),
    row(
        13,
        Some(ErrorClass::HeldBack),
        "forget/prune removed what retention allows; objects under S3 Object Lock were kept until the date printed",
        "Run it again after that date",
    ),
];

/// The exit code of an error class.
pub fn code(class: ErrorClass) -> i32 {
    TABLE.iter().find(|r| r.class == Some(class)).map_or(OTHER, |r| r.code)
}

/// The class of one error, when kmdr knows its type.
fn classify(e: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    macro_rules! first_of {
        ($($t:ty),* $(,)?) => {
            $(if let Some(x) = e.downcast_ref::<$t>() { return Some(x.class()); })*
        };
    }
    first_of!(
        kmdr_repo::Error,
        kmdr_store::StoreError,
        kmdr_repo::point::PointError,
        kmdr_repo::ChainGap,
        kmdr_repo::object_lock::LockError,
        kmdr_etcd::EtcdError,
        kmdr_datastore::TenantError,
        kmdr_datastore::records::RecordError,
        kmdr_datastore::capture::DeltaError,
        kmdr_kube::client::KubeError,
        kmdr_kube::health::WaitError,
        kmdr_kube::platform::PlatformError,
        kmdr_kube::node_files::NodeFilesError,
        kmdr_kube::kamaji::TenantsError,
        kmdr_kube::inspect::InspectError,
        kmdr_kube::inspect::encryption::EncryptionError,
        kmdr_kube::volumes::VolumeError,
        kmdr_plan::UnitError,
        kmdr_plan::recover::Stopped,
        kmdr_plan::steps::StepError,
        kmdr_plan::drill::DrillError,
        kmdr_serve::ServeError,
        kmdr_lab::LabError,
        crate::commands::UsageError,
        crate::commands::PlanInvalid,
        crate::commands::NotHealthy,
    );
    None
}

/// The class of an error: the first cause in its chain whose type kmdr knows.
pub fn class_of(e: &anyhow::Error) -> ErrorClass {
    e.chain().find_map(classify).unwrap_or(ErrorClass::Other)
}

/// The exit code for an error.
pub fn code_for(e: &anyhow::Error) -> i32 {
    code(class_of(e))
}

/// The exit-code list at the end of `kmdr --help`, wrapped for a terminal.
pub static EXIT_CODES_HELP: LazyLock<String> = LazyLock::new(|| {
    let mut s = String::from("Exit codes:");
    for r in TABLE {
        let text = if r.next.is_empty() { r.meaning.to_string() } else { format!("{}. {}", r.meaning, r.next) };
        let mut line = format!("\n  {:>2}  ", r.code);
        for word in text.split(' ') {
            if line.len() + word.len() > 100 {
                s.push_str(line.trim_end());
                line = format!("\n{:6}", "");
            }
            line.push_str(word);
            line.push(' ');
        }
        s.push_str(line.trim_end());
    }
    s
});

#[cfg(test)]
/// docs/design.md section 14's table, as it must read.
pub fn design_table() -> String {
    let mut s = String::from("| code | class | meaning | what to do |\n|---|---|---|---|\n");
    for r in TABLE {
        let class = r.class.map(|c| format!("`{c}`")).unwrap_or_default();
        s.push_str(&format!("| {} | {class} | {} | {} |\n", r.code, r.meaning, r.next));
    }
    s
}

/// The whole cause chain on one line, without repeating a cause a message already contains.
pub fn one_line(e: &anyhow::Error) -> String {
    kmdr_core::error::one_line(e.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_one_code() {
        for c in ErrorClass::ALL {
            assert_eq!(TABLE.iter().filter(|r| r.class == Some(c)).count(), 1, "{c}");
        }
        let mut codes: Vec<i32> = TABLE.iter().map(|r| r.code).collect();
        codes.dedup();
        assert_eq!(codes, (0..=13).collect::<Vec<_>>(), "codes in order, none twice");
    }

    #[test]
    fn design_md_shows_the_table() {
        let design = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/design.md")).unwrap();
        let want = design_table();
        assert!(
            design.contains(&want),
            "docs/design.md section 14 differs from crates/kmdr/src/exit.rs; paste this table there:\n{want}"
        );
    }

    #[test]
    fn the_first_known_cause_decides() {
        let key = anyhow::Error::new(kmdr_repo::Error::NoKey).context("opening the repository");
        assert_eq!(code_for(&key), 4);
        let gap =
            anyhow::Error::new(kmdr_repo::point::PointError::Repo(kmdr_repo::Error::Locked { holder: "x".into() }));
        assert_eq!(code_for(&gap), 3);
        assert_eq!(code_for(&anyhow::anyhow!("something")), OTHER);
        let usage = anyhow::Error::new(crate::commands::UsageError("bad".into()));
        assert_eq!(code_for(&usage), 2);
    }

    #[test]
    fn help_lists_every_code() {
        for r in TABLE {
            assert!(EXIT_CODES_HELP.contains(&format!("\n  {:>2}  ", r.code)), "{}", r.code);
        }
        assert!(EXIT_CODES_HELP.lines().all(|l| l.len() <= 100), "{}", *EXIT_CODES_HELP);
    }
}
