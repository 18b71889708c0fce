//! `kmdr lab up|status|down`: a disposable local lab, so that a new user's
//! first `kmdr drill --lab` produces a real drill report with nothing but
//! server binaries on PATH.
//!
//! Everything lives in one directory (default `.kmdr-lab`):
//!
//! * an under-cluster etcd, started (and later stopped and restarted by the
//!   drill) through the very shell lines the plan's `run:` steps hold, with its
//!   pid in `uc.pid`, holding Kubernetes- and Kamaji-shaped `/registry/` keys;
//! * a shared tenant etcd holding N tenants under `/<schema>/`;
//! * when PostgreSQL (`initdb`, `pg_ctl`) and/or MariaDB (`mariadbd`) are
//!   installed, one kine tenant on each, seeded through kmdr's own drivers;
//! * a repository (`repo/`) and its key (`kmdr.key`), kept across `up`/`down --keep`;
//! * the plan `kmdr.yaml` covering all four layers, and `lab.json`: what was
//!   started (pid files, ports), so `down` stops only those processes.
//!
//! Servers listen on free ports of 127.0.0.1 only. Every started server's pid
//! is kept in a pid file; a pid is only signalled while `/proc` says it still
//! runs the program the lab started (no stray kill after a pid was reused).

use crate::cli::{GlobalArgs, LabCommand, LabDownArgs, LabUpArgs};
use crate::output::{self, Format};
use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use kmdr_core::TlsFiles;
use kmdr_datastore::{self as tenant, DatastoreUrl, RecordReader, RecordWriter, TenantStore};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What `up` records, in `DIR/lab.json`.
const STATE_FILE: &str = "lab.json";
/// The plan `up` writes.
const PLAN_FILE: &str = "kmdr.yaml";
/// The tenants of the shared etcd, in order; more are `tenant-<n>`.
const TENANT_NAMES: &[&str] = &["acme", "globex", "initech", "umbrella", "hooli", "wayne", "stark", "tyrell"];
/// The first line of the plan `up` writes: how `down` knows a kept lab's directory.
const PLAN_HEADER: &str = "# The kmdr lab's plan, written by `kmdr lab up`";
/// The PostgreSQL superuser the lab creates (TCP logins need its password).
const PG_USER: &str = "kmdr";

/// What the lab started and wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LabState {
    /// The lab directory (absolute).
    dir: PathBuf,
    plan: PathBuf,
    repository: PathBuf,
    key_file: PathBuf,
    started_at: DateTime<Utc>,
    processes: Vec<LabProcess>,
    /// Why a datastore was left out (e.g. PostgreSQL not installed).
    notes: Vec<String>,
}

/// One server the lab started.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LabProcess {
    /// `under-cluster-etcd`, `tenant-etcd`, `kine-postgres`, `kine-mariadb`.
    name: String,
    /// The program's name as `/proc/PID/comm` shows it: a pid is only ever
    /// signalled while it still runs this program.
    program: String,
    /// Holds the current pid (the drill's steps rewrite the under cluster's).
    pid_file: PathBuf,
    /// Client port first.
    ports: Vec<u16>,
    /// How clients reach it (without credentials).
    url: String,
    log: PathBuf,
    /// Tenants (schemas) it holds; empty for the under cluster.
    tenants: Vec<String>,
    /// Keys seeded.
    keys: usize,
}

impl LabProcess {
    /// The pid in the pid file, when it still runs the lab's program.
    fn running_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(&self.pid_file).ok()?.trim().parse().ok()?;
        runs(pid, &self.program).then_some(pid)
    }
}

pub async fn run(g: &GlobalArgs, c: LabCommand) -> Result<i32> {
    match c {
        LabCommand::Up(a) => up_command(g, a).await,
        LabCommand::Status(a) => status(g, &a.dir),
        LabCommand::Down(a) => down(g, a),
    }
}

/// `kmdr drill --lab`: the lab's plan, after bringing the lab up when it is not.
/// Progress goes to stderr (stdout stays the drill's).
pub async fn ensure_up(g: &GlobalArgs, dir: &Path) -> Result<PathBuf> {
    let chatty = !g.quiet && g.format == Format::Text;
    match read_state(dir)? {
        Some(s) if s.processes.iter().all(|p| p.running_pid().is_some()) => Ok(s.plan),
        _ => {
            if chatty {
                eprintln!("lab: not up in {}: bringing it up (kmdr lab up --dir {})", dir.display(), dir.display());
            }
            let s = up(dir, 3, 500, chatty).await?;
            Ok(s.plan)
        }
    }
}

