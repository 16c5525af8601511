//! `kpages deploy [DIR] --site NAME`: build, upload what object storage lacks, then create the
//! Deploy (or write it for a GitOps repository with `--emit`), wait until it is Ready and print
//! its URL. Nothing names the new manifest until every blob is stored, so a failed deploy
//! switches no traffic.
//!
//! ```text
//!  Site exists? ─► kpages build ─► upload missing blobs, manifest last ─┬─ --emit FILE ─► Deploy YAML
//!                                                                       └─ apply Deploy (kpages-cli)
//!                                                    wait: Deploy Ready ─► (--prod) Site active ─► URL
//! ```
//!
//! stdout carries only the result, so scripts can read it: the URL (last line), or the Deploy's
//! name with `--no-wait` and `--emit FILE`, or the YAML with `--emit -`. Progress goes to stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kpages_crds::deploy::DeploySource;
use kpages_crds::{Deploy, DeployContext, DeployPhase, DeploySpec, Digest, Site};
use kpages_store::StoreConfig;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};

use crate::cluster::{self, Cluster, ClusterArgs, ClusterError};
use crate::upload::{self, UploadError, UploadOptions};

/// Arguments of `kpages deploy`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The site directory.
    #[arg(value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// The Site to deploy to (it must exist, unless --emit).
    #[arg(long, value_name = "NAME")]
    site: String,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// A production deploy: it becomes the site's active deploy once Ready. Without it the deploy
    /// is a preview, served only on its own preview host.
    #[arg(long)]
    prod: bool,
    /// Write the Deploy as YAML to FILE (`-` for stdout) instead of creating it, for
    /// `kubectl apply -f` or a GitOps repository. Blobs are still uploaded first.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["wait", "no_wait"])]
    emit: Option<PathBuf>,
    /// Object storage the cluster reads deploys from: s3://bucket[/prefix]?endpoint=URL, a
    /// directory or file:///dir. S3 credentials come from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "KPAGES_STORE_URL", value_name = "URL")]
    store: String,
    /// Wait until the Deploy is Ready (and, with --prod, serving the site). The default.
    #[arg(long, overrides_with = "no_wait")]
    wait: bool,
    /// Return once the Deploy is created; prints its name.
    #[arg(long, overrides_with = "wait")]
    no_wait: bool,
    /// How long to wait, e.g. 90s, 5m.
    #[arg(long, default_value = "5m", value_parser = cluster::parse_duration)]
    timeout: Duration,
    /// Deploy message (spec.source.message).
    #[arg(long)]
    message: Option<String>,
    /// Branch (spec.source.branch; default: the git branch of DIR).
    #[arg(long)]
    branch: Option<String>,
    /// Commit (spec.source.commit; default: the git HEAD of DIR).
    #[arg(long)]
    commit: Option<String>,
    /// Where the build writes its blobs (as in `kpages build`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The esbuild binary (as in `kpages build`).
    #[arg(long, value_name = "FILE")]
    esbuild: Option<PathBuf>,
    /// Blobs uploaded at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
}

/// Why a deploy failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A flag's value is not accepted.
    #[error("{0}")]
    Input(String),
    /// The store URL is wrong.
    #[error("{0}")]
    Store(Box<kpages_store::StoreError>),
    /// The build failed.
    #[error("{0}")]
    Build(Box<kpages_sitebuild::BuildError>),
    /// The upload failed.
    #[error("{0}")]
    Upload(Box<UploadError>),
    /// The cluster said no.
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    /// The emitted file could not be written.
    #[error("writing {path}: {source}")]
    Emit {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Deploy name is taken by a Deploy with other content.
    #[error(
        "Deploy {name:?} already exists with different content (site {site:?}, manifest {manifest}, context {context:?}); delete it or deploy to another site"
    )]
    NameTaken {
        /// The name.
        name: String,
        /// Its site.
        site: String,
        /// Its manifest.
        manifest: Digest,
        /// Its context.
        context: DeployContext,
    },
    /// This content is an older production deploy than the active one, so deploying it again
    /// would not make it live.
    #[error(
        "this content is already deployed as {name}, which is older than the active deploy {active}, so deploying it again does not make it live; serve it with\n  kpages rollback --site {site} {name}"
    )]
    OlderThanActive {
        /// The existing Deploy.
        name: String,
        /// The site's active deploy.
        active: String,
        /// The site.
        site: String,
    },
    /// The Deploy failed.
    #[error("Deploy {name} failed: {reason}: {message}")]
    Failed {
        /// The Deploy.
        name: String,
        /// The Ready condition's reason.
        reason: String,
        /// Its message.
        message: String,
    },
    /// Waiting timed out.
    #[error(
        "timed out after {}s waiting for {what}; the Deploy stays and may still become Ready (see `kpages status --site {site}`){}",
        timeout.as_secs(),
        format_conditions(conditions)
    )]
    Timeout {
        /// What was awaited.
        what: String,
        /// The site.
        site: String,
        /// The wait.
        timeout: Duration,
        /// The Deploy's conditions when the wait ended.
        conditions: Vec<Condition>,
    },
    /// The async runtime could not start.
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl From<kpages_store::StoreError> for DeployError {
    fn from(e: kpages_store::StoreError) -> Self {
        Self::Store(Box::new(e))
    }
}

