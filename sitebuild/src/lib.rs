//! `kpages build`: turns a site directory written for EdgeOne Pages, Netlify (incl. the
//! Frameworks API) or plain static hosting into a content-addressed artifact — every static
//! file, function bundle, included file and the deploy manifest as `blobs/sha256/<hex>`.
//!
//! ```text
//!  site/ ─┬─ netlify.toml, .netlify/v1/config.json ─► netlify::config ──┐
//!         ├─ edgeone.json ───────────────────────────► edgeone ──────────┤ rules, settings
//!         ├─ <publish>/_redirects, _headers ─────────► netlify::{redirects, headers}
//!         ├─ netlify/functions/*, .netlify/v1/functions/* ─► netlify::functions ┐
//!         ├─ node-functions/**, cloud-functions/** ─► edgeone::file_route ─────┤ esbuild
//!         └─ <publish>/** ───────────────────────────► statics                 ▼
//!                                                           Manifest ─► output (staged, renamed)
//! ```
//!
//! Everything is read, checked and bundled before the output directory is touched, so bad
//! input fails with a message naming the file and writes nothing.

pub mod edgeone;
pub mod error;
pub mod esbuild;
pub mod netlify;
pub mod output;
pub mod routes;
pub mod source_config;
pub mod statics;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSetBuilder};
use kpages_crds::manifest::{
    Dialect, Function, IncludedFile, InvocationKind, Limits, Route, Rules, SiteSettings, StaticFile,
};
use kpages_crds::{Digest, Manifest};
use kpages_routing::resolve::CompiledDeploy;

pub use error::BuildError;
use esbuild::Esbuild;
use netlify::config::NetlifyConfig;
use netlify::functions::rel;
use output::BlobSource;

/// What to build and where.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The site directory.
    pub site_dir: PathBuf,
    /// Output directory; `<site>/.kpages/out` when unset.
    pub out_dir: Option<PathBuf>,
    /// The esbuild binary; found with [`Esbuild::locate`] when unset.
    pub esbuild: Option<PathBuf>,
}

/// A site layout kpages recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layout {
    /// `edgeone.json`, `node-functions/` or `cloud-functions/`.
    Edgeone,
    /// `netlify.toml` or a Netlify functions directory.
    Netlify,
    /// `.netlify/v1/` written by a framework adapter.
    FrameworksApi,
    /// None of the above: static files (with `_redirects`/`_headers`).
    Static,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Edgeone => "edgeone",
            Layout::Netlify => "netlify",
            Layout::FrameworksApi => "netlify frameworks api",
            Layout::Static => "static",
        })
    }
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The manifest.
    pub manifest: Manifest,
    /// Its digest: the deploy's name.
    pub digest: Digest,
    /// Where the blobs were written.
    pub out_dir: PathBuf,
    /// The layouts recognised.
    pub layouts: Vec<Layout>,
    /// Blobs the artifact has (including the manifest).
    pub blobs: usize,
    /// Blobs that were not in the output directory before.
    pub new_blobs: usize,
}

/// Builds a site. On error nothing is written to the output directory.
pub fn build(opts: &BuildOptions) -> Result<BuildReport, BuildError> {
    let site = opts
        .site_dir
        .canonicalize()
        .map_err(|e| BuildError::NoSite {
            path: opts.site_dir.clone(),
            why: e.to_string(),
        })?;
    if !site.is_dir() {
        return Err(BuildError::NoSite {
            path: opts.site_dir.clone(),
            why: "not a directory".into(),
        });
    }
    let out = match &opts.out_dir {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => std::env::current_dir()
            .map_err(BuildError::io("."))?
            .join(p),
        None => site.join(".kpages/out"),
    };
    let artifact = assemble(&site, &out, opts.esbuild.as_deref())?;
    let manifest_json = artifact.manifest.to_json();
    let digest = Digest::of(&manifest_json);
    let mut blobs = artifact.blobs;
    blobs.push((digest, BlobSource::Bytes(manifest_json)));
    let new_blobs = output::write(&out, &blobs)?;
    Ok(BuildReport {
        manifest: artifact.manifest,
        digest,
        out_dir: out,
        layouts: artifact.layouts,
        blobs: blobs.iter().map(|(d, _)| *d).collect::<BTreeSet<_>>().len(),
        new_blobs,
    })
}

struct Artifact {
    manifest: Manifest,
    blobs: Vec<(Digest, BlobSource)>,
    layouts: Vec<Layout>,
}

fn read_optional(path: &Path) -> Result<Option<String>, BuildError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BuildError::io(path)(e)),
    }
}

