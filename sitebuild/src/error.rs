//! Why a build fails. Every variant names the file (and line or field) the user has to fix,
//! says what was wrong and, where it helps, what is accepted.

use std::path::PathBuf;

/// A failed build. Nothing is written to the output directory when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The site directory does not exist or is not a directory.
    #[error("{}: not a site directory: {why}", path.display())]
    NoSite {
        /// The directory given.
        path: PathBuf,
        /// Why it cannot be used.
        why: String,
    },
    /// A configuration file (`netlify.toml`, `edgeone.json`, `.netlify/v1/config.json`) is
    /// malformed or has a value kpages does not accept.
    #[error("{file}: {message}")]
    Config {
        /// The file, relative to the site directory.
        file: String,
        /// What is wrong (naming the field) and what is accepted.
        message: String,
    },
    /// A line of `_redirects` or `_headers` does not parse.
    #[error("{file}:{line}: {message}")]
    Line {
        /// The file, relative to the site directory.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// A function's in-source `config` has a value that is not a literal, so it cannot be read
    /// without running the code.
    #[error(
        "{file}: config field `{field}` is not a static value ({found}); use a literal string, number, boolean, array or object so kpages can read it without running the code"
    )]
    NonStaticConfig {
        /// The function's source file.
        file: String,
        /// Dotted path of the field in `config` (`path`, `rateLimit.windowLimit`).
        field: String,
        /// What was found instead.
        found: String,
    },
    /// A function's in-source `config` has a field or value kpages does not support.
    #[error("{file}: config field `{field}`: {message}")]
    UnsupportedConfig {
        /// The function's source file.
        file: String,
        /// Dotted path of the field.
        field: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// esbuild rejected a function's source: a syntax error, an import that does not resolve…
    #[error("{location}: {message}{}", hint.as_deref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    Esbuild {
        /// `file:line:column` of the first error, or the entry file when esbuild gave none.
        location: String,
        /// esbuild's message(s).
        message: String,
        /// What to do about it, when kpages knows.
        hint: Option<String>,
    },
    /// esbuild is needed (the site has functions) but was not found.
    #[error(
        "esbuild was not found (looked for {tried}); install the pinned esbuild with `npm ci --prefix tools` in the kpages source tree, or set KPAGES_ESBUILD to an esbuild 0.28 binary, or put esbuild on PATH"
    )]
    EsbuildNotFound {
        /// Where kpages looked.
        tried: String,
    },
    /// esbuild could not be run.
    #[error("running esbuild ({}) failed: {source}", path.display())]
    EsbuildRun {
        /// The esbuild binary.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Two functions claim the same route.
    #[error(
        "route {route:?} is claimed by two functions: {first} and {second}; remove or rename one of them"
    )]
    RouteConflict {
        /// The route, as written by the second function.
        route: String,
        /// The first function's source file.
        first: String,
        /// The second function's source file.
        second: String,
    },
    /// Two source files define a function of the same name.
    #[error("two functions are named {name:?}: {first} and {second}; rename one of them")]
    DuplicateFunction {
        /// The function name.
        name: String,
        /// The first source file.
        first: String,
        /// The second source file.
        second: String,
    },
    /// A function's module does not export anything kpages can run.
    #[error("{file}: {message}")]
    Function {
        /// The function's source file.
        file: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// Patterns the router could not compile (its routing core decides, so what the build
    /// accepts is what every router serves).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Unroutable(Vec<kpages_routing::pattern::Unusable>),
    /// The manifest built from the site breaks one of its invariants (a bug in kpages or a
    /// value no parser caught).
    #[error("the built manifest is invalid: {0}")]
    Manifest(#[from] kpages_crds::ManifestError),
}

impl BuildError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> BuildError {
        let path = path.into();
        move |source| BuildError::Io { path, source }
    }
}
