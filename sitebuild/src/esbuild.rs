//! Running the pinned esbuild: a *transform* to read a function's source without its types,
//! and a *bundle* that turns a function and its dependencies into one ESM file for Node 20.
//!
//! Bundles are reproducible: esbuild runs in the site directory, so the only paths it writes
//! (the `// path/to/module.js` comments) are relative to the site; the one file from outside
//! the site, our `@netlify/functions` shim, has its comment replaced by a fixed name.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::error::BuildError;

/// The esbuild version `tools/package.json` pins.
pub const PINNED_VERSION: &str = "0.28.2";

/// The `@netlify/functions` stand-in bundled into functions that import it: the types are
/// erased by esbuild; these are the runtime helpers.
pub const NETLIFY_FUNCTIONS_SHIM: &str = include_str!("netlify/functions_shim.mjs");

/// How every bundle begins: CommonJS dependencies inlined into an ES module still call
/// `require` and read `__dirname`/`__filename`, which ES modules lack. The names are
/// prefixed so they cannot clash with the user's own top-level `__dirname`; `--define` points
/// free uses at them.
const BANNER: &str = "import { createRequire as __kpagesCreateRequire } from \"node:module\";\n\
import { fileURLToPath as __kpagesFileURLToPath } from \"node:url\";\n\
import { dirname as __kpagesDirname } from \"node:path\";\n\
const require = __kpagesCreateRequire(import.meta.url);\n\
const __kpages_filename = __kpagesFileURLToPath(import.meta.url);\n\
const __kpages_dirname = __kpagesDirname(__kpages_filename);";

/// A located esbuild binary.
#[derive(Debug, Clone)]
pub struct Esbuild {
    path: PathBuf,
}

/// What a bundle exports, read from esbuild's metafile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The bundle's bytes.
    pub code: Vec<u8>,
    /// Names the bundle exports (`default`, `handler`, `config`, …).
    pub exports: Vec<String>,
    /// Whether the entry file was CommonJS (its `module.exports` became `default`).
    pub entry_is_cjs: bool,
}

#[derive(Deserialize)]
struct Metafile {
    inputs: std::collections::BTreeMap<String, MetaInput>,
    outputs: std::collections::BTreeMap<String, MetaOutput>,
}

#[derive(Deserialize)]
struct MetaInput {
    format: Option<String>,
}

#[derive(Deserialize)]
struct MetaOutput {
    #[serde(default)]
    exports: Vec<String>,
    #[serde(rename = "entryPoint")]
    entry_point: Option<String>,
}

