//! `kpages status --site NAME`: the site's URL, the deploy serving it, its conditions and its
//! deploys (newest first), as text for people or JSON (`--output json`) for scripts.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kpages_crds::{Deploy, DeployContext, DeployPhase, Site};
use kube::ResourceExt;
use serde::Serialize;

use crate::cluster::{self, Cluster, ClusterArgs, ClusterError};
use crate::rollback::{DeployRow, newest_first};

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// A summary and a table.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of `kpages status`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The Site.
    #[arg(long, value_name = "NAME")]
    site: String,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Output,
}

/// A site's state, as printed.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SiteReport {
    /// Site name.
    pub site: String,
    /// Namespace.
    pub namespace: String,
    /// Primary URL.
    pub url: Option<String>,
    /// Every URL.
    pub urls: Vec<String>,
    /// The deploy serving production traffic.
    pub active_deploy: Option<String>,
    /// `spec.pinnedDeploy`.
    pub pinned_deploy: Option<String>,
    /// The Site's conditions.
    pub conditions: Vec<Condition>,
    /// Deploys, newest first.
    pub deploys: Vec<DeployReport>,
}

/// One deploy, as printed.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeployReport {
    /// Name.
    pub name: String,
    /// Production or preview.
    pub context: DeployContext,
    /// Phase.
    pub phase: DeployPhase,
    /// Whether it serves the site.
    pub active: bool,
    /// Creation time (RFC 3339).
    pub created: Option<String>,
    /// Seconds since creation.
    pub age_seconds: Option<i64>,
    /// Manifest digest.
    pub manifest: String,
    /// Preview URL.
    pub preview_url: Option<String>,
    /// Reason and message of the Ready condition when not Ready.
    pub message: Option<String>,
    /// Commit, branch, message.
    pub source: Option<kpages_crds::deploy::DeploySource>,
}

/// Gathers the report (pure).
pub fn report(site: &Site, deploys: &[Deploy], now: Timestamp) -> SiteReport {
    let status = site.status.clone().unwrap_or_default();
    let mut rows: Vec<DeployRow> = deploys.iter().map(DeployRow::of).collect();
    newest_first(&mut rows);
    let deploys = rows
        .iter()
        .filter_map(|row| deploys.iter().find(|d| d.name_any() == row.name))
        .map(|d| {
            let st = d.status.clone().unwrap_or_default();
            let created = d.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let message = st
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready" && c.status != "True")
                .map(|c| format!("{}: {}", c.reason, c.message));
            DeployReport {
                name: d.name_any(),
                context: d.spec.context,
                phase: st.phase,
                active: status.active_deploy.as_deref() == Some(d.name_any().as_str()),
                created: created.map(|t| t.to_string()),
                age_seconds: created.map(|t| now.as_second() - t.as_second()),
                manifest: d.spec.manifest.to_string(),
                preview_url: st.preview_url,
                message,
                source: d.spec.source.clone(),
            }
        })
        .collect();
    SiteReport {
        site: site.name_any(),
        namespace: site.namespace().unwrap_or_default(),
        url: status.url,
        urls: status.urls,
        active_deploy: status.active_deploy,
        pinned_deploy: site.spec.pinned_deploy.clone(),
        conditions: status.conditions,
        deploys,
    }
}

