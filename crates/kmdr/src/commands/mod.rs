//! One module per verb. Each parses nothing itself (clap did), calls the
//! libraries and prints; the logic lives in the library crates (kmdr-repo, kmdr-plan and the
//! crates of the systems kmdr talks to).

mod backup;
mod backups;
mod completions;
mod drill;
mod forget;
mod inspect;
mod key;
mod lab;
mod node_files;
mod plan;
pub use plan::PlanInvalid;
mod repo;
mod restore;
mod serve;
mod status;
mod verify;
mod watch;
pub use watch::NotHealthy;

use crate::cli::{Cli, Command, DatastoreArgs, GlobalArgs};
use anyhow::Result;
use kmdr_repo::{Error as RepoError, Repository};
use kmdr_store::{S3Options, Store};
use std::sync::Arc;

/// A usage mistake found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl kmdr_core::Classify for UsageError {
    fn class(&self) -> kmdr_core::ErrorClass {
        kmdr_core::ErrorClass::Usage
    }
}

/// Run the parsed command; returns the exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    match cli.command {
        Command::Repo(c) => repo::run(g, c).await,
        Command::Key(c) => key::run(g, c).await,
        Command::Backup(a) => match (a.command, a.plan) {
            (Some(c), _) => backup::run(g, c).await,
            (None, Some(plan)) => backup::by_plan(g, &plan, a.layer.map(Into::into)).await,
            (None, None) => Err(UsageError("say what to back up: `kmdr backup etcd|node-files|tenant|tenants|platform ...` or `kmdr backup --plan FILE` (see --help)".into()).into()),
        },
        Command::Restore(mut a) => match (a.command.take(), &a.plan) {
            (Some(c), _) => restore::run(g, c).await,
            (None, Some(_)) => restore::by_plan(g, a).await,
            (None, None) => Err(UsageError("say what to restore: `kmdr restore etcd|node-files|tenant|tenants|platform ...` or `kmdr restore --plan FILE --layer L|--all` (see --help)".into()).into()),
        },
        Command::Backups(c) => backups::run(g, c).await,
        Command::Inspect(a) => inspect::run(g, a).await,
        Command::Verify(a) => verify::run(g, a).await,
        Command::Forget(a) => forget::run_forget(g, a).await,
        Command::Prune(a) => forget::run_prune(g, a).await,
        Command::Plan(c) => plan::run(g, c).await,
        Command::Drill(a) => drill::run(g, a).await,
        Command::Lab(c) => lab::run(g, c).await,
        Command::Status(a) => status::status(g, a).await,
        Command::Runbook(c) => status::runbook(g, c).await,
        Command::Watch(a) => watch::run(g, a).await,
        Command::Serve(a) => serve::run(g, a).await,
        Command::Completions(a) => completions::completions(a),
        Command::Man(a) => completions::man(g, a),
    }
}

impl GlobalArgs {
    /// The store behind --repo.
    pub fn store(&self) -> Result<Arc<dyn Store>> {
        let url = self.repo.as_deref().ok_or_else(|| {
            UsageError("no repository given: pass --repo PATH|s3://bucket/prefix or set KMDR_REPO".into())
        })?;
        let opts = S3Options {
            endpoint: self.s3_endpoint.clone(),
            virtual_hosted_style: self.s3_virtual_hosted,
            credentials: None,
            concurrency: self.s3_concurrency.map(usize::from),
        };
        Ok(kmdr_store::open(url, &opts)?)
    }

    /// The secret in --key-file.
    pub fn secret(&self) -> Result<(Vec<u8>, String), RepoError> {
        let path = self.key_file.as_ref().ok_or(RepoError::NoKey)?;
        let content = std::fs::read(path).map_err(|source| RepoError::KeyFile { path: path.clone(), source })?;
        let secret = kmdr_repo::crypto::secret_from_file_content(&content).to_vec();
        if secret.is_empty() {
            return Err(RepoError::KeyFile { path: path.clone(), source: std::io::Error::other("the file is empty") });
        }
        Ok((secret, path.display().to_string()))
    }

    /// Open the repository with the key file.
    pub async fn open_repo(&self) -> Result<Repository> {
        let store = self.store()?;
        // A missing repository is the more useful message than a missing key.
        if !store.exists("config").await? {
            return Err(RepoError::NotARepository { location: store.location() }.into());
        }
        let (secret, label) = self.secret()?;
        Ok(Repository::open(store, &secret, &label).await?)
    }

