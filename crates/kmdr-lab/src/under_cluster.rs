//! The lab's under cluster: one etcd member that the plan's `run:` steps stop,
//! wipe and start again during a drill. `up` starts it through the very shell
//! line the plan's after-restore step holds, so what the drill restarts is
//! what `up` started.

use kmdr_testkit::free_port;
use std::path::{Path, PathBuf};

/// The under cluster's etcd, as the plan's steps start and stop it.
#[derive(Debug, Clone)]
pub struct UnderCluster {
    dir: PathBuf,
    pub client_port: u16,
    pub peer_port: u16,
    pub client_url: String,
    pub peer_url: String,
}

impl UnderCluster {
    /// On free ports, with its data, log and pid file in `dir`.
    pub fn new(dir: &Path) -> UnderCluster {
        let c = Some(free_port()).filter(|&p| p != 0).unwrap_or(23790);
        let p = Some(free_port()).filter(|&p| p != 0).unwrap_or(23800);
        UnderCluster {
            dir: dir.into(),
            client_port: c,
            peer_port: p,
            client_url: format!("http://127.0.0.1:{c}"),
            peer_url: format!("http://127.0.0.1:{p}"),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("uc.etcd")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("uc.pid")
    }

    pub fn log(&self) -> PathBuf {
        PathBuf::from(format!("{}.log", self.data_dir().display()))
    }

    /// Start the member in the background, record its pid, wait until it answers.
    pub fn start_line(&self) -> String {
        format!(
            "nohup etcd --name uc --data-dir {d} --listen-client-urls {c} --advertise-client-urls {c} --listen-peer-urls {p} \
             --initial-advertise-peer-urls {p} --initial-cluster uc={p} --log-level error >> {log} 2>&1 < /dev/null & echo $! > {pid}; \
             for i in $(seq 100); do etcdctl --endpoints {c} endpoint health >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1",
            d = sh_quote(&self.data_dir()),
            log = sh_quote(&self.log()),
            c = self.client_url,
            p = self.peer_url,
            pid = sh_quote(&self.pid_file()),
        )
    }

    /// Stop the member (waiting until it is gone, or only a zombie) and lose its data dir.
    pub fn stop_line(&self) -> String {
        format!(
            "pid=$(cat {pid}); kill $pid; while kill -0 $pid 2>/dev/null && [ \"$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null)\" != Z ]; do sleep 0.05; done; rm -rf {d}",
            pid = sh_quote(&self.pid_file()),
            d = sh_quote(&self.data_dir()),
        )
    }
}

/// `p` as one POSIX shell word: in single quotes, each `'` written `'\''`.
pub fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_path_reaches_the_shell_as_it_is() {
        for p in ["/tmp/plain", "/tmp/it's a lab: \"x\"", "/tmp/$HOME `id` \\n"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", sh_quote(Path::new(p))))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), p);
        }
    }
}