/// A directory named by configuration, which must exist.
fn configured_dir(
    root: &Path,
    site: &Path,
    dir: &str,
    file: &str,
    field: &str,
) -> Result<PathBuf, BuildError> {
    let p = root.join(dir);
    if p.is_dir() {
        Ok(p)
    } else {
        Err(BuildError::Config {
            file: file.to_string(),
            message: format!(
                "`{field}` is {dir:?} but {} is not a directory; build the site first or fix the path",
                rel(site, &p)
            ),
        })
    }
}

/// Reads, checks and bundles everything; touches nothing outside a private scratch directory.
fn assemble(site: &Path, out: &Path, esbuild_path: Option<&Path>) -> Result<Artifact, BuildError> {
    let mut layouts = BTreeSet::new();
    let toml_cfg = match read_optional(&site.join("netlify.toml"))? {
        Some(text) => {
            layouts.insert(Layout::Netlify);
            Some(netlify::config::parse_toml(&text, "netlify.toml")?)
        }
        None => None,
    };
    let root = match toml_cfg.as_ref().and_then(|c| c.base.as_deref()) {
        Some(base) => configured_dir(site, site, base, "netlify.toml", "build.base")?,
        None => site.to_path_buf(),
    };
    let fw_file = root.join(".netlify/v1/config.json");
    let fw_cfg = match read_optional(&fw_file)? {
        Some(text) => Some(netlify::config::parse_frameworks_json(
            &text,
            &rel(site, &fw_file),
        )?),
        None => None,
    };
    let fw_functions = root.join(".netlify/v1/functions");
    if fw_cfg.is_some() || fw_functions.is_dir() {
        layouts.insert(Layout::FrameworksApi);
    }
    let netlify = netlify::config::merge(toml_cfg.unwrap_or_default(), fw_cfg.unwrap_or_default());
    let eo_file = root.join("edgeone.json");
    let eo = match read_optional(&eo_file)? {
        Some(text) => {
            layouts.insert(Layout::Edgeone);
            Some(edgeone::parse_json(&text, &rel(site, &eo_file))?)
        }
        None => None,
    };
    let eo_dirs: Vec<PathBuf> = edgeone::FUNCTION_DIRS
        .iter()
        .map(|d| root.join(d))
        .filter(|d| d.is_dir())
        .collect();
    if !eo_dirs.is_empty() {
        layouts.insert(Layout::Edgeone);
    }

    // Where static files come from.
    let publish = match (
        &netlify.publish,
        eo.as_ref().and_then(|e| e.output_directory.as_ref()),
    ) {
        (Some(p), _) => configured_dir(&root, site, p, "netlify.toml", "build.publish")?,
        (None, Some(p)) => configured_dir(&root, site, p, &rel(site, &eo_file), "outputDirectory")?,
        (None, None) => root.clone(),
    };

    // Netlify functions: the user's directory, then the framework's.
    let (user_fn_dir, fn_dir_configured) = match &netlify.functions_dir {
        Some(d) => (root.join(d), true),
        None => (root.join("netlify/functions"), false),
    };
    if fn_dir_configured && !user_fn_dir.is_dir() {
        return Err(BuildError::Config {
            file: "netlify.toml".into(),
            message: format!(
                "the functions directory {} does not exist",
                rel(site, &user_fn_dir)
            ),
        });
    }
    let mut netlify_fns = Vec::new();
    if user_fn_dir.is_dir() {
        layouts.insert(Layout::Netlify);
        netlify_fns = netlify::functions::discover(&user_fn_dir, site)?;
    }
    if fw_functions.is_dir() {
        for f in netlify::functions::discover(&fw_functions, site)? {
            // A user function of the same name wins over the framework's (Frameworks API).
            if !netlify_fns.iter().any(|u| u.name == f.name) {
                netlify_fns.push(f);
            }
        }
    }

    // EdgeOne functions from the file tree.
    let mut eo_fns = Vec::new();
    for dir in &eo_dirs {
        for entry in walkdir::WalkDir::new(dir)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                let n = e.file_name().to_string_lossy();
                e.depth() == 0 || !(n.starts_with('.') || n == "node_modules")
            })
        {
            let entry = entry.map_err(|e| BuildError::Io {
                path: dir.clone(),
                source: e.into(),
            })?;
            let ext = entry
                .path()
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("");
            if !entry.file_type().is_file() || !edgeone::EXTENSIONS.contains(&ext) {
                continue;
            }
            let inner = rel(dir, entry.path());
            let route = edgeone::file_route(&inner).map_err(|message| BuildError::Function {
                file: rel(site, entry.path()),
                message,
            })?;
            eo_fns.push((entry.path().to_path_buf(), route));
        }
    }

    if layouts.is_empty() {
        layouts.insert(Layout::Static);
    }

    // Bundling happens in a private scratch directory, outside the output directory.
    let scratch = tempfile::Builder::new()
        .prefix("kpages-build-")
        .tempdir()
        .map_err(BuildError::io(std::env::temp_dir()))?;
    let mut esbuild = None;
    let mut functions: Vec<Function> = Vec::new();
    let mut blobs: Vec<(Digest, BlobSource)> = Vec::new();
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    let shim = scratch.path().join("shim/netlify-functions.mjs");
    if !netlify_fns.is_empty() || !eo_fns.is_empty() {
        esbuild = Some(Esbuild::locate(esbuild_path)?);
        std::fs::create_dir_all(scratch.path().join("shim"))
            .map_err(BuildError::io(scratch.path()))?;
        std::fs::write(&shim, esbuild::NETLIFY_FUNCTIONS_SHIM).map_err(BuildError::io(&shim))?;
    }
    let ctx = FunctionContext {
        site,
        root: &root,
        out,
        netlify: &netlify,
        scratch: scratch.path(),
        shim: &shim,
    };
    if let Some(esbuild) = &esbuild {
        for (i, f) in netlify_fns.iter().enumerate() {
            let (function, mut extra) = ctx.netlify_function(esbuild, f, i)?;
            add_function(&mut functions, &mut sources, function)?;
            blobs.append(&mut extra);
        }
        let mut eo_names = BTreeSet::new();
        for (i, (path, route)) in eo_fns.iter().enumerate() {
            let mut name = route.name.clone();
            let mut n = 2;
            // `a-b.js` and `a/b.js` both sanitise to `a-b`; their routes differ, so number them.
            while !eo_names.insert(name.clone()) {
                name = format!("{}-{n}", route.name);
                n += 1;
            }
            let (function, mut extra) =
                ctx.edgeone_function(esbuild, path, route, &name, netlify_fns.len() + i)?;
            add_function(&mut functions, &mut sources, function)?;
            blobs.append(&mut extra);
        }
    }
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    routes::check_conflicts(&functions)?;

    // Rules, in the order they apply.
    let publish_rel = |name: &str| rel(site, &publish.join(name));
    let mut rules = Rules::default();
    rules
        .redirects
        .extend(netlify.important_redirects.iter().cloned());
    if let Some(text) = read_optional(&publish.join("_redirects"))? {
        rules.redirects.extend(netlify::redirects::parse(
            &text,
            &publish_rel("_redirects"),
        )?);
    }
    rules.redirects.extend(netlify.redirects.iter().cloned());
    if let Some(text) = read_optional(&publish.join("_headers"))? {
        rules
            .headers
            .extend(netlify::headers::parse(&text, &publish_rel("_headers"))?);
    }
    rules.headers.extend(netlify.headers.iter().cloned());
    let mut site_settings = SiteSettings::default();
    if let Some(eo) = &eo {
        rules.redirects.extend(eo.redirects.iter().cloned());
        rules.headers.extend(eo.headers.iter().cloned());
        rules.cache.extend(eo.cache.iter().cloned());
        site_settings.limits = Limits {
            timeout_seconds: eo.max_duration_seconds,
            ..Limits::default()
        };
    }

    // Static files.
    let mut skip: BTreeSet<PathBuf> = eo_dirs.iter().cloned().collect();
    skip.insert(user_fn_dir.clone());
    skip.insert(root.join("netlify/edge-functions"));
    skip.insert(root.join("edge-functions"));
    skip.insert(out.to_path_buf());
    let statics = statics::collect(&publish, site, &skip)?;
    let mut files = BTreeMap::new();
    for (url, s) in statics {
        blobs.push((s.digest, BlobSource::File(s.path.clone())));
        files.insert(
            url,
            StaticFile {
                digest: s.digest,
                size: s.size,
                content_type: s.content_type,
            },
        );
    }
    if files.contains_key("/404.html") {
        site_settings.not_found_page = Some("/404.html".into());
    }

    let manifest = Manifest {
        site: site_settings,
        files,
        functions,
        rules,
        ..Manifest::new()
    };
    manifest.check()?;
    CompiledDeploy::check(&manifest).map_err(BuildError::Unroutable)?;
    Ok(Artifact {
        manifest,
        blobs,
        layouts: layouts.into_iter().collect(),
    })
}