impl From<kpages_sitebuild::BuildError> for DeployError {
    fn from(e: kpages_sitebuild::BuildError) -> Self {
        Self::Build(Box::new(e))
    }
}

impl From<UploadError> for DeployError {
    fn from(e: UploadError) -> Self {
        Self::Upload(Box::new(e))
    }
}

impl DeployError {
    /// The process exit code: 3 for a timeout, 4 for a failed Deploy, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            DeployError::Timeout { .. } => 3,
            DeployError::Failed { .. } => 4,
            _ => 1,
        }
    }
}

/// `\n  conditions:\n    Ready=False Provisioning: 0/1 pods ready` or nothing.
pub fn format_conditions(conditions: &[Condition]) -> String {
    if conditions.is_empty() {
        return String::new();
    }
    let lines: Vec<String> = conditions
        .iter()
        .map(|c| format!("\n    {}={} {}: {}", c.type_, c.status, c.reason, c.message))
        .collect();
    format!("\n  conditions:{}", lines.concat())
}

/// Runs `kpages deploy`.
pub fn run(args: &Args) -> Result<(), DeployError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(DeployError::Runtime)?
        .block_on(deploy(args))
}

async fn deploy(args: &Args) -> Result<(), DeployError> {
    check_site_name(&args.site)?;
    let source = source_of(args)?;
    let store = StoreConfig::parse(&args.store)?.open_with_retry(Some(upload::store_retry()))?;
    let context = if args.prod {
        DeployContext::Production
    } else {
        DeployContext::Preview
    };

    // Fail before building or uploading when the Site is not there. Its earlier deploys'
    // manifests say which blobs are stored already (see `upload::KnownBlobs`).
    let (cluster, previous) = match &args.emit {
        Some(path) => (
            None,
            emitted_manifest(path, &args.site).into_iter().collect(),
        ),
        None => {
            let cluster = Cluster::connect(&args.cluster).await?;
            let site = cluster.site(&args.site).await?;
            let previous = previous_manifests(&cluster, &site).await;
            (Some(cluster), previous)
        }
    };

    let options = kpages_sitebuild::BuildOptions {
        site_dir: args.dir.clone(),
        out_dir: args.out.clone(),
        esbuild: args.esbuild.clone(),
    };
    let report = tokio::task::spawn_blocking(move || kpages_sitebuild::build(&options))
        .await
        .map_err(|e| DeployError::Input(format!("the build panicked: {e}")))??;
    eprintln!(
        "built {}: {} files, {} functions; manifest {}",
        args.dir.display(),
        report.manifest.files.len(),
        report.manifest.functions.len(),
        report.digest
    );

    let blobs: Vec<Digest> = report.manifest.blobs().into_iter().collect();
    let known = upload::known_blobs(&store, &previous).await;
    let uploaded = upload::upload(
        &store,
        &report.out_dir.join("blobs/sha256"),
        &blobs,
        report.digest,
        &known,
        &UploadOptions {
            concurrency: usize::from(args.concurrency),
            ..UploadOptions::default()
        },
    )
    .await?;
    eprintln!(
        "uploaded {} of {} blobs ({}) to {store}; {} were already stored ({} checked, {} known from {} earlier deploy manifest(s))",
        uploaded.uploaded,
        uploaded.blobs,
        upload::human_bytes(uploaded.uploaded_bytes),
        uploaded.blobs - uploaded.uploaded,
        uploaded.checked,
        uploaded.blobs - uploaded.checked,
        known.manifests.len()
    );

    let name = deploy_name(&args.site, &report.digest, context);
    let namespace = match &cluster {
        Some(c) => Some(c.namespace.as_str()),
        None => args.cluster.namespace.as_deref(),
    };
    let desired = desired_deploy(&name, namespace, &args.site, report.digest, context, source);

    if let Some(path) = &args.emit {
        return emit(path, &desired);
    }
    let Some(cluster) = cluster else {
        return Ok(());
    };
    let created = create(&cluster, &desired).await?;
    eprintln!(
        "{} Deploy {name} ({context:?}) in namespace {}",
        if created { "created" } else { "unchanged:" },
        cluster.namespace
    );
    if args.no_wait {
        println!("{name}");
        return Ok(());
    }
    let url = wait_live(&cluster, &args.site, &name, context, args.timeout).await?;
    println!("{url}");
    Ok(())
}