async fn up_command(g: &GlobalArgs, a: LabUpArgs) -> Result<i32> {
    if a.tenants == 0 || a.keys < 10 {
        return Err(super::UsageError("--tenants must be at least 1 and --keys at least 10".into()).into());
    }
    let chatty = g.chatty();
    if let Some(s) = read_state(&a.dir.dir)?
        && s.processes.iter().all(|p| p.running_pid().is_some())
    {
        if g.format == Format::Json {
            output::json(&status_json(&s));
        } else {
            println!("the lab in {} is already up; plan {}", s.dir.display(), s.plan.display());
            println!("next: kmdr drill --lab{}", dir_flag(&a.dir.dir));
        }
        return Ok(0);
    }
    let s = up(&a.dir.dir, a.tenants, a.keys, chatty).await?;
    if g.format == Format::Json {
        output::json(&status_json(&s));
    } else {
        println!("lab up in {}:", s.dir.display());
        for p in &s.processes {
            let what = if p.tenants.is_empty() {
                format!("{} keys", p.keys)
            } else {
                format!("tenants {} ({} keys)", p.tenants.join(", "), p.keys)
            };
            println!(
                "  {:<20} pid {:<8} {:<34} {what}",
                p.name,
                p.running_pid().map(|p| p.to_string()).unwrap_or("-".into()),
                p.url
            );
        }
        for n in &s.notes {
            println!("  note: {n}");
        }
        println!("plan {} (checked), repository {}", s.plan.display(), s.repository.display());
        println!("next: kmdr drill --lab{}   then: kmdr lab down{}", dir_flag(&a.dir.dir), dir_flag(&a.dir.dir));
    }
    Ok(0)
}

/// ` --dir DIR` unless DIR is the default.
fn dir_flag(dir: &Path) -> String {
    if dir == Path::new(".kmdr-lab") { String::new() } else { format!(" --dir {}", dir.display()) }
}