fn add_function(
    functions: &mut Vec<Function>,
    sources: &mut BTreeMap<String, String>,
    f: Function,
) -> Result<(), BuildError> {
    let source = f.source.clone().unwrap_or_default();
    if let Some(first) = sources.insert(f.name.clone(), source.clone()) {
        return Err(BuildError::DuplicateFunction {
            name: f.name,
            first,
            second: source,
        });
    }
    functions.push(f);
    Ok(())
}

struct FunctionContext<'a> {
    site: &'a Path,
    root: &'a Path,
    out: &'a Path,
    netlify: &'a NetlifyConfig,
    scratch: &'a Path,
    shim: &'a Path,
}

impl FunctionContext<'_> {
    fn bundle(
        &self,
        esbuild: &Esbuild,
        entry: &Path,
        index: usize,
    ) -> Result<esbuild::Bundle, BuildError> {
        let dir = self.scratch.join(format!("fn-{index}"));
        std::fs::create_dir_all(&dir).map_err(BuildError::io(&dir))?;
        esbuild.bundle(self.site, &rel(self.site, entry), self.shim, &dir)
    }

    fn netlify_function(
        &self,
        esbuild: &Esbuild,
        found: &netlify::functions::FoundFunction,
        index: usize,
    ) -> Result<(Function, Vec<(Digest, BlobSource)>), BuildError> {
        let file = rel(self.site, &found.entry);
        let transformed = esbuild.transform(self.site, &file)?;
        let config = match source_config::extract_config(&transformed) {
            Ok(Some(v)) => netlify::functions::interpret_config(&v, &file)?,
            Ok(None) => Default::default(),
            Err(e) => {
                return Err(BuildError::NonStaticConfig {
                    file,
                    field: e.field,
                    found: e.found,
                });
            }
        };
        let bundle = self.bundle(esbuild, &found.entry, index)?;
        let has = |name: &str| bundle.exports.iter().any(|e| e == name);
        let dialect = if bundle.entry_is_cjs {
            // A CommonJS module's `module.exports` is the bundle's default export; the host
            // finds `handler` on it. Netlify v2 functions are ES modules.
            if contains_word(&transformed, "handler") {
                Dialect::Lambda
            } else {
                Dialect::Netlify
            }
        } else if has("default") {
            Dialect::Netlify
        } else if has("handler") {
            Dialect::Lambda
        } else {
            return Err(BuildError::Function {
                file,
                message: "exports neither a default function (Netlify v2: `export default async (req, context) => …`) nor a Lambda-compatible `handler`".into(),
            });
        };
        let per_name: Vec<&netlify::config::FunctionSettings> = self
            .netlify
            .functions_by_name
            .iter()
            .filter(|(pattern, _)| {
                *pattern == &found.name
                    || Glob::new(pattern)
                        .map(|g| g.compile_matcher().is_match(&found.name))
                        .unwrap_or(false)
            })
            .map(|(_, s)| s)
            .collect();
        let schedule = config
            .schedule
            .clone()
            .or_else(|| per_name.iter().find_map(|s| s.schedule.clone()))
            .or_else(|| source_config::schedule_helper(&transformed));
        if let Some(s) = &schedule {
            netlify::functions::check_cron(s).map_err(|message| BuildError::UnsupportedConfig {
                file: file.clone(),
                field: "schedule".into(),
                message,
            })?;
        }
        let background = config.background || found.name.ends_with("-background");
        let invocation = match (background, &schedule) {
            (true, Some(_)) => {
                return Err(BuildError::UnsupportedConfig {
                    file,
                    field: "schedule".into(),
                    message: "a background function cannot also be scheduled; use one or the other"
                        .into(),
                });
            }
            (true, None) => InvocationKind::Background,
            (false, Some(_)) => InvocationKind::Scheduled,
            (false, None) => InvocationKind::Sync,
        };
        if invocation == InvocationKind::Scheduled && !config.routes.is_empty() {
            return Err(BuildError::UnsupportedConfig {
                file,
                field: "path".into(),
                message: "scheduled functions are invoked by the scheduler and cannot have a path"
                    .into(),
            });
        }
        let mut globs = self.netlify.functions_all.included_files.clone();
        for s in &per_name {
            globs.extend(s.included_files.iter().cloned());
        }
        globs.extend(config.included_files.iter().cloned());
        let included = self.included_files(&globs, &file)?;
        let mut blobs = vec![(
            Digest::of(&bundle.code),
            BlobSource::Bytes(bundle.code.clone()),
        )];
        blobs.extend(
            included
                .iter()
                .map(|(f, p)| (f.digest, BlobSource::File(p.clone()))),
        );
        Ok((
            Function {
                name: found.name.clone(),
                bundle: Digest::of(&bundle.code),
                dialect,
                invocation,
                schedule,
                routes: config.routes,
                excluded_routes: config.excluded_routes,
                methods: config.methods,
                prefer_static: config.prefer_static,
                catch_all: None,
                limits: Limits::default(),
                included_files: included.into_iter().map(|(f, _)| f).collect(),
                rate_limit: config.rate_limit,
                source: Some(file),
            },
            blobs,
        ))
    }

    fn edgeone_function(
        &self,
        esbuild: &Esbuild,
        path: &Path,
        route: &edgeone::FileRoute,
        name: &str,
        index: usize,
    ) -> Result<(Function, Vec<(Digest, BlobSource)>), BuildError> {
        let bundle = self.bundle(esbuild, path, index)?;
        let digest = Digest::of(&bundle.code);
        Ok((
            Function {
                name: name.to_string(),
                bundle: digest,
                dialect: Dialect::Edgeone,
                invocation: InvocationKind::Sync,
                schedule: None,
                routes: vec![Route {
                    pattern: route.pattern.clone(),
                    syntax: edgeone::SYNTAX,
                }],
                excluded_routes: vec![],
                methods: vec![],
                prefer_static: false,
                catch_all: route.catch_all.clone(),
                limits: Limits::default(),
                included_files: vec![],
                rate_limit: None,
                source: Some(rel(self.site, path)),
            },
            vec![(digest, BlobSource::Bytes(bundle.code))],
        ))
    }

    /// Files matching `globs` (relative to the base directory; `!` excludes), by path.
    fn included_files(
        &self,
        globs: &[String],
        file: &str,
    ) -> Result<Vec<(IncludedFile, PathBuf)>, BuildError> {
        if globs.is_empty() {
            return Ok(Vec::new());
        }
        let mut include = GlobSetBuilder::new();
        let mut exclude = GlobSetBuilder::new();
        let outside = |g: &str, what: &str| BuildError::UnsupportedConfig {
            file: file.to_string(),
            field: "includedFiles".into(),
            message: format!(
                "{g:?} {what}; included files must be inside the site directory, named by globs relative to it (such as \"data/**\")"
            ),
        };
        for g in globs {
            let (set, pattern) = match g.strip_prefix('!') {
                Some(p) => (&mut exclude, p),
                None => (&mut include, g.as_str()),
            };
            if pattern.starts_with('/') || pattern.split(['/', '\\']).any(|seg| seg == "..") {
                return Err(outside(g, "reaches outside the site directory"));
            }
            let glob = Glob::new(pattern.trim_start_matches("./")).map_err(|e| {
                BuildError::UnsupportedConfig {
                    file: file.to_string(),
                    field: "includedFiles".into(),
                    message: format!("{g:?} is not a valid glob: {e}"),
                }
            })?;
            set.add(glob);
        }
        let bad = |e: globset::Error| BuildError::UnsupportedConfig {
            file: file.to_string(),
            field: "includedFiles".into(),
            message: e.to_string(),
        };
        let (include, exclude) = (include.build().map_err(bad)?, exclude.build().map_err(bad)?);
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(self.root)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                let n = e.file_name().to_string_lossy();
                e.depth() == 0 || !(n == ".git" || e.path() == self.out || n == ".kpages")
            })
        {
            let entry = entry.map_err(|e| BuildError::Io {
                path: self.root.to_path_buf(),
                source: e.into(),
            })?;
            let path = rel(self.root, entry.path());
            if entry.path_is_symlink() && include.is_match(&path) && !exclude.is_match(&path) {
                // A link is followed only to a file inside the site: the bundle must not carry
                // what the site's author pointed at elsewhere on the build machine.
                let target =
                    std::fs::canonicalize(entry.path()).map_err(BuildError::io(entry.path()))?;
                // `site` is canonical already (see `build`).
                if !target.starts_with(self.site) {
                    return Err(outside(
                        &path,
                        &format!(
                            "is a link to {}, outside the site directory",
                            target.display()
                        ),
                    ));
                }
                if !target.is_file() {
                    continue;
                }
            } else if !entry.file_type().is_file() {
                continue;
            }
            if include.is_match(&path) && !exclude.is_match(&path) {
                let bytes = std::fs::read(entry.path()).map_err(BuildError::io(entry.path()))?;
                out.push((
                    IncludedFile {
                        path,
                        digest: Digest::of(&bytes),
                        size: bytes.len() as u64,
                    },
                    entry.path().to_path_buf(),
                ));
            }
        }
        Ok(out)
    }
}

fn contains_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        let ident =
            |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
        !ident(before) && !ident(after)
    })
}