    /// Open the repository for a command that reads backups: a write-only
    /// key is refused (exit 4) before anything is read or written.
    pub async fn open_repo_to_read(&self, what: &str) -> Result<Repository> {
        let repo = self.open_repo().await?;
        repo.require_full_key(what)?;
        Ok(repo)
    }

    /// These arguments with the plan's repository where --repo, --key-file
    /// or --s3-endpoint were not given.
    pub fn with_plan(&self, plan: &kmdr_plan::Plan) -> GlobalArgs {
        let mut g = self.clone();
        g.repo = g.repo.or_else(|| Some(plan.repository.url.clone()));
        g.key_file = g.key_file.or_else(|| plan.repository.key_file.clone());
        g.s3_endpoint = g.s3_endpoint.or_else(|| plan.repository.s3_endpoint.clone());
        g
    }

    /// Whether human summaries go to stderr.
    pub fn chatty(&self) -> bool {
        !self.quiet && self.format == crate::output::Format::Text
    }
}

impl crate::cli::KubeArgs {
    /// The cluster of --kubeconfig/--context (kube-rs logs its requests only with -v or KMDR_LOG).
    pub fn target(&self, g: &GlobalArgs) -> kmdr_kube::client::KubeTarget {
        kmdr_kube::client::KubeTarget {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            log_requests: g.verbose > 0 || std::env::var_os("KMDR_LOG").is_some(),
        }
    }

    /// A client for --kubeconfig/--context.
    pub async fn connect(&self, g: &GlobalArgs) -> Result<kmdr_kube::client::KubeClient> {
        Ok(kmdr_kube::client::KubeClient::connect(&self.target(g)).await?)
    }
}

/// Progress lines on stderr unless quiet or JSON.
pub fn notifier(g: &GlobalArgs) -> impl Fn(&str) + Sync + use<> {
    prefixed_notifier(g, "")
}

/// Progress lines on stderr, each after `prefix`, unless quiet or JSON. On a
/// terminal they scroll above a spinner that shows the step in progress
/// (each line announces one) and how long it has run, so that a long step
/// does not look hung; off a terminal (a log, a pipe) they are plain lines,
/// with no spinner or control characters.
pub fn prefixed_notifier(g: &GlobalArgs, prefix: &'static str) -> impl Fn(&str) + Sync + use<> {
    use indicatif::{ProgressBar, ProgressFinish, ProgressStyle};
    let chatty = g.chatty();
    let spinner = (chatty && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let pb = ProgressBar::new_spinner().with_finish(ProgressFinish::AndClear);
        pb.set_style(ProgressStyle::with_template("{spinner} {prefix}{msg} [{elapsed}]").expect("template"));
        pb.set_prefix(prefix);
        pb.set_message("starting");
        pb.enable_steady_tick(std::time::Duration::from_millis(200));
        pb
    });
    move |line: &str| match &spinner {
        Some(pb) => {
            pb.println(format!("{prefix}{line}"));
            pb.set_message(line.to_string());
            pb.reset_elapsed();
        }
        None if chatty => eprintln!("{prefix}{line}"),
        None => {}
    }
}

impl DatastoreArgs {
    /// Connect to the --datastore, with credentials from the URL, the
    /// environment or --password-file (never echoed).
    pub async fn connect(&self) -> Result<kmdr_datastore::AnyTenants> {
        use kmdr_datastore::{self as tenant, DatastoreUrl};
        let password = match &self.password_file {
            Some(p) => Some(tenant::read_password_file(p)?),
            None => std::env::var("KMDR_DATASTORE_PASSWORD").ok().filter(|p| !p.is_empty()),
        };
        let url = DatastoreUrl::parse(&self.datastore)?.with_credentials(self.user.clone(), password);
        let tls = kmdr_core::TlsFiles {
            cacert: self.tls.cacert.clone(),
            cert: self.tls.cert.clone(),
            key: self.tls.key.clone(),
        };
        Ok(tenant::connect(&url, tls).await?)
    }
}

/// The id on stdout; what was stored, on stderr for people.
pub(crate) fn print_done(g: &GlobalArgs, m: &kmdr_core::Manifest, location: &str) {
    println!("{}", m.id);
    if g.chatty() {
        eprintln!(
            "backed up {} ({}) in {}: {} new of {} chunks, {} added to {}",
            m.source_summary(),
            kmdr_core::human_bytes(m.stats.bytes),
            kmdr_core::human_duration(std::time::Duration::from_millis(m.duration_ms)),
            m.stats.new_chunks,
            m.stats.chunks,
            kmdr_core::human_bytes(m.stats.new_stored_bytes),
            location
        );
    }
}