/// How many of the site's other deploys (newest first) lend their manifests, besides the
/// active one: enough to cover a preview or two since the last production deploy, few enough
/// that reading them (one GET each) stays cheap next to the HEADs they save.
const PREVIOUS_DEPLOYS: usize = 3;

/// Manifest digests of the Site's earlier deploys: the active one (from the Site's status),
/// then the newest others. Best effort: listing Deploys failing only means more HEADs.
async fn previous_manifests(cluster: &Cluster, site: &Site) -> Vec<Digest> {
    let mut out: Vec<Digest> = site
        .status
        .as_ref()
        .and_then(|s| s.active_manifest.as_deref())
        .and_then(|m| m.parse().ok())
        .into_iter()
        .collect();
    match cluster.site_deploys(&site.name_any()).await {
        Ok(deploys) => out.extend(newest_manifests(deploys, PREVIOUS_DEPLOYS)),
        Err(e) => eprintln!("note: {e}; checking every blob with the store instead"),
    }
    out.dedup();
    out
}

/// The manifests of the `n` newest deploys, newest first, each once.
fn newest_manifests(mut deploys: Vec<Deploy>, n: usize) -> Vec<Digest> {
    let created = |d: &Deploy| d.metadata.creation_timestamp.as_ref().map(|t| t.0);
    deploys.sort_by_key(|d| std::cmp::Reverse(created(d)));
    let mut out: Vec<Digest> = Vec::with_capacity(n);
    for d in deploys {
        if out.len() == n {
            break;
        }
        if !out.contains(&d.spec.manifest) {
            out.push(d.spec.manifest);
        }
    }
    out
}

/// With `--emit FILE`, the manifest of the Deploy already in FILE for this site (a GitOps
/// repository's last deploy), if there is one.
fn emitted_manifest(path: &Path, site: &str) -> Option<Digest> {
    if path == Path::new("-") {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let deploy: Deploy = serde_yaml_ng::from_str(&text).ok()?;
    (deploy.spec.site == site).then_some(deploy.spec.manifest)
}

/// Checks the site name is a DNS label, as Site names are.
fn check_site_name(site: &str) -> Result<(), DeployError> {
    let ok = !site.is_empty()
        && site.len() <= 63
        && site
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !site.starts_with('-')
        && !site.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(DeployError::Input(format!(
            "--site {site:?} is not a Site name: use a lowercase DNS label (a-z, 0-9, '-', at most 63 characters)"
        )))
    }
}

/// `spec.source` from the flags, filled from git where they are unset (best effort: no git,
/// or not a repository, leaves them empty).
fn source_of(args: &Args) -> Result<Option<DeploySource>, DeployError> {
    let commit = args
        .commit
        .clone()
        .or_else(|| git(&args.dir, &["rev-parse", "HEAD"]));
    let branch = args
        .branch
        .clone()
        .or_else(|| git(&args.dir, &["symbolic-ref", "--short", "-q", "HEAD"]));
    source(commit, branch, args.message.clone())
}