/// Bring the lab up from scratch (stopping what is left of a lab that is
/// partly down). On failure, what was started is stopped again.
async fn up(dir: &Path, tenants: usize, keys: usize, chatty: bool) -> Result<LabState> {
    let say = |m: &str| {
        if chatty {
            eprintln!("lab: {m}");
        }
    };
    if let Some(old) = read_state(dir)? {
        say("the lab is partly down: stopping what is left of it and starting it again");
        stop_all(&old);
    }
    // Never overwrite a plan the lab did not write (e.g. `--dir .` in a project).
    if std::fs::read_to_string(dir.join(PLAN_FILE)).is_ok_and(|t| !t.starts_with(PLAN_HEADER)) {
        return Err(super::UsageError(format!(
            "{} holds a {PLAN_FILE} that `kmdr lab up` did not write: pick another --dir",
            dir.display()
        ))
        .into());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the lab directory {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?;
    // Server data of an earlier lab goes; the repository, its key and the reports stay.
    for old in ["uc.etcd", "tenants.etcd", "pg", "mariadb", STATE_FILE, PLAN_FILE] {
        let p = dir.join(old);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        } else if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    let mut state = LabState {
        plan: dir.join(PLAN_FILE),
        repository: dir.join("repo"),
        key_file: dir.join("kmdr.key"),
        dir: dir.clone(),
        started_at: Utc::now(),
        processes: Vec::new(),
        notes: Vec::new(),
    };
    match start_everything(&mut state, tenants, keys, &say).await {
        Ok(()) => Ok(state),
        Err(e) => {
            stop_all(&state);
            let _ = std::fs::remove_file(dir.join(STATE_FILE));
            Err(e)
        }
    }
}

async fn start_everything(state: &mut LabState, tenants: usize, keys: usize, say: &dyn Fn(&str)) -> Result<()> {
    let dir = state.dir.clone();
    for bin in ["etcd", "etcdctl"] {
        if find_bin(bin).is_none() {
            bail!(
                "{bin} is not on PATH: the lab needs etcd's etcd and etcdctl (scripts/install-deps.sh installs them)"
            );
        }
    }

    // The repository and its key, unless kept from an earlier lab.
    ensure_repository(state).await?;

    // The under cluster, through the plan's own start line.
    let uc = UnderCluster::new(&dir);
    say(&format!("starting the under-cluster etcd on {}", uc.client_url));
    let out = Command::new("sh")
        .arg("-c")
        .arg(uc.start_line())
        .stdin(Stdio::null())
        .process_group(0)
        .output()
        .context("cannot run sh")?;
    let mut p = LabProcess {
        name: "under-cluster-etcd".into(),
        program: "etcd".into(),
        pid_file: uc.pid_file(),
        ports: vec![uc.client_port, uc.peer_port],
        url: uc.client_url.clone(),
        log: PathBuf::from(format!("{}.log", uc.data_dir().display())),
        tenants: Vec::new(),
        keys: 0,
    };
    state.processes.push(p.clone());
    save_state(state)?;
    if !out.status.success() || p.running_pid().is_none() {
        bail!("the under-cluster etcd did not answer within 10s; see {}", p.log.display());
    }
    let n = keys.max(10);
    seed(&format!("etcd://127.0.0.1:{}", uc.client_port), "registry", &under_cluster_records(n, tenants)).await?;
    p.keys = n;
    *state.processes.last_mut().expect("pushed") = p;

    // The shared tenant etcd.
    let (c, peer) = (free_port()?, free_port()?);
    let data = dir.join("tenants.etcd");
    say(&format!("starting the shared tenant etcd on 127.0.0.1:{c}"));
    let mut cmd = Command::new("etcd");
    cmd.args(["--name", "tenants", "--log-level", "error"])
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{c}"),
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{c}"),
        ])
        .args([
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .args(["--initial-cluster", &format!("tenants=http://127.0.0.1:{peer}")]);
    let names: Vec<String> = (0..tenants)
        .map(|i| TENANT_NAMES.get(i).map(|s| s.to_string()).unwrap_or(format!("tenant-{}", i + 1)))
        .collect();
    let mut p = LabProcess {
        name: "tenant-etcd".into(),
        program: "etcd".into(),
        pid_file: dir.join("tenants.pid"),
        ports: vec![c, peer],
        url: format!("etcd://127.0.0.1:{c}"),
        log: dir.join("tenants.etcd.log"),
        tenants: names.clone(),
        keys: 0,
    };
    spawn(state, &p, cmd)?;
    wait_for(&p, &p.url, None).await?;
    for (i, t) in names.iter().enumerate() {
        seed(&p.url, t, &tenant_records(t, keys, i as u64 + 1)).await?;
    }
    p.keys = keys * names.len();
    *state.processes.last_mut().expect("pushed") = p;

    // kine on PostgreSQL and MariaDB, when installed. One that does not come
    // up is left out (and stopped), with a note: they are optional.
    let started = state.processes.len();
    if let Err(Skip(why)) = start_postgres(state, keys, say).await {
        forget_since(state, started);
        state.notes.push(format!("no kine-postgres tenant: {why}"));
    }
    let started = state.processes.len();
    if let Err(Skip(why)) = start_mariadb(state, keys, say).await {
        forget_since(state, started);
        state.notes.push(format!("no kine-mariadb tenant: {why}"));
    }

    let yaml = plan_yaml(state, &uc);
    if let Err(problems) = kmdr_plan::parse_plan(&state.plan, &yaml) {
        // A bug in this module, not the user's: say what the checker found.
        bail!(
            "the lab's plan does not pass its own check: {}",
            kmdr_plan::parse::render(&state.plan, &problems).trim_end()
        );
    }
    std::fs::write(&state.plan, yaml).with_context(|| format!("cannot write {}", state.plan.display()))?;
    save_state(state)?;
    Ok(())
}

/// Stop and forget the processes started after the first `keep`.
fn forget_since(state: &mut LabState, keep: usize) {
    let extra = LabState { processes: state.processes.split_off(keep), ..state.clone() };
    stop_all(&extra);
}

/// A datastore left out, and why (not an error: it is optional).
struct Skip(String);

impl<E: std::fmt::Display> From<E> for Skip {
    fn from(e: E) -> Self {
        Skip(format!("{e:#}"))
    }
}

/// Create the repository and key file when missing (as `kmdr repo init` does).
async fn ensure_repository(state: &LabState) -> Result<()> {
    let g = GlobalArgs {
        repo: Some(state.repository.display().to_string()),
        key_file: Some(state.key_file.clone()),
        s3_endpoint: None,
        s3_virtual_hosted: false,
        format: Format::Text,
        quiet: true,
        verbose: 0,
    };
    let store = g.store()?;
    if store.exists("config").await? {
        return Ok(());
    }
    // A new key file (mode 0600) unless one is there: as `kmdr repo init` does.
    if !state.key_file.exists() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&state.key_file)?;
        f.write_all(kmdr_repo::crypto::generate_secret().as_bytes())?;
        f.sync_all()?;
    }
    let (secret, _) = g.secret()?;
    kmdr_repo::Repository::init(store, &secret, Default::default()).await?;
    Ok(())
}

/// The under cluster's etcd, as the plan's steps start and stop it.
struct UnderCluster {
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    client_url: String,
    peer_url: String,
}