/// The text form.
pub fn render_text(r: &SiteReport) -> String {
    let mut out = String::new();
    let dash = || "-".to_string();
    out += &format!("site:      {} (namespace {})\n", r.site, r.namespace);
    out += &format!("url:       {}\n", r.url.clone().unwrap_or_else(dash));
    for extra in r.urls.iter().filter(|u| Some(*u) != r.url.as_ref()) {
        out += &format!("           {extra}\n");
    }
    let pinned = match &r.pinned_deploy {
        Some(p) => format!(
            " (pinned to {p}; `kpages rollback --site {} --unpin` serves the newest)",
            r.site
        ),
        None => String::new(),
    };
    out += &format!(
        "active:    {}{pinned}\n",
        r.active_deploy.clone().unwrap_or_else(dash)
    );
    out += "conditions:\n";
    if r.conditions.is_empty() {
        out += "  (none yet: is the operator running?)\n";
    }
    for c in &r.conditions {
        out += &format!("  {}={} {}: {}\n", c.type_, c.status, c.reason, c.message);
    }
    if r.deploys.is_empty() {
        out += &format!(
            "deploys:   none; deploy with `kpages deploy DIR --site {} --prod`\n",
            r.site
        );
        return out;
    }
    let header = [
        "", "NAME", "CONTEXT", "PHASE", "AGE", "URL", "SOURCE", "MESSAGE",
    ];
    let rows: Vec<[String; 8]> = r
        .deploys
        .iter()
        .map(|d| {
            let source = d
                .source
                .as_ref()
                .map(|s| {
                    [
                        s.branch.clone(),
                        s.commit.as_ref().map(|c| c.chars().take(7).collect()),
                        s.message
                            .as_ref()
                            .map(|m| m.lines().next().unwrap_or("").to_string()),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(dash);
            [
                if d.active { "*" } else { "" }.to_string(),
                d.name.clone(),
                format!("{:?}", d.context).to_lowercase(),
                format!("{:?}", d.phase),
                d.age_seconds.map(cluster::age).unwrap_or_else(dash),
                d.preview_url.clone().unwrap_or_else(dash),
                source,
                d.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    out += "deploys:\n";
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("  {}\n", padded.join("  ").trim_end())
    };
    out += &line(header.to_vec());
    for row in &rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Why `kpages status` failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The cluster said no.
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    /// The async runtime could not start.
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs `kpages status`.
pub fn run(args: &Args) -> Result<(), StatusError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(StatusError::Runtime)?
        .block_on(async {
            let cluster = Cluster::connect(&args.cluster).await?;
            let site = cluster.site(&args.site).await?;
            let deploys = cluster.site_deploys(&args.site).await?;
            let report = report(&site, &deploys, Timestamp::now());
            match args.output {
                Output::Text => print!("{}", render_text(&report)),
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                ),
            }
            Ok(())
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kpages_crds::{DeploySpec, DeployStatus, Digest, SiteStatus};

    fn deploy(name: &str, secs: i64, context: DeployContext, phase: DeployPhase) -> Deploy {
        let mut d = Deploy::new(
            name,
            DeploySpec {
                site: "web".into(),
                manifest: Digest::of(name.as_bytes()),
                context,
                source: None,
            },
        );
        d.metadata.creation_timestamp =
            Some(Time(Timestamp::from_second(1_700_000_000 + secs).unwrap()));
        d.status = Some(DeployStatus {
            phase,
            preview_url: Some(format!("http://{name}--web.default.preview.test")),
            ..DeployStatus::default()
        });
        d
    }

    #[test]
    fn the_report_lists_deploys_newest_first_and_marks_the_active_one() {
        let mut site = Site::new("web", Default::default());
        site.metadata.namespace = Some("team".into());
        site.status = Some(SiteStatus {
            active_deploy: Some("web-a".into()),
            url: Some("http://web.example".into()),
            ..SiteStatus::default()
        });
        let mut failed = deploy("web-b", 20, DeployContext::Preview, DeployPhase::Failed);
        failed.status.as_mut().unwrap().conditions = vec![Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: "ManifestNotFound".into(),
            message: "not in storage".into(),
            last_transition_time: Time(Timestamp::from_second(0).unwrap()),
            observed_generation: None,
        }];
        let deploys = [
            deploy("web-a", 10, DeployContext::Production, DeployPhase::Ready),
            failed,
        ];
        let now = Timestamp::from_second(1_700_000_000 + 80).unwrap();
        let r = report(&site, &deploys, now);
        assert_eq!(
            r.deploys
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>(),
            ["web-b", "web-a"]
        );
        assert!(r.deploys[1].active && !r.deploys[0].active);
        assert_eq!(r.deploys[1].age_seconds, Some(70));
        let text = render_text(&r);
        assert!(text.contains("url:       http://web.example"), "{text}");
        assert!(text.contains("active:    web-a\n"), "{text}");
        assert!(text.contains("ManifestNotFound: not in storage"), "{text}");
        let active_line = text.lines().find(|l| l.contains("web-a  ")).unwrap();
        assert!(active_line.trim_start().starts_with("*  web-a"), "{text}");
        assert!(
            active_line.contains("production") && active_line.contains("70s"),
            "{text}"
        );

        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["activeDeploy"], "web-a");
        assert_eq!(json["deploys"][0]["phase"], "Failed");
        assert_eq!(json["deploys"][1]["context"], "production");
    }
}
