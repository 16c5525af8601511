//! The static files of a site: every file under the publish directory except hidden ones,
//! `node_modules`, function sources and the configuration files kpages has already read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kpages_crds::Digest;

use crate::error::BuildError;
use crate::netlify::functions::rel;

/// A static file to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSource {
    /// Where it is on disk.
    pub path: PathBuf,
    /// Digest of its bytes.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Media type.
    pub content_type: String,
}

/// Files at the top of the publish directory that configure the deploy rather than belong to it.
const CONFIG_FILES: &[&str] = &["_redirects", "_headers", "netlify.toml", "edgeone.json"];

/// Files at the top of the site directory that are sources, skipped only when the publish
/// directory is the site directory itself.
const SITE_SOURCE_FILES: &[&str] = &["package.json", "package-lock.json", "tsconfig.json"];

/// Collects the static files under `publish` by URL path, skipping `skip_dirs`.
pub fn collect(
    publish: &Path,
    site: &Path,
    skip_dirs: &BTreeSet<PathBuf>,
) -> Result<BTreeMap<String, StaticSource>, BuildError> {
    let mut files = BTreeMap::new();
    let walker = walkdir::WalkDir::new(publish)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0
                || !(name.starts_with('.')
                    || name == "node_modules"
                    || (e.file_type().is_dir() && skip_dirs.contains(e.path())))
        });
    for entry in walker {
        let entry = entry.map_err(|e| BuildError::Io {
            path: e
                .path()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| publish.to_path_buf()),
            source: e.into(),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path();
        let name = entry.file_name().to_string_lossy();
        if entry.depth() == 1
            && (CONFIG_FILES.contains(&name.as_ref())
                || (publish == site && SITE_SOURCE_FILES.contains(&name.as_ref())))
        {
            continue;
        }
        let rel_path = path.strip_prefix(publish).unwrap_or(path);
        let mut url = String::new();
        for c in rel_path.components() {
            let seg = c.as_os_str().to_str().ok_or_else(|| BuildError::Config {
                file: rel(site, path),
                message: "the file name is not UTF-8; rename it".into(),
            })?;
            if seg.contains('\\') {
                return Err(BuildError::Config {
                    file: rel(site, path),
                    message: "file names may not contain backslashes; rename it".into(),
                });
            }
            url.push('/');
            url.push_str(seg);
        }
        let bytes = std::fs::read(path).map_err(BuildError::io(path))?;
        files.insert(
            url,
            StaticSource {
                path: path.to_path_buf(),
                digest: Digest::of(&bytes),
                size: bytes.len() as u64,
                content_type: content_type(path),
            },
        );
    }
    Ok(files)
}

/// The media type served for a file, by extension; text types are UTF-8.
pub fn content_type(path: &Path) -> String {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    // Types browsers are picky about are pinned here rather than left to the MIME table.
    let pinned = match ext.as_str() {
        "html" | "htm" => Some("text/html"),
        "css" => Some("text/css"),
        "js" | "mjs" | "cjs" => Some("text/javascript"),
        "json" | "map" => Some("application/json"),
        "webmanifest" => Some("application/manifest+json"),
        "svg" => Some("image/svg+xml"),
        "txt" => Some("text/plain"),
        "xml" => Some("application/xml"),
        "wasm" => Some("application/wasm"),
        "woff2" => Some("font/woff2"),
        "" => Some("application/octet-stream"),
        _ => None,
    };
    let mime = pinned.map(str::to_string).unwrap_or_else(|| {
        mime_guess::from_ext(&ext)
            .first_or_octet_stream()
            .essence_str()
            .to_string()
    });
    let textual = mime.starts_with("text/")
        || matches!(
            mime.as_str(),
            "application/json" | "application/manifest+json" | "application/xml" | "image/svg+xml"
        );
    if textual {
        format!("{mime}; charset=utf-8")
    } else {
        mime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_come_from_extensions() {
        let cases = [
            ("index.html", "text/html; charset=utf-8"),
            ("a/b.CSS", "text/css; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("data.json", "application/json; charset=utf-8"),
            ("logo.svg", "image/svg+xml; charset=utf-8"),
            ("photo.jpg", "image/jpeg"),
            ("font.woff2", "font/woff2"),
            ("doc.pdf", "application/pdf"),
            ("LICENSE", "application/octet-stream"),
            ("x.unknownext", "application/octet-stream"),
        ];
        for (file, want) in cases {
            assert_eq!(content_type(Path::new(file)), want, "{file}");
        }
    }

    #[test]
    fn hidden_config_and_skipped_files_are_left_out() {
        let d = tempfile::tempdir().unwrap();
        let site = d.path();
        for f in [
            "index.html",
            "_redirects",
            "_headers",
            "netlify.toml",
            "package.json",
            "a/_redirects",
            ".env",
            ".git/HEAD",
            "node_modules/x/index.js",
            "netlify/functions/f.mts",
            "css/site.css",
        ] {
            let p = site.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        let skip = BTreeSet::from([site.join("netlify/functions")]);
        let files = collect(site, site, &skip).unwrap();
        let keys: Vec<_> = files.keys().map(String::as_str).collect();
        assert_eq!(keys, ["/a/_redirects", "/css/site.css", "/index.html"]);
        assert_eq!(files["/index.html"].size, 10);
        assert_eq!(files["/index.html"].digest, Digest::of(b"index.html"));
    }
}
