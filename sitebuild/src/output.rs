//! Writing the artifact: `blobs/sha256/<hex>` under the output directory.
//!
//! Blobs are first written into a staging directory next to the output directory, then
//! renamed into place, each rename atomic. The whole build (parsing, bundling, the manifest)
//! is done before the output directory is touched, so a failed build leaves it as it was.
//! Existing blobs are never rewritten: the same digest is the same bytes.

use std::path::{Path, PathBuf};

use kpages_crds::Digest;

use crate::error::BuildError;

/// Where a blob's bytes come from.
#[derive(Debug, Clone)]
pub enum BlobSource {
    /// A file on disk (a static file, an included file).
    File(PathBuf),
    /// Bytes built in memory (a bundle, the manifest).
    Bytes(Vec<u8>),
}

/// Writes `blobs` into `out`, returning how many were new.
pub fn write(out: &Path, blobs: &[(Digest, BlobSource)]) -> Result<usize, BuildError> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(BuildError::io(&parent))?;
    let staging = tempfile::Builder::new()
        .prefix(".kpages-build-")
        .tempdir_in(&parent)
        .map_err(BuildError::io(&parent))?;
    let staged_blobs = staging.path().join("blobs/sha256");
    std::fs::create_dir_all(&staged_blobs).map_err(BuildError::io(&staged_blobs))?;
    let final_blobs = out.join("blobs/sha256");
    let mut new = Vec::new();
    for (digest, source) in blobs {
        let name = digest.hex();
        if final_blobs.join(&name).is_file() || new.contains(&name) {
            continue;
        }
        let dest = staged_blobs.join(&name);
        match source {
            BlobSource::File(p) => {
                std::fs::copy(p, &dest).map_err(BuildError::io(p))?;
                // The file may have changed since it was hashed; a blob must match its name.
                let bytes = std::fs::read(&dest).map_err(BuildError::io(&dest))?;
                if Digest::of(&bytes) != *digest {
                    return Err(BuildError::Io {
                        path: p.clone(),
                        source: std::io::Error::other(
                            "the file changed during the build; run it again",
                        ),
                    });
                }
            }
            BlobSource::Bytes(b) => std::fs::write(&dest, b).map_err(BuildError::io(&dest))?,
        }
        new.push(name);
    }
    if !out.exists() {
        // Fresh output: one rename publishes everything.
        let staged = staging.keep();
        set_dir_mode(&staged);
        if let Err(e) = std::fs::rename(&staged, out) {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(BuildError::io(out)(e));
        }
        return Ok(new.len());
    }
    std::fs::create_dir_all(&final_blobs).map_err(BuildError::io(&final_blobs))?;
    for name in &new {
        let from = staged_blobs.join(name);
        let to = final_blobs.join(name);
        std::fs::rename(&from, &to).map_err(BuildError::io(&to))?;
    }
    Ok(new.len())
}

/// Temporary directories are private (0700); an output directory is as readable as any
/// directory the user creates.
#[cfg(unix)]
fn set_dir_mode(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
}

#[cfg(not(unix))]
fn set_dir_mode(_: &Path) {}
