//! Key objects of an open repository: `kmdr key add|list` and `kmdr repo
//! upgrade` (format 1 to 2). docs/design.md section 4.

use crate::crypto::{Access, KeyObject};
use crate::repository::{RECIPIENT, put_key_object};
use crate::{Error, Repository, Result};
use bytes::Bytes;
use serde::Serialize;

/// One key object, as `kmdr key list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// `keys/<id>`.
    pub object: String,
    pub format: u32,
    /// What the key may do, as its object says (format 1: full).
    pub access: Access,
    pub created: chrono::DateTime<chrono::Utc>,
    pub hostname: String,
    /// The key this repository was opened with.
    pub current: bool,
}

/// What `kmdr repo upgrade` does (or did).
#[derive(Debug, Clone, Serialize)]
pub struct UpgradePlan {
    pub from_format: u32,
    pub to_format: u32,
    /// The key object written for the key file used (same secret, format-2 key).
    pub new_key_object: Option<String>,
    /// The format-1 key object it replaces, deleted last.
    pub old_key_object: String,
    /// Whether the old key object could be deleted (Object Lock may hold it).
    pub old_key_deleted: bool,
    /// Other key files' format-1 key objects: they still open the older
    /// objects only; add those users again with `kmdr key add`.
    pub other_keys: Vec<String>,
}

impl Repository {
    /// Every key object in `keys/`.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for obj in self.store().list("keys/").await? {
            let raw = self.store().get(&obj.key).await?;
            let Ok(ko) = serde_json::from_slice::<KeyObject>(&raw) else { continue };
            out.push(KeyInfo {
                current: obj.key == self.key_object(),
                object: obj.key,
                format: ko.format,
                access: ko.access.unwrap_or(Access::Full),
                created: ko.created,
                hostname: ko.hostname,
            });
        }
        out.sort_by_key(|k| k.created);
        Ok(out)
    }

    /// Wrap this repository's key (or its write-only form) under `secret`
    /// and store it: another key file opens the repository. Needs a full key;
    /// a write-only key needs format 2.
    pub async fn add_key(&self, secret: &[u8], access: Access) -> Result<String> {
        let key = self.key_to_add(access)?;
        let id = put_key_object(self.store(), &key, secret).await?;
        Ok(format!("keys/{id}"))
    }

    /// The key `add_key` would wrap, or why it cannot: a write-only key may
    /// not copy keys, and write-only keys need format 2.
    pub fn key_to_add(&self, access: Access) -> Result<crate::crypto::MasterKey> {
        self.require_full_key("keys to copy")?;
        match access {
            Access::Full => Ok(self.key().clone()),
            Access::WriteOnly => self
                .key()
                .write_only()
                .ok_or_else(|| Error::NeedsFormat2 { location: self.location(), what: "write-only keys".into() }),
        }
    }

    /// The plan of `kmdr repo upgrade`: nothing changes.
    pub async fn plan_upgrade(&self) -> Result<UpgradePlan> {
        self.require_full_key("and upgrade the repository")?;
        if self.config().format != 1 {
            return Err(Error::AlreadyFormat { location: self.location(), format: self.config().format });
        }
        let others = self.list_keys().await?;
        Ok(UpgradePlan {
            from_format: self.config().format,
            to_format: 2,
            new_key_object: None,
            old_key_object: self.key_object().to_string(),
            old_key_deleted: false,
            other_keys: others.into_iter().filter(|k| !k.current && k.format == 1).map(|k| k.object).collect(),
        })
    }

    /// Move a format-1 repository to format 2, keeping every backup: a
    /// format-2 key (new recipient, the same MAC key, format 1's key for the
    /// older objects) wrapped under the same secret, then the config (the
    /// switch), then the old key object is deleted. Interrupted before the
    /// config, the repository is still format 1 and the new key object opens
    /// it as such; after it, format 2. Objects already stored are not rewritten.
    pub async fn upgrade(&self, secret: &[u8]) -> Result<UpgradePlan> {
        let mut plan = self.plan_upgrade().await?;
        let key = self.key().upgraded();
        plan.new_key_object = Some(format!("keys/{}", put_key_object(self.store(), &key, secret).await?));
        let mut config = self.config().clone();
        config.format = 2;
        config.recipient = Some(RECIPIENT.to_string());
        self.store().put("config", Bytes::from(serde_json::to_vec_pretty(&config).expect("json"))).await?;
        plan.old_key_deleted = self.store().delete(&plan.old_key_object).await.is_ok();
        Ok(plan)
    }
}
