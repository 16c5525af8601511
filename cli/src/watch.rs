//! Site changes for `kpages dev`: filesystem events for the site directory (through `notify`,
//! debounced so an editor's save or a `git checkout` is one rebuild), leaving out what a build
//! or a package manager writes (`.kpages/`, `node_modules/`) and `.git/`.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use notify_debouncer_mini::notify::{self, RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use tokio::sync::mpsc;

/// How long events are gathered into one change.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Directory names whose contents never trigger a rebuild.
const IGNORED: [&str; 3] = [".kpages", "node_modules", ".git"];

/// Watches a site directory; [`SiteWatcher::changed`] resolves on each relevant change.
pub struct SiteWatcher {
    // Dropping the debouncer stops the watch.
    _debouncer: Debouncer<RecommendedWatcher>,
    changes: mpsc::UnboundedReceiver<()>,
}

impl SiteWatcher {
    /// Starts watching `dir` and everything below it.
    pub fn start(dir: &Path) -> Result<Self, notify::Error> {
        let root = dir.to_path_buf();
        let (tx, changes) = mpsc::unbounded_channel();
        let mut debouncer = new_debouncer(DEBOUNCE, move |result: DebounceEventResult| {
            let relevant = match result {
                Ok(events) => events.iter().any(|e| counts(&root, &e.path)),
                // A watch error (an overflowed event queue, a removed directory) may hide a
                // change: rebuild rather than miss it.
                Err(_) => true,
            };
            if relevant {
                let _ = tx.send(());
            }
        })?;
        debouncer.watcher().watch(dir, RecursiveMode::Recursive)?;
        Ok(Self {
            _debouncer: debouncer,
            changes,
        })
    }

    /// Waits for the next change (changes that arrived meanwhile count as one).
    pub async fn changed(&mut self) {
        if self.changes.recv().await.is_none() {
            // The watcher thread is gone: no change will ever come.
            std::future::pending::<()>().await;
        }
        while self.changes.try_recv().is_ok() {}
    }
}

/// Whether a change at `path` (under `root`) is one the site is built from.
fn counts(root: &Path, path: &Path) -> bool {
    let rel: PathBuf = path.strip_prefix(root).unwrap_or(path).to_path_buf();
    !rel.components().any(|c| match c {
        Component::Normal(name) => IGNORED.iter().any(|i| name == *i),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_output_dependencies_and_git_do_not_count() {
        let root = Path::new("/site");
        for (path, want) in [
            ("/site/index.html", true),
            ("/site/netlify/functions/hello.mjs", true),
            ("/site/.kpages/out/blobs/sha256/ab", false),
            ("/site/node_modules/express/index.js", false),
            ("/site/.git/index", false),
            ("/site/public/node_modules.txt", true),
        ] {
            assert_eq!(counts(root, Path::new(path)), want, "{path}");
        }
    }

    #[tokio::test]
    async fn a_change_in_the_site_is_seen_and_one_in_build_output_is_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".kpages")).unwrap();
        let mut watcher = SiteWatcher::start(dir.path()).unwrap();
        std::fs::write(dir.path().join(".kpages/out.json"), "{}").unwrap();
        let quiet = tokio::time::timeout(DEBOUNCE * 5, watcher.changed()).await;
        assert!(quiet.is_err(), "build output counted as a change");
        std::fs::write(dir.path().join("index.html"), "hi").unwrap();
        tokio::time::timeout(Duration::from_secs(10), watcher.changed())
            .await
            .expect("a change to index.html is seen");
    }
}
