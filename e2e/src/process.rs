//! Background processes of the harness: output to a log file, stopped when dropped, so a
//! failing test never leaves an API server behind; and what must be undone when the harness is
//! stopped by a signal, when no `Drop` runs.

use anyhow::anyhow;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::Error;

/// Every daemon running, so a signal to the harness can stop them: `Drop` does not run when
/// the test process is killed (a CI timeout, Ctrl-C).
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

type Cleanup = Arc<dyn Fn() + Send + Sync>;

/// What the signal handler undoes after the daemons are killed, newest first: the node's
/// containers, mounts and network namespaces, the pod network, the run directories.
static CLEANUPS: Mutex<Vec<(u64, Cleanup)>> = Mutex::new(Vec::new());
static NEXT_CLEANUP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A cleanup registered with [`on_signal`]; dropping it unregisters it (its owner's `Drop`
/// has done or will do the same work).
pub struct SignalCleanup(u64);

impl Drop for SignalCleanup {
    fn drop(&mut self) {
        if let Ok(mut cleanups) = CLEANUPS.lock() {
            cleanups.retain(|(id, _)| *id != self.0);
        }
    }
}

/// Registers `cleanup` to run if the harness is stopped by SIGINT or SIGTERM.
pub fn on_signal(cleanup: impl Fn() + Send + Sync + 'static) -> SignalCleanup {
    let id = NEXT_CLEANUP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Ok(mut cleanups) = CLEANUPS.lock() {
        cleanups.push((id, Arc::new(cleanup)));
    }
    SignalCleanup(id)
}

/// On SIGTERM or SIGINT (a terminal's Ctrl-C reaches the whole process group, the daemons
/// included), kills every daemon, undoes what was registered with [`on_signal`], newest first,
/// and exits with 130.
pub fn stop_all_on_signal() {
    std::thread::spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        });
        eprintln!("stopping: killing the test bed's processes and undoing its mounts and network");
        let pids: Vec<u32> = RUNNING.lock().map(|p| p.clone()).unwrap_or_default();
        for pid in pids {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let cleanups: Vec<Cleanup> = CLEANUPS
            .lock()
            .map(|c| c.iter().rev().map(|(_, f)| Arc::clone(f)).collect())
            .unwrap_or_default();
        for cleanup in cleanups {
            cleanup();
        }
        std::process::exit(130);
    });
}

pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `command`, sending stdout and stderr to `<log_dir>/<name>.log`.
    pub fn start(name: &str, mut command: Command, log_dir: &Path) -> Result<Daemon, Error> {
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).map_err(|e| anyhow!("{}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| anyhow!("{e}"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| anyhow!("cannot start {name}: {e}"))?;
        if let Ok(mut running) = RUNNING.lock() {
            running.push(child.id());
        }
        Ok(Daemon {
            name: name.to_owned(),
            child: Some(child),
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails with the log's tail if the process has exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Err(anyhow!(
                "{} exited ({status}):\n{}",
                self.name,
                self.log_tail(30)
            ));
        }
        Ok(())
    }

    /// Sends a signal with `kill` (STOP, CONT, …).
    pub fn signal(&self, signal: &str) -> Result<(), Error> {
        let pid = self.pid().ok_or_else(|| anyhow!("not running"))?;
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status();
        if status.is_ok_and(|s| s.success()) {
            Ok(())
        } else {
            Err(anyhow!("cannot send SIG{signal} to {}", self.name))
        }
    }

    /// Sends a signal with `kill`, and waits for the exit status.
    pub fn signal_and_wait(&mut self, signal: &str) -> Result<std::process::ExitStatus, Error> {
        let pid = self.pid().ok_or_else(|| anyhow!("not running"))?;
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            return Err(anyhow!("cannot signal {}", self.name));
        }
        let child = self.child.as_mut().ok_or_else(|| anyhow!("not running"))?;
        let status = child.wait().map_err(|e| anyhow!("{e}"))?;
        forget(pid);
        self.child = None;
        Ok(status)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            forget(child.id());
        }
    }
}

fn forget(pid: u32) {
    if let Ok(mut running) = RUNNING.lock() {
        running.retain(|p| *p != pid);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