impl UnderCluster {
    fn new(dir: &Path) -> UnderCluster {
        let c = free_port().unwrap_or(23790);
        let p = free_port().unwrap_or(23800);
        UnderCluster {
            dir: dir.into(),
            client_port: c,
            peer_port: p,
            client_url: format!("http://127.0.0.1:{c}"),
            peer_url: format!("http://127.0.0.1:{p}"),
        }
    }
    fn data_dir(&self) -> PathBuf {
        self.dir.join("uc.etcd")
    }
    fn pid_file(&self) -> PathBuf {
        self.dir.join("uc.pid")
    }
    /// Start the member in the background, record its pid, wait until it answers.
    fn start_line(&self) -> String {
        format!(
            "nohup etcd --name uc --data-dir '{d}' --listen-client-urls {c} --advertise-client-urls {c} --listen-peer-urls {p} \
             --initial-advertise-peer-urls {p} --initial-cluster uc={p} --log-level error >> '{d}.log' 2>&1 < /dev/null & echo $! > '{pid}'; \
             for i in $(seq 100); do etcdctl --endpoints {c} endpoint health >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1",
            d = self.data_dir().display(),
            c = self.client_url,
            p = self.peer_url,
            pid = self.pid_file().display()
        )
    }
    /// Stop the member (waiting until it is gone, or only a zombie) and lose its data dir.
    fn stop_line(&self) -> String {
        format!(
            "pid=$(cat '{pid}'); kill $pid; while kill -0 $pid 2>/dev/null && [ \"$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null)\" != Z ]; do sleep 0.05; done; rm -rf '{d}'",
            pid = self.pid_file().display(),
            d = self.data_dir().display()
        )
    }
}

/// Start `cmd` detached from this process (own process group, output to the
/// log), record its pid in the state and its pid file.
fn spawn(state: &mut LabState, p: &LabProcess, mut cmd: Command) -> Result<()> {
    let log = std::fs::File::create(&p.log).with_context(|| format!("cannot create {}", p.log.display()))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {} for {}", p.program, p.name))?;
    std::fs::write(&p.pid_file, format!("{}\n", child.id()))
        .with_context(|| format!("cannot write {}", p.pid_file.display()))?;
    state.processes.push(p.clone());
    save_state(state)
}