/// Checks source metadata the way the CRD does, so the error names the flag.
fn source(
    commit: Option<String>,
    branch: Option<String>,
    message: Option<String>,
) -> Result<Option<DeploySource>, DeployError> {
    let hex = |c: &str| {
        c.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if let Some(c) = &commit
        && (!(7..=64).contains(&c.len()) || !hex(c))
    {
        return Err(DeployError::Input(format!(
            "--commit {c:?} must be 7 to 64 lowercase hex digits"
        )));
    }
    if let Some(b) = &branch
        && b.len() > 255
    {
        return Err(DeployError::Input(
            "--branch must be at most 255 characters".into(),
        ));
    }
    if let Some(m) = &message
        && m.len() > 4096
    {
        return Err(DeployError::Input(
            "--message must be at most 4096 bytes".into(),
        ));
    }
    if commit.is_none() && branch.is_none() && message.is_none() {
        return Ok(None);
    }
    Ok(Some(DeploySource {
        commit,
        branch,
        message,
    }))
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The Deploy's name: `<site>-<first 10 hex of the manifest digest>`, plus `-preview` for
/// previews (a Deploy's spec is immutable, so the same content as preview and production needs
/// two names). The same content always gets the same name, so deploying again is a no-op.
///
/// The operator serves a deploy on `<deploy>--<site>.<namespace>.<preview domain>`, whose first
/// label must fit in 63 characters, so the site part is shortened for long site names (and
/// dropped for very long ones).
pub fn deploy_name(site: &str, manifest: &Digest, context: DeployContext) -> String {
    let hex = manifest.hex();
    let hex = &hex[..10];
    let suffix = match context {
        DeployContext::Production => "",
        DeployContext::Preview => "-preview",
    };
    let room = 63usize
        .saturating_sub(site.len() + "--".len())
        .saturating_sub(hex.len() + suffix.len() + "-".len());
    let prefix = site[..site.len().min(room)].trim_end_matches('-');
    if prefix.is_empty() {
        format!("{hex}{suffix}")
    } else {
        format!("{prefix}-{hex}{suffix}")
    }
}

/// The Deploy object the CLI creates or emits.
pub fn desired_deploy(
    name: &str,
    namespace: Option<&str>,
    site: &str,
    manifest: Digest,
    context: DeployContext,
    source: Option<DeploySource>,
) -> Deploy {
    let mut deploy = Deploy::new(
        name,
        DeploySpec {
            site: site.to_string(),
            manifest,
            context,
            source,
        },
    );
    deploy.metadata = ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some([(cluster::SITE_LABEL.to_string(), site.to_string())].into()),
        ..ObjectMeta::default()
    };
    deploy
}

/// The Deploy as a YAML document for `kubectl apply -f`.
pub fn deploy_yaml(deploy: &Deploy) -> String {
    // A Deploy is plain data with string keys: serialising cannot fail.
    serde_yaml_ng::to_string(deploy).unwrap_or_default()
}

/// Writes the YAML to `path` (whole or not at all) or stdout, and the name to stdout.
fn emit(path: &Path, deploy: &Deploy) -> Result<(), DeployError> {
    let yaml = deploy_yaml(deploy);
    let err = |source| DeployError::Emit {
        path: path.to_path_buf(),
        source,
    };
    if path == Path::new("-") {
        return std::io::stdout().write_all(yaml.as_bytes()).map_err(err);
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.kpages-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, &yaml)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(e)
        })?;
    eprintln!("wrote Deploy {} to {}", deploy.name_any(), path.display());
    println!("{}", deploy.name_any());
    Ok(())
}

/// Creates the Deploy with server-side apply, unless it exists with the same content (deploying
/// again is a no-op: the spec is immutable). Returns whether it was created.
pub async fn create(cluster: &Cluster, desired: &Deploy) -> Result<bool, DeployError> {
    let name = desired.name_any();
    let api = cluster.deploys();
    let existing = api.get_opt(&name).await.map_err(|e| {
        ClusterError::api(
            format!(
                "reading Deploy {name:?} in namespace {:?}",
                cluster.namespace
            ),
            e,
        )
    })?;
    if let Some(existing) = existing {
        let (want, have) = (&desired.spec, &existing.spec);
        if (&want.site, want.manifest, want.context) != (&have.site, have.manifest, have.context) {
            return Err(DeployError::NameTaken {
                name,
                site: have.site.clone(),
                manifest: have.manifest,
                context: have.context,
            });
        }
        if have.context == DeployContext::Production {
            check_not_older_than_active(cluster, &existing).await?;
        }
        return Ok(false);
    }
    let mut object = desired.clone();
    object.metadata.namespace = Some(cluster.namespace.clone());
    api.patch(
        &name,
        &PatchParams::apply(cluster::FIELD_MANAGER),
        &Patch::Apply(&object),
    )
    .await
    .map_err(|e| {
        ClusterError::api(
            format!(
                "creating Deploy {name:?} in namespace {:?}",
                cluster.namespace
            ),
            e,
        )
    })?;
    Ok(true)
}

