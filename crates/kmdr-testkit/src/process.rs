//! Server processes, owned or detached, and the helpers every launcher shares:
//! finding a program, waiting until a server answers, stopping a detached
//! server later by its pid.
//!
//! A pid is only ever signalled while `/proc` says it still runs the program
//! that was started: a pid reused by another process after the server died is
//! left alone.

use crate::LaunchError;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Who stops a server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mode {
    /// The caller's (a test's): the server is stopped when its handle is dropped.
    #[default]
    Owned,
    /// Nobody in this process (the lab's): the server runs in its own process
    /// group with stdin closed, so it outlives this process and a Ctrl-C to it;
    /// its pid is written to `pid_file`, and [`stop_pid`] stops it later.
    Detached { pid_file: PathBuf },
}

/// A started server process.
pub struct Process {
    child: Child,
    /// The name `/proc/PID/comm` shows.
    program: String,
    /// Started detached: left running once [`Process::launched`].
    detach: bool,
    /// Left running when dropped.
    detached: bool,
    /// Sent first when an owned server is dropped (KILL follows after 10s).
    stop_signal: &'static str,
}

impl Process {
    /// Start `cmd` (running `program`) with stdout and stderr appended to `log`.
    pub(crate) fn spawn(cmd: &mut Command, program: &str, mode: &Mode, log: &Path) -> Result<Process, LaunchError> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(LaunchError::io("create the log", log))?;
        let err = out.try_clone().map_err(LaunchError::io("open the log", log))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        if let Mode::Detached { .. } = mode {
            cmd.process_group(0);
        }
        let child = cmd.spawn().map_err(LaunchError::spawn(Path::new(cmd.get_program()).display()))?;
        if let Mode::Detached { pid_file } = mode {
            std::fs::write(pid_file, format!("{}\n", child.id()))
                .map_err(LaunchError::io("write the pid file", pid_file))?;
        }
        let detach = *mode != Mode::Owned;
        Ok(Process { child, program: program.into(), detach, detached: false, stop_signal: "KILL" })
    }

    /// The server answered: from now on a detached one outlives its handle.
    /// Until then it is stopped when dropped, so a launch that fails part way
    /// leaves nothing running.
    pub(crate) fn launched(&mut self) {
        self.detached = self.detach;
    }

    /// Stop an owned server with `signal` first (PostgreSQL's immediate
    /// shutdown is QUIT), KILL when it has not gone after 10s.
    pub(crate) fn stop_with(mut self, signal: &'static str) -> Self {
        self.stop_signal = signal;
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (it is reaped if so).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL now and reap it, whatever the mode (a test's "the server crashed").
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait (polling `ready` every `every`) until the server answers; an
    /// error when it exits first or `secs` pass.
    pub(crate) fn wait_ready(
        &mut self,
        server: &'static str,
        log: &Path,
        secs: u64,
        every: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), LaunchError> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if ready() {
                return Ok(());
            }
            if self.exited() {
                // Every server of the kit says so in these words (Go's net,
                // PostgreSQL, MariaDB): the machine's problem, not the data's.
                let said = std::fs::read(log).unwrap_or_default();
                if String::from_utf8_lossy(&said).to_lowercase().contains("address already in use") {
                    return Err(LaunchError::PortTaken { server, log: log.into() });
                }
                return Err(LaunchError::Exited { server, log: log.into() });
            }
            if Instant::now() > deadline {
                return Err(LaunchError::NotReady { server, secs, log: log.into() });
            }
            std::thread::sleep(every);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        if self.stop_signal != "KILL" && signal(self.pid(), self.stop_signal) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
    }
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process").field("pid", &self.pid()).field("program", &self.program).finish()
    }
}

fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `pid` is a live (not zombie) process running `program`.
pub fn runs(pid: u32, program: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // `pid (comm) state ...`: comm may hold spaces, so split at the last ')'.
    let Some((head, rest)) = stat.rsplit_once(')') else { return false };
    let comm = head.split_once('(').map(|(_, c)| c).unwrap_or("");
    let state = rest.trim_start().chars().next().unwrap_or('X');
    // comm is cut at 15 bytes.
    comm == &program[..program.len().min(15)] && !matches!(state, 'Z' | 'X' | 'x')
}

/// The pid in `pid_file`, when it still runs `program`.
pub fn running_pid(pid_file: &Path, program: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    runs(pid, program).then_some(pid)
}

/// Stop a detached server: TERM, then KILL after 10s. Returns whether it was
/// running (and so was stopped); a pid no longer running `program` is left alone.
pub fn stop_pid(pid: u32, program: &str) -> bool {
    if !runs(pid, program) {
        return false;
    }
    for (sig, secs) in [("TERM", 10), ("KILL", 5)] {
        signal(pid, sig);
        let deadline = Instant::now() + Duration::from_secs(secs);
        while runs(pid, program) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !runs(pid, program) {
            break;
        }
    }
    true
}

/// `bin` on PATH, else the first of `also` that exists.
pub fn find_bin(bin: &str, also: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(bin)).chain(also.iter().map(PathBuf::from)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// uid and gid of an OS user, from /etc/passwd.
pub(crate) fn os_user(name: &str) -> Option<(u32, u32)> {
    std::fs::read_to_string("/etc/passwd").ok()?.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?))).flatten()
    })
}

/// A set-up tool's output when it failed, for [`LaunchError::Setup`].
pub(crate) fn failure_output(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let text = if err.trim().is_empty() { String::from_utf8_lossy(&out.stdout) } else { err };
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_tells_this_process_from_a_dead_pid() {
        let me = std::process::id();
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert!(runs(me, comm.trim()));
        assert!(!runs(me, "surely-not-this"));
        assert!(!runs(u32::MAX - 1, "etcd"));
    }

    #[test]
    fn a_detached_process_outlives_its_handle_and_stops_by_pid() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("sleep.pid");
        let mode = Mode::Detached { pid_file: pid_file.clone() };
        let log = dir.path().join("sleep.log");
        let failed = Process::spawn(Command::new("sleep").arg("30"), "sleep", &mode, &log).unwrap();
        let pid = failed.pid();
        drop(failed);
        assert!(!runs(pid, "sleep"), "a launch that fails part way leaves nothing running");
        let mut p = Process::spawn(Command::new("sleep").arg("30"), "sleep", &mode, &log).unwrap();
        p.launched();
        let pid = p.pid();
        drop(p);
        assert_eq!(running_pid(&pid_file, "sleep"), Some(pid), "still runs after the handle is gone");
        assert!(!stop_pid(pid, "not-sleep"), "a pid running another program is left alone");
        assert!(stop_pid(pid, "sleep"));
        assert_eq!(running_pid(&pid_file, "sleep"), None);
    }

    #[test]
    fn an_owned_process_ends_with_its_handle() {
        let dir = tempfile::tempdir().unwrap();
        let p =
            Process::spawn(Command::new("sleep").arg("30"), "sleep", &Mode::Owned, &dir.path().join("s.log")).unwrap();
        let pid = p.pid();
        drop(p);
        assert!(!runs(pid, "sleep"));
    }
}
