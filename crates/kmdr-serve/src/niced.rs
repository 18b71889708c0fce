//! A worker thread at a lower CPU priority, for work that must never slow
//! the backups down (the test restores of `verify:`). Linux keeps a nice
//! value per thread, and a thread or process inherits the value of the
//! thread that creates it; so everything a job does on this thread, the
//! blocking-pool threads its runtime starts, and every process it spawns
//! (scratch servers, etcdutl, helm) runs at that niceness, while the
//! backups' threads keep theirs.
//!
//! The thread runs its own single-threaded runtime for as long as the
//! worker lives (the futures of the datastore drivers are not all `Send`),
//! and takes jobs over a channel.

use std::future::Future;
use std::pin::Pin;
use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// A thread at niceness `nice` running jobs, many at once.
pub(crate) struct Niced {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Niced {
    /// Start the thread. Fails only when no thread or runtime can be made.
    pub(crate) fn start(name: &str, nice: i32) -> std::io::Result<Niced> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name(name.into()).spawn(move || {
            if let Err(e) = set_thread_nice(nice) {
                tracing::warn!("cannot lower this worker's priority to nice {nice}: {e}; it runs at the default");
            }
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                while let Some(job) = rx.recv().await {
                    tokio::task::spawn_local(job());
                }
            });
        })?;
        Ok(Niced { jobs: tx })
    }

    /// Run `job` on the worker and wait for its result; `None` when the
    /// worker is gone.
    pub(crate) async fn run<F, Fut, T>(&self, job: F) -> Option<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let boxed: Job = Box::new(move || {
            Box::pin(async move {
                let _ = tx.send(job().await);
            })
        });
        self.jobs.send(boxed).ok()?;
        rx.await.ok()
    }
}

/// Set the calling thread's nice value (Linux: per thread).
fn set_thread_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: gettid and setpriority take no pointers; PRIO_PROCESS with a
    // thread id changes that one thread on Linux.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of a process (field 19 of /proc/PID/stat).
    fn nice_of(stat: &str) -> i32 {
        // The command name (field 2) is in parentheses and may hold spaces.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn jobs_and_what_they_spawn_run_at_the_niceness() {
        let own = nice_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
        let w = Niced::start("test-niced", 7).unwrap();
        let child = w
            .run(|| async {
                let out = tokio::process::Command::new("cat").arg("/proc/self/stat").output().await.unwrap();
                String::from_utf8(out.stdout).unwrap()
            })
            .await
            .unwrap();
        assert_eq!(nice_of(&child), 7, "{child}");
        // A blocking-pool thread the job starts inherits it too.
        let blocking = w
            .run(|| async {
                tokio::task::spawn_blocking(|| std::fs::read_to_string("/proc/thread-self/stat").unwrap())
                    .await
                    .unwrap()
            })
            .await
            .unwrap();
        assert_eq!(nice_of(&blocking), 7, "{blocking}");
        // This thread keeps its own.
        assert_eq!(nice_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap()), own);
    }
}