/// Wait until the datastore at `url` answers kmdr's driver (30s).
async fn wait_for(p: &LabProcess, url: &str, password: Option<&str>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = DatastoreUrl::parse(url)?.with_credentials(None, password.map(str::to_string));
    loop {
        let err = match tenant::connect(&url, TlsFiles::default()).await {
            Ok(s) => match s.list_tenants().await {
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if p.running_pid().is_none() || Instant::now() > deadline {
            bail!("{} did not start: {err}; see {}", p.name, p.log.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Write `records` as tenant `schema` of the datastore at `url`, through the
/// driver kmdr's restore uses (replacing what the tenant held).
async fn seed(url: &str, schema: &str, records: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
    seed_with(url, None, schema, records).await
}

async fn seed_with(url: &str, password: Option<&str>, schema: &str, records: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
    let mut stream = Vec::new();
    let mut w = RecordWriter::new(&mut stream);
    for (i, (k, v)) in records.iter().enumerate() {
        w.write(k, v, i as i64 + 1, i as i64 + 1).await?;
    }
    w.finish().await?;
    let url = DatastoreUrl::parse(url)?.with_credentials(None, password.map(str::to_string));
    let store = tenant::connect(&url, TlsFiles::default()).await?;
    store
        .import(schema, &mut RecordReader::new(stream.as_slice()), true)
        .await
        .with_context(|| format!("cannot seed tenant {schema}"))?;
    Ok(())
}

/// PostgreSQL with one kine tenant: initdb and postgres run as the `postgres`
/// OS user when kmdr runs as root (PostgreSQL refuses root).
async fn start_postgres(state: &mut LabState, keys: usize, say: &dyn Fn(&str)) -> Result<(), Skip> {
    let (Some(initdb), Some(_)) = (find_pg_bin("initdb"), find_pg_bin("pg_ctl")) else {
        return Err(Skip("PostgreSQL (initdb, pg_ctl) is not installed".into()));
    };
    let postgres = initdb.with_file_name("postgres");
    let ids = if is_root() {
        let ids = os_user("postgres")
            .ok_or_else(|| Skip("running as root and there is no `postgres` OS user to run PostgreSQL as".into()))?;
        // The postgres user must reach the lab directory.
        let mut up = Some(state.dir.as_path());
        while let Some(d) = up {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d)?.permissions().mode();
            if d == state.dir && mode & 0o011 != 0o011 {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o711))?;
            } else if mode & 0o001 == 0 {
                return Err(Skip(format!(
                    "the postgres OS user cannot enter {} (mode {:o}): use a --dir it can reach",
                    d.display(),
                    mode & 0o777
                )));
            }
            up = d.parent();
        }
        Some(ids)
    } else {
        None
    };
    let root = state.dir.join("pg");
    let sock = root.join("sock");
    std::fs::create_dir_all(&sock)?;
    let password = secret_word();
    let pw_file = state.dir.join("pg.pw");
    std::fs::write(&pw_file, &password)?;
    let init_pw = root.join("initdb.pw");
    std::fs::write(&init_pw, &password)?;
    if let Some((uid, gid)) = ids {
        for p in [&root, &sock, &init_pw] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
        }
    }
    let port = free_port()?;
    say(&format!("starting PostgreSQL on 127.0.0.1:{port}"));
    let mut init = Command::new(&initdb);
    init.arg("-D")
        .arg(root.join("data"))
        .args([
            "-U",
            PG_USER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .arg(format!("--pwfile={}", init_pw.display()))
        .current_dir(&root);
    if let Some((uid, gid)) = ids {
        init.uid(uid).gid(gid);
    }
    let out = init.output()?;
    let _ = std::fs::remove_file(&init_pw);
    if !out.status.success() {
        return Err(Skip(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    let p = LabProcess {
        name: "kine-postgres".into(),
        program: "postgres".into(),
        pid_file: state.dir.join("pg.pid"),
        ports: vec![port],
        url: format!("postgres://{PG_USER}@127.0.0.1:{port}"),
        log: root.join("server.log"),
        tenants: vec!["soylent".into()],
        keys,
    };
    let mut cmd = Command::new(&postgres);
    cmd.arg("-D")
        .arg(root.join("data"))
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c"])
        .arg(format!("unix_socket_directories={}", sock.display()))
        .current_dir(&root);
    if let Some((uid, gid)) = ids {
        cmd.uid(uid).gid(gid);
    }
    spawn(state, &p, cmd)?;
    if let Some((uid, gid)) = ids {
        std::os::unix::fs::chown(&p.log, Some(uid), Some(gid))?;
    }
    wait_for(&p, &p.url, Some(&password)).await?;
    seed_with(&p.url, Some(&password), &p.tenants[0], &tenant_records(&p.tenants[0], keys, 101)).await?;
    Ok(())
}

/// MariaDB with one kine tenant (`mariadbd --user=root` when root).
async fn start_mariadb(state: &mut LabState, keys: usize, say: &dyn Fn(&str)) -> Result<(), Skip> {
    let (Some(mariadbd), Some(install), Some(client)) = (
        find_bin("mariadbd").or_else(|| existing("/usr/sbin/mariadbd")),
        find_bin("mariadb-install-db"),
        find_bin("mariadb"),
    ) else {
        return Err(Skip("MariaDB (mariadbd, mariadb-install-db, mariadb) is not installed".into()));
    };
    let root = state.dir.join("mariadb");
    std::fs::create_dir_all(&root)?;
    let user = if is_root() { vec!["--user=root"] } else { vec![] };
    let out = Command::new(install)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", root.join("data").display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db", "--innodb-use-native-aio=0"])
        .args(&user)
        .current_dir(&root)
        .output()?;
    if !out.status.success() {
        return Err(Skip(format!("mariadb-install-db failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    let port = free_port()?;
    say(&format!("starting MariaDB on 127.0.0.1:{port}"));
    let socket = root.join("mysqld.sock");
    let p = LabProcess {
        name: "kine-mariadb".into(),
        program: "mariadbd".into(),
        pid_file: state.dir.join("mariadb.pid"),
        ports: vec![port],
        url: format!("mysql://root@127.0.0.1:{port}"),
        log: root.join("error.log"),
        tenants: vec!["cyberdyne".into()],
        keys,
    };
    let mut cmd = Command::new(mariadbd);
    cmd.arg("--no-defaults")
        .args(&user)
        .arg(format!("--datadir={}", root.join("data").display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--pid-file={}", root.join("mysqld.pid").display()))
        .arg(format!("--port={port}"))
        .args(["--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin", "--innodb-use-native-aio=0"])
        .current_dir(&root);
    spawn(state, &p, cmd)?;
    // Root over TCP gets a password; over the unix socket it stays passwordless.
    let password = secret_word();
    let sql = format!(
        "ALTER USER root@'127.0.0.1' IDENTIFIED BY '{password}'; ALTER USER root@'::1' IDENTIFIED BY '{password}'; FLUSH PRIVILEGES;"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(&client)
            .arg("--no-defaults")
            .arg(format!("--socket={}", socket.display()))
            .args(["-u", "root", "-e", &sql])
            .output()?;
        if out.status.success() {
            break;
        }
        if p.running_pid().is_none() || Instant::now() > deadline {
            return Err(Skip(format!("mariadbd did not start; see {}", p.log.display())));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    std::fs::write(state.dir.join("mariadb.pw"), &password)?;
    wait_for(&p, &p.url, Some(&password)).await?;
    seed_with(&p.url, Some(&password), &p.tenants[0], &tenant_records(&p.tenants[0], keys, 202)).await?;
    Ok(())
}

/// The plan: every layer, the under cluster drillable through the same
/// lines that started it, the datastores that run, a contact and a credential.
fn plan_yaml(state: &LabState, uc: &UnderCluster) -> String {
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    let today = Utc::now().date_naive();
    let mut datastores = String::new();
    for p in state.processes.iter().filter(|p| p.name != "under-cluster-etcd") {
        datastores.push_str(&format!(
            "      - name: {}\n        url: {:?}\n",
            p.name.trim_start_matches("kine-"),
            p.url
        ));
        let pw = match p.name.as_str() {
            "kine-postgres" => Some("pg.pw"),
            "kine-mariadb" => Some("mariadb.pw"),
            _ => None,
        };
        if let Some(pw) = pw {
            datastores.push_str(&format!("        passwordFile: {}\n", q(&state.dir.join(pw))));
        }
        datastores.push_str("        tenants: all\n");
    }
    format!(
        r#"{PLAN_HEADER} (see docs/plan.md).
# Everything runs on 127.0.0.1 from {dir}; `kmdr drill --lab` drills it,
# `kmdr lab down` stops it. Edit a copy to try other targets or steps.
version: 1
name: kmdr-lab
repository:
  url: {repo}
  keyFile: {key}
layers:
  # The management cluster's etcd; the run steps below stop, wipe and restart it.
  under-cluster:
    rto: 5m
    rpo: 1h
    etcd:
      endpoints: [{uc}]
      restore:
        dataDir: {data}
        name: uc
        initialCluster: uc={peer}
        initialAdvertisePeerUrls: {peer}
  # Targets only: kmdr does not back the platform up yet.
  platform:
    rto: 2h
    rpo: 15m
  # The Kamaji datastores: a drill wipes every tenant and restores it.
  tenant-control-planes:
    rto: 15m
    rpo: 5m
    datastores:
{datastores}  # Targets only: volumes are not kmdr's yet.
  persistent-data:
    rto: 2h
    rpo: 1h
run:
  - name: stop etcd and lose its data dir
    layer: under-cluster
    phase: failure
    command: {stop:?}
    timeout: 30s
  - name: start etcd on the restored data dir
    layer: under-cluster
    phase: after-restore
    command: {start:?}
    timeout: 60s
  - name: etcd endpoint health
    layer: under-cluster
    phase: health-check
    command: [etcdctl, --endpoints, "{uc}", endpoint, health]
    timeout: 30s
contacts:
  - name: Lab owner
    role: runs the drills
    reviewed: {today}
    reviewEvery: 90d
credentials:
  - name: repository key
    location: {key}
    reviewed: {today}
    reviewEvery: 180d
"#,
        dir = state.dir.display(),
        repo = q(&state.repository),
        key = q(&state.key_file),
        uc = uc.client_url,
        data = q(&uc.data_dir()),
        peer = uc.peer_url,
        stop = uc.stop_line(),
        start = uc.start_line(),
    )
}

/// `kmdr lab status`.
fn status(g: &GlobalArgs, dir: &Path) -> Result<i32> {
    let Some(s) = read_state(dir)? else {
        if g.format == Format::Json {
            output::json(&json!({"dir": dir, "up": false, "processes": []}));
        } else {
            println!("no lab in {}: start one with `kmdr lab up{}`", dir.display(), dir_flag(dir));
        }
        return Ok(0);
    };
    let v = status_json(&s);
    if g.format == Format::Json {
        output::json(&v);
    } else {
        println!(
            "lab in {}: {}",
            s.dir.display(),
            if v["up"] == true { "up" } else { "partly down (run `kmdr lab up` to restart it)" }
        );
        for p in &s.processes {
            let pid = p.running_pid();
            let ports: Vec<String> = p.ports.iter().map(u16::to_string).collect();
            println!(
                "  {:<20} {:<8} pid {:<8} ports {:<12} {}",
                p.name,
                if pid.is_some() { "running" } else { "stopped" },
                pid.map(|p| p.to_string()).unwrap_or("-".into()),
                ports.join(","),
                p.url
            );
        }
        for n in &s.notes {
            println!("  note: {n}");
        }
        println!("plan {}", s.plan.display());
    }
    Ok(0)
}

fn status_json(s: &LabState) -> serde_json::Value {
    let procs: Vec<serde_json::Value> = s
        .processes
        .iter()
        .map(|p| {
            let pid = p.running_pid();
            json!({"name": p.name, "pid": pid, "alive": pid.is_some(), "ports": p.ports, "url": p.url,
                   "tenants": p.tenants, "keys": p.keys, "pid_file": p.pid_file, "log": p.log})
        })
        .collect();
    let up = procs.iter().all(|p| p["alive"] == true);
    json!({"dir": s.dir, "up": up, "plan": s.plan, "repository": s.repository, "key_file": s.key_file,
           "started_at": s.started_at, "processes": procs, "notes": s.notes})
}

/// `kmdr lab down`.
fn down(g: &GlobalArgs, a: LabDownArgs) -> Result<i32> {
    let dir = &a.dir.dir;
    let state = read_state(dir)?;
    let stopped = state.as_ref().map(stop_all).unwrap_or_default();
    if a.keep {
        let _ = std::fs::remove_file(dir.join(STATE_FILE));
    } else if dir.exists() {
        // Only ever remove a lab's directory: one with lab.json, or a kept
        // lab's (its plan carries the header `up` writes).
        let kept = std::fs::read_to_string(dir.join(PLAN_FILE)).is_ok_and(|t| t.starts_with(PLAN_HEADER));
        if state.is_none() && !kept {
            return Err(super::UsageError(format!(
                "{} is not a kmdr lab (no {STATE_FILE}, no {PLAN_FILE} written by `kmdr lab up`): not removing it",
                dir.display()
            ))
            .into());
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    if g.format == Format::Json {
        output::json(&json!({"dir": dir, "stopped": stopped, "removed": !a.keep}));
    } else {
        for (name, pid) in &stopped {
            println!("stopped {name} (pid {pid})");
        }
        if a.keep {
            println!("lab down; kept {} (repository, key, reports)", dir.display());
        } else {
            println!("lab down; removed {}", dir.display());
        }
    }
    Ok(0)
}

/// Stop every running process of the lab, newest first: TERM, then KILL after
/// 10s. Returns the ones stopped.
fn stop_all(s: &LabState) -> Vec<(String, u32)> {
    let mut stopped = Vec::new();
    for p in s.processes.iter().rev() {
        let Some(pid) = p.running_pid() else { continue };
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs(pid, &p.program) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if runs(pid, &p.program) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while runs(pid, &p.program) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        stopped.push((p.name.clone(), pid));
    }
    stopped
}

/// Whether `pid` is a live (not zombie) process running `program`.
fn runs(pid: u32, program: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // `pid (comm) state ...`: comm may hold spaces, so split at the last ')'.
    let Some((head, rest)) = stat.rsplit_once(')') else { return false };
    let comm = head.split_once('(').map(|(_, c)| c).unwrap_or("");
    let state = rest.trim_start().chars().next().unwrap_or('X');
    // comm is cut at 15 bytes.
    comm == &program[..program.len().min(15)] && !matches!(state, 'Z' | 'X' | 'x')
}

fn read_state(dir: &Path) -> Result<Option<LabState>> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(
            serde_json::from_slice(&b)
                .with_context(|| format!("{} is damaged: remove it and stop its servers by hand", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!(e).context(format!("cannot read {}", path.display()))),
    }
}

fn save_state(s: &LabState) -> Result<()> {
    let path = s.dir.join(STATE_FILE);
    std::fs::write(&path, serde_json::to_vec_pretty(s)?).with_context(|| format!("cannot write {}", path.display()))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `bin` on PATH.
fn find_bin(bin: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(bin)).find(|p| is_executable(p))
}

/// A PostgreSQL server tool: on PATH, else in Debian's /usr/lib/postgresql/<newest>/bin.
fn find_pg_bin(bin: &str) -> Option<PathBuf> {
    find_bin(bin).map(|p| p.canonicalize().unwrap_or(p)).or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin").join(bin))
            .filter(|p| is_executable(p))
            .collect();
        versions.sort();
        versions.pop()
    })
}

fn existing(p: &str) -> Option<PathBuf> {
    is_executable(Path::new(p)).then(|| PathBuf::from(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// uid and gid of an OS user, from /etc/passwd.
fn os_user(name: &str) -> Option<(u32, u32)> {
    std::fs::read_to_string("/etc/passwd").ok()?.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?))).flatten()
    })
}

/// A random password for the lab's databases (from the repository key generator: hex).
fn secret_word() -> String {
    kmdr_repo::crypto::generate_secret().trim().chars().take(32).collect()
}

/// A small deterministic generator (splitmix64): the lab's data is the same every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A Kubernetes-style random suffix (`x2k4q`).
    fn suffix(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..len).map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize] as char).collect()
    }
}

/// A value as the API server stores it: the `k8s\0` protobuf envelope, a
/// readable type and name, and an opaque body of realistic size.
fn kube_value(rng: &mut Rng, api: &str, kind: &str, name: &str) -> Vec<u8> {
    let mut v = b"k8s\x00".to_vec();
    v.extend_from_slice(format!("\n\x0b\n{api}\x12{kind}\x12{name}").as_bytes());
    let body = 200 + rng.below(1200) as usize;
    v.extend((0..body).map(|_| rng.next() as u8));
    v
}

/// `n` keys of one tenant control plane, relative to its key root, sorted:
/// the API server's fixed objects, then pods, config maps, secrets, services,
/// deployments, service accounts and leases spread over a few namespaces.
fn tenant_records(tenant: &str, n: usize, seed: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rng = Rng(seed ^ 0x6b6d6472);
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let fixed: &[(&str, &str, &str)] = &[
        ("/apiregistration.k8s.io/apiservices/v1.", "apiregistration.k8s.io/v1", "APIService"),
        ("/apiregistration.k8s.io/apiservices/v1.apps", "apiregistration.k8s.io/v1", "APIService"),
        ("/apiregistration.k8s.io/apiservices/v1.batch", "apiregistration.k8s.io/v1", "APIService"),
        ("/namespaces/default", "v1", "Namespace"),
        ("/namespaces/kube-system", "v1", "Namespace"),
        ("/ranges/serviceips", "v1", "RangeAllocation"),
        ("/ranges/servicenodeports", "v1", "RangeAllocation"),
        ("/services/specs/default/kubernetes", "v1", "Service"),
    ];
    for (k, api, kind) in fixed.iter().take(n) {
        out.push((k.to_string(), kube_value(&mut rng, api, kind, k.rsplit('/').next().unwrap_or(k))));
    }
    let namespaces =
        ["default", "kube-system", &format!("{tenant}-apps"), &format!("{tenant}-jobs")].map(|s| s.to_string());
    const KINDS: &[(&str, &str, &str)] = &[
        ("pods", "v1", "Pod"),
        ("configmaps", "v1", "ConfigMap"),
        ("secrets", "v1", "Secret"),
        ("pods", "v1", "Pod"),
        ("services/specs", "v1", "Service"),
        ("deployments", "apps/v1", "Deployment"),
        ("serviceaccounts", "v1", "ServiceAccount"),
        ("leases", "coordination.k8s.io/v1", "Lease"),
    ];
    const APPS: &[&str] = &["web", "api", "worker", "cache", "ingress", "metrics", "auth", "billing"];
    let mut i = 0usize;
    while out.len() < n {
        let (res, api, kind) = KINDS[i % KINDS.len()];
        let ns = &namespaces[(i / KINDS.len()) % namespaces.len()];
        let app = APPS[rng.below(APPS.len() as u64) as usize];
        let name = match res {
            "pods" => format!("{app}-{}-{}", rng.suffix(9), rng.suffix(5)),
            _ => format!("{app}-{}", rng.suffix(5)),
        };
        let key = format!("/{res}/{ns}/{name}");
        out.push((key, kube_value(&mut rng, api, kind, &name)));
        i += 1;
        // Names are random: on a collision, the dedup below leaves one key short; the loop refills.
        if out.len() == n {
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out.dedup_by(|a, b| a.0 == b.0);
        }
    }
    out.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect()
}

/// The under cluster's `/registry/` keys: a kubeadm cluster running Kamaji,
/// with one TenantControlPlane per tenant, filled up to `n` keys.
fn under_cluster_records(n: usize, tenants: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rng = Rng(0x756e646572);
    let mut extra: Vec<(String, Vec<u8>)> = vec![
        ("/namespaces/kamaji-system".into(), kube_value(&mut rng, "v1", "Namespace", "kamaji-system")),
        (
            "/kamaji.clastix.io/datastores/tenant-etcd".into(),
            kube_value(&mut rng, "kamaji.clastix.io/v1alpha1", "DataStore", "tenant-etcd"),
        ),
    ];
    for i in 0..tenants {
        let t = TENANT_NAMES.get(i).map(|s| s.to_string()).unwrap_or(format!("tenant-{}", i + 1));
        extra.push((
            format!("/kamaji.clastix.io/tenantcontrolplanes/tenants/{t}"),
            kube_value(&mut rng, "kamaji.clastix.io/v1alpha1", "TenantControlPlane", &t),
        ));
    }
    let mut rest = tenant_records("platform", n.saturating_sub(extra.len()).max(1), 0x706c6174);
    let mut all: Vec<(Vec<u8>, Vec<u8>)> = extra.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect();
    all.append(&mut rest);
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all.dedup_by(|a, b| a.0 == b.0);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_records_are_kube_shaped_sorted_and_counted() {
        for n in [10, 500, 2000] {
            let r = tenant_records("acme", n, 1);
            assert_eq!(r.len(), n);
            assert!(r.windows(2).all(|w| w[0].0 < w[1].0), "sorted and unique");
            assert!(r.iter().all(|(_, v)| v.starts_with(b"k8s\0")));
        }
        let r = tenant_records("acme", 500, 1);
        let has = |p: &str| r.iter().any(|(k, _)| k.starts_with(p.as_bytes()));
        assert!(
            has("/pods/acme-apps/")
                && has("/configmaps/")
                && has("/secrets/")
                && has("/apiregistration.k8s.io/apiservices/v1.apps")
        );
        assert_eq!(tenant_records("acme", 500, 1), r, "deterministic");
    }

    #[test]
    fn runs_tells_this_process_from_a_dead_pid() {
        let me = std::process::id();
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert!(runs(me, comm.trim()));
        assert!(!runs(me, "surely-not-this"));
        assert!(!runs(u32::MAX - 1, "etcd"));
    }
}
