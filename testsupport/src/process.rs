//! A server process for one test: found where `scripts/install-deps` put it, logging to a file,
//! checked for an early exit while it starts, killed when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The binary `name`: `$<env>` if set, else the newest `<name>-<version>/<name>` that
/// `scripts/install-deps` built under `$KPAGES_CACHE/bin` (default `~/.cache/kpages/bin`).
/// Panics saying how to install it when there is none.
pub(crate) fn cached_binary(name: &str, env: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(env) {
        return bin.into();
    }
    let cache = std::env::var_os("KPAGES_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/kpages")
        });
    newest_in(&cache.join("bin"), name).unwrap_or_else(|| {
        panic!(
            "{name} is not installed: run scripts/install-deps (it builds {name} from the Go \
             module proxy into {}) or set {env} to a {name} binary",
            cache.join("bin").display()
        )
    })
}

/// The newest `<bin_dir>/<name>-<version>/<name>` (by version directory name).
fn newest_in(bin_dir: &Path, name: &str) -> Option<PathBuf> {
    let prefix = format!("{name}-");
    let mut found: Vec<PathBuf> = std::fs::read_dir(bin_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .map(|p| p.join(name))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// A running child process whose output goes to a log file.
pub(crate) struct Process {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Process {
    /// Starts `cmd`, appending its stdout and stderr to `log`.
    pub(crate) fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("{name} log {}: {e}", log.display()));
        let child = cmd
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {name} ({}): {e} (scripts/install-deps installs it)",
                    Path::new(cmd.get_program()).display()
                )
            });
        Self {
            child,
            name,
            log: log.to_path_buf(),
        }
    }

    /// Panics with the log if the process has exited: it cannot become ready any more.
    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!(
                "{} exited with {status} before becoming ready:\n{log}",
                self.name
            );
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on 127.0.0.1:`port` answers 200.
pub(crate) fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

/// Runs a blocking server start off the async runtime's threads, keeping its panic message.
pub(crate) async fn off_runtime<T: Send + 'static>(
    start: impl FnOnce() -> T + Send + 'static,
) -> T {
    match tokio::task::spawn_blocking(start).await {
        Ok(server) => server,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_installed_version_is_found() {
        let cache = tempfile::tempdir().unwrap();
        for version in ["minio-v1", "minio-v2", "nats-server-v9"] {
            let dir = cache.path().join(version);
            std::fs::create_dir(&dir).unwrap();
            let bin = if version.starts_with("minio") {
                "minio"
            } else {
                "nats-server"
            };
            std::fs::write(dir.join(bin), "").unwrap();
        }
        // A version directory without the binary (an interrupted build) does not count.
        std::fs::create_dir(cache.path().join("minio-v3")).unwrap();
        assert_eq!(
            newest_in(cache.path(), "minio"),
            Some(cache.path().join("minio-v2/minio"))
        );
        assert_eq!(newest_in(cache.path(), "etcd"), None);
    }

    #[test]
    #[should_panic(expected = "starting minio (/nonexistent/minio)")]
    fn a_binary_that_cannot_start_says_which_and_how_to_install() {
        let log = tempfile::NamedTempFile::new().unwrap();
        Process::spawn("minio", &mut Command::new("/nonexistent/minio"), log.path());
    }
}