/// An existing production Deploy older than the site's active one never becomes active again
/// by being deployed: say so instead of waiting for it.
async fn check_not_older_than_active(
    cluster: &Cluster,
    existing: &Deploy,
) -> Result<(), DeployError> {
    let name = existing.name_any();
    let site = cluster.site(&existing.spec.site).await?;
    if site.spec.pinned_deploy.is_some() {
        return Ok(());
    }
    let Some(active) = site.status.and_then(|s| s.active_deploy) else {
        return Ok(());
    };
    if active == name {
        return Ok(());
    }
    let Some(active_deploy) = cluster.deploys().get_opt(&active).await.ok().flatten() else {
        return Ok(());
    };
    let created = |d: &Deploy| d.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if created(&active_deploy) > created(existing) {
        return Err(DeployError::OlderThanActive {
            name,
            active,
            site: existing.spec.site.clone(),
        });
    }
    Ok(())
}

/// Waits until the Deploy is Ready (and a production deploy serves its site); returns the URL to
/// print: the site's URL for production, the preview URL otherwise.
pub async fn wait_live(
    cluster: &Cluster,
    site: &str,
    name: &str,
    context: DeployContext,
    timeout: Duration,
) -> Result<String, DeployError> {
    let started = tokio::time::Instant::now();
    let deploy = wait_for(&cluster.deploys(), name, timeout, |d: &Deploy| {
        d.status.as_ref().is_some_and(|s| {
            matches!(
                s.phase,
                DeployPhase::Ready | DeployPhase::Failed | DeployPhase::Superseded
            )
        })
    })
    .await;
    let deploy = match deploy {
        Some(d) => d,
        None => {
            let now = cluster.deploys().get_opt(name).await.ok().flatten();
            return Err(DeployError::Timeout {
                what: format!("Deploy {name} to become Ready"),
                site: site.to_string(),
                timeout,
                conditions: now
                    .and_then(|d| d.status)
                    .map(|s| s.conditions)
                    .unwrap_or_default(),
            });
        }
    };
    let status = deploy.status.clone().unwrap_or_default();
    let preview = status
        .preview_url
        .clone()
        .unwrap_or_else(|| name.to_string());
    match status.phase {
        DeployPhase::Failed => {
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
            return Err(DeployError::Failed {
                name: name.to_string(),
                reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
                message: ready.map(|c| c.message.clone()).unwrap_or_default(),
            });
        }
        DeployPhase::Superseded => {
            eprintln!(
                "Deploy {name} is an older deploy, scaled to zero and kept for rollback; its preview host still serves it"
            );
            return Ok(preview);
        }
        _ => {}
    }
    eprintln!("Deploy {name} is Ready at {preview}");
    if context != DeployContext::Production {
        return Ok(preview);
    }

    let site_obj = cluster.site(site).await?;
    if let Some(pinned) = site_obj.spec.pinned_deploy.as_deref()
        && pinned != name
    {
        eprintln!(
            "Site {site} is pinned to {pinned}, so {name} is not live; `kpages rollback --site {site} --unpin` serves the newest deploy"
        );
        return Ok(preview);
    }
    let remaining = timeout.saturating_sub(started.elapsed());
    let live = wait_for(&cluster.sites(), site, remaining, |s: &Site| {
        s.status
            .as_ref()
            .is_some_and(|st| st.active_deploy.as_deref() == Some(name))
    })
    .await;
    match live {
        Some(s) => {
            let url = s.status.and_then(|st| st.url).unwrap_or(preview);
            eprintln!("Site {site} now serves {name}");
            Ok(url)
        }
        None => Err(DeployError::Timeout {
            what: format!("Site {site} to serve Deploy {name}"),
            site: site.to_string(),
            timeout,
            conditions: cluster
                .sites()
                .get_opt(site)
                .await
                .ok()
                .flatten()
                .and_then(|s| s.status)
                .map(|s| s.conditions)
                .unwrap_or_default(),
        }),
    }
}

/// Watches one object until `done` holds for it, or `timeout` passes (`None`). Watch errors
/// are retried with kube's default backoff and reported once each on stderr.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    done: impl Fn(&K) -> bool,
) -> Option<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    use futures::StreamExt;
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(
        watcher(api.clone(), config)
            .default_backoff()
            .applied_objects()
    );
    let mut reported = std::collections::BTreeSet::new();
    let watch = async {
        while let Some(item) = events.next().await {
            match item {
                Ok(object) if done(&object) => return Some(object),
                Ok(_) => {}
                Err(e) => {
                    if reported.insert(e.to_string()) {
                        eprintln!("kpages: watching {name}: {e} (retrying)");
                    }
                }
            }
        }
        None
    };
    tokio::time::timeout(timeout, watch).await.ok().flatten()
}

#[cfg(test)]
mod tests;