impl Esbuild {
    /// Finds esbuild: `$KPAGES_ESBUILD`, then the kpages source tree's `tools/` install, then
    /// `esbuild` on `PATH`.
    pub fn locate(explicit: Option<&Path>) -> Result<Self, BuildError> {
        let mut tried = Vec::new();
        if let Some(p) = explicit {
            if p.is_file() {
                return Ok(Self {
                    path: p.to_path_buf(),
                });
            }
            tried.push(p.display().to_string());
        }
        if let Some(p) = std::env::var_os("KPAGES_ESBUILD") {
            let p = PathBuf::from(p);
            if p.is_file() {
                return Ok(Self { path: p });
            }
            tried.push(format!("KPAGES_ESBUILD={}", p.display()));
        }
        let tools =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/node_modules/.bin/esbuild");
        if tools.is_file() {
            return Ok(Self { path: tools });
        }
        tried.push(tools.display().to_string());
        if let Some(paths) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&paths) {
                let p = dir.join("esbuild");
                if p.is_file() {
                    return Ok(Self { path: p });
                }
            }
        }
        tried.push("esbuild on PATH".into());
        Err(BuildError::EsbuildNotFound {
            tried: tried.join(", "),
        })
    }

    /// The binary's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Strips types from `rel` (relative to `site`) and returns the module text, or the
    /// syntax error with its `file:line:column`.
    pub fn transform(&self, site: &Path, rel: &str) -> Result<String, BuildError> {
        let out = self.run(
            site,
            rel,
            &[rel, "--log-level=error", "--color=false", "--charset=utf8"],
        )?;
        String::from_utf8(out).map_err(|_| BuildError::Esbuild {
            location: rel.to_string(),
            message: "esbuild's output is not UTF-8".into(),
            hint: None,
        })
    }

    /// Bundles the entry `rel` (relative to `site`) into one ESM file for Node 20, with
    /// `@netlify/functions` resolved to `shim`. `scratch` is a directory for esbuild's output.
    pub fn bundle(
        &self,
        site: &Path,
        rel: &str,
        shim: &Path,
        scratch: &Path,
    ) -> Result<Bundle, BuildError> {
        let outfile = scratch.join("bundle.mjs");
        let metafile = scratch.join("meta.json");
        let args = [
            rel.to_string(),
            "--bundle".into(),
            "--platform=node".into(),
            "--target=node20".into(),
            "--format=esm".into(),
            "--charset=utf8".into(),
            "--legal-comments=none".into(),
            "--log-level=error".into(),
            "--color=false".into(),
            format!("--alias:@netlify/functions={}", shim.display()),
            "--define:__dirname=__kpages_dirname".into(),
            "--define:__filename=__kpages_filename".into(),
            format!("--banner:js={BANNER}"),
            format!("--outfile={}", outfile.display()),
            format!("--metafile={}", metafile.display()),
        ];
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(site, rel, &argv)?;
        let code = std::fs::read(&outfile).map_err(BuildError::io(&outfile))?;
        let meta_bytes = std::fs::read(&metafile).map_err(BuildError::io(&metafile))?;
        let meta: Metafile =
            serde_json::from_slice(&meta_bytes).map_err(|e| BuildError::Esbuild {
                location: rel.to_string(),
                message: format!("unreadable esbuild metafile: {e}"),
                hint: None,
            })?;
        let output = meta.outputs.values().find(|o| o.entry_point.is_some());
        let entry_is_cjs = output
            .and_then(|o| o.entry_point.as_ref())
            .and_then(|e| meta.inputs.get(e))
            .and_then(|i| i.format.as_deref())
            == Some("cjs");
        let exports = output.map(|o| o.exports.clone()).unwrap_or_default();
        Ok(Bundle {
            code: anonymise_shim_path(code, site, shim),
            exports,
            entry_is_cjs,
        })
    }

    fn run(&self, site: &Path, rel: &str, args: &[&str]) -> Result<Vec<u8>, BuildError> {
        let out = Command::new(&self.path)
            .args(args)
            .current_dir(site)
            .output()
            .map_err(|source| BuildError::EsbuildRun {
                path: self.path.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        Err(esbuild_error(rel, &String::from_utf8_lossy(&out.stderr)))
    }
}

/// Turns esbuild's stderr into an error whose location is the first `file:line:column`.
fn esbuild_error(rel: &str, stderr: &str) -> BuildError {
    let location = stderr
        .lines()
        .map(str::trim)
        .find_map(|l| {
            let loc = l.strip_suffix(':')?;
            let mut parts = loc.rsplitn(3, ':');
            let col = parts.next()?;
            let line = parts.next()?;
            let file = parts.next()?;
            (col.parse::<u32>().is_ok() && line.parse::<u32>().is_ok() && !file.is_empty())
                .then(|| loc.to_string())
        })
        .unwrap_or_else(|| rel.to_string());
    let message = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("✘ [ERROR] "))
        .collect::<Vec<_>>()
        .join("; ");
    let message = if message.is_empty() {
        stderr.trim().to_string()
    } else {
        message
    };
    let hint = message.contains("Could not resolve").then(|| {
        "install the site's dependencies (npm ci in the site directory) before kpages build; dependencies are bundled from its node_modules".to_string()
    });
    BuildError::Esbuild {
        location,
        message,
        hint,
    }
}

/// Replaces the shim's path in esbuild's `// path` comments, which is relative to wherever
/// the scratch directory happened to be.
fn anonymise_shim_path(code: Vec<u8>, site: &Path, shim: &Path) -> Vec<u8> {
    let Ok(text) = String::from_utf8(code.clone()) else {
        return code;
    };
    let Some(rel) = relative(site, shim) else {
        return code;
    };
    text.replace(&format!("// {rel}\n"), "// kpages:@netlify/functions\n")
        .into_bytes()
}

/// `to` relative to `from`, with `/` separators, as esbuild prints it.
fn relative(from: &Path, to: &Path) -> Option<String> {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> =
        std::iter::repeat_n("..".to_string(), from.len() - common).collect();
    for c in &to[common..] {
        parts.push(c.as_os_str().to_str()?.to_string());
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esbuild_errors_keep_file_line_and_column() {
        let stderr = "✘ [ERROR] Expected \";\" but found \"world\"\n\n    netlify/functions/bad.mts:3:14:\n      3 │ const x = hello world;\n        ╵               ^\n\n1 error\n";
        let err = esbuild_error("netlify/functions/bad.mts", stderr);
        let text = err.to_string();
        assert!(
            text.starts_with("netlify/functions/bad.mts:3:14: Expected \";\" but found \"world\""),
            "{text}"
        );
        let unresolved = esbuild_error(
            "f.js",
            "✘ [ERROR] Could not resolve \"left-pad\"\n\n    f.js:1:7:\n",
        );
        assert!(unresolved.to_string().contains("npm ci"), "{unresolved}");
    }

    #[test]
    fn relative_paths_match_esbuild_comments() {
        let r = relative(Path::new("/a/site"), Path::new("/a/.out.tmp/shim/x.mjs"));
        assert_eq!(r.as_deref(), Some("../.out.tmp/shim/x.mjs"));
    }
}
