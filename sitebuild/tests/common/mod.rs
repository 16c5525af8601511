//! Helpers shared by the build integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use kpages_crds::Manifest;
use kpages_sitebuild::{BuildError, BuildOptions, BuildReport};

/// The repository's `examples/` directory.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// Builds `site` into `out`.
pub fn build(site: &Path, out: &Path) -> Result<BuildReport, BuildError> {
    kpages_sitebuild::build(&BuildOptions {
        site_dir: site.to_path_buf(),
        out_dir: Some(out.to_path_buf()),
        esbuild: None,
    })
}

/// Reads the manifest blob back from the output directory and checks it parses.
pub fn stored_manifest(report: &BuildReport) -> Manifest {
    let path = report
        .out_dir
        .join("blobs/sha256")
        .join(report.digest.hex());
    let bytes = std::fs::read(&path).expect("manifest blob");
    Manifest::from_json(&bytes).expect("the stored manifest parses")
}

/// Asserts every blob the manifest names is stored under its digest.
pub fn assert_blobs_stored(report: &BuildReport) {
    for digest in report.manifest.blobs() {
        let path = report.out_dir.join("blobs/sha256").join(digest.hex());
        let bytes = std::fs::read(&path).unwrap_or_else(|_| panic!("blob {digest} missing"));
        assert_eq!(
            kpages_crds::Digest::of(&bytes),
            digest,
            "blob {digest} content"
        );
    }
}

/// A site written into a temporary directory, file by file.
pub struct SiteFixture {
    pub dir: tempfile::TempDir,
}

impl SiteFixture {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn with(self, path: &str, contents: &str) -> Self {
        let p = self.dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, contents).expect("write");
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Builds into `<site>/../out-<random>` and returns the error, asserting nothing was written.
    pub fn build_fails(&self) -> String {
        let parent = tempfile::tempdir().expect("tempdir");
        let out = parent.path().join("out");
        let err = build(self.path(), &out).expect_err("the build must fail");
        assert!(!out.exists(), "a failed build wrote {}", out.display());
        let leftovers: Vec<_> = std::fs::read_dir(parent.path())
            .expect("read parent")
            .collect();
        assert!(leftovers.is_empty(), "a failed build left {leftovers:?}");
        err.to_string()
    }
}
