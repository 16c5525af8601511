//! What `kpages deploy`, `rollback` and `status` share about the cluster: how to connect, which
//! namespace, how to find a Site and its Deploys, and errors that say what to do next.
//!
//! ```text
//!  --kubeconfig FILE | $KUBECONFIG | ~/.kube/config | in-cluster ──► kube::Client
//!  --namespace NS    | the kubeconfig context's namespace | "default" ──► namespace
//!  Site (get) ──► Deploys whose spec.site names it (list, filtered client-side)
//! ```

use std::path::PathBuf;
use std::time::Duration;

use kpages_crds::{Deploy, Site};
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Field manager of every write the CLI makes, so `kubectl get --show-managed-fields` says who
/// set a field.
pub const FIELD_MANAGER: &str = "kpages-cli";

/// Label the CLI puts on Deploys it creates, so `kubectl get kd -l kpages.dev/site=NAME` works.
pub const SITE_LABEL: &str = "kpages.dev/site";

/// Flags every cluster command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Namespace of the Site (default: the kubeconfig context's namespace, else `default`).
    #[arg(long, short = 'n', value_name = "NS")]
    pub namespace: Option<String>,
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then the in-cluster service
    /// account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

/// Why a cluster command failed. Each message names the object and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No kubeconfig or in-cluster configuration could be loaded.
    #[error(
        "cannot reach Kubernetes: {0}; set KUBECONFIG or pass --kubeconfig FILE (and --context NAME)"
    )]
    Config(String),
    /// The kpages CRDs are not installed.
    #[error(
        "the kpages CRDs are not installed in this cluster ({0}); install them with `kpages crd | kubectl apply -f -` or the Helm chart"
    )]
    NoCrds(String),
    /// The Site does not exist.
    #[error(
        "Site {site:?} not found in namespace {namespace:?}; create it first, e.g.\n  kubectl apply -n {namespace} -f - <<EOF\n  apiVersion: kpages.dev/v1alpha1\n  kind: Site\n  metadata:\n    name: {site}\n  EOF\n(or pass --namespace NS if it lives elsewhere)"
    )]
    SiteNotFound {
        /// The site.
        site: String,
        /// Where it was looked for.
        namespace: String,
    },
    /// A call to the API server failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done, in the user's words.
        what: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

impl ClusterError {
    /// Wraps an API error, recognising "the resource type does not exist" (CRDs missing).
    pub fn api(what: impl Into<String>, source: kube::Error) -> Self {
        if let kube::Error::Api(status) = &source
            && status.code == 404
            && status.details.as_ref().is_none_or(|d| d.name.is_empty())
        {
            return Self::NoCrds(status.message.clone());
        }
        Self::Api {
            what: what.into(),
            source,
        }
    }
}

/// A connected client and the namespace the command works in.
#[derive(Clone)]
pub struct Cluster {
    /// The client.
    pub client: Client,
    /// The namespace.
    pub namespace: String,
}

impl Cluster {
    /// Connects as `kubectl` would.
    pub async fn connect(args: &ClusterArgs) -> Result<Self, ClusterError> {
        let options = KubeConfigOptions {
            context: args.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match &args.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?;
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| e.to_string())
            }
            None if args.context.is_some() => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| e.to_string()),
            None => Config::infer().await.map_err(|e| e.to_string()),
        }
        .map_err(ClusterError::Config)?;
        let client = Client::try_from(config).map_err(|e| ClusterError::Config(e.to_string()))?;
        Ok(Self::new(client, args.namespace.as_deref()))
    }

    /// Uses `client`, in `namespace` or else the client's default namespace.
    pub fn new(client: Client, namespace: Option<&str>) -> Self {
        let namespace = namespace
            .map(str::to_string)
            .unwrap_or_else(|| client.default_namespace().to_string());
        Self { client, namespace }
    }

    /// The Sites of the namespace.
    pub fn sites(&self) -> Api<Site> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The Deploys of the namespace.
    pub fn deploys(&self) -> Api<Deploy> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The Site, or an error that says how to create it.
    pub async fn site(&self, name: &str) -> Result<Site, ClusterError> {
        match self.sites().get(name).await {
            Ok(site) => Ok(site),
            Err(kube::Error::Api(status))
                if status.code == 404
                    && status.details.as_ref().is_some_and(|d| !d.name.is_empty()) =>
            {
                Err(ClusterError::SiteNotFound {
                    site: name.to_string(),
                    namespace: self.namespace.clone(),
                })
            }
            Err(e) => Err(ClusterError::api(
                format!("reading Site {name:?} in namespace {:?}", self.namespace),
                e,
            )),
        }
    }

    /// Every Deploy whose `spec.site` names `site` (whoever created it: the CLI labels its
    /// Deploys, kubectl users may not).
    pub async fn site_deploys(&self, site: &str) -> Result<Vec<Deploy>, ClusterError> {
        let list = self
            .deploys()
            .list(&ListParams::default())
            .await
            .map_err(|e| {
                ClusterError::api(
                    format!("listing Deploys in namespace {:?}", self.namespace),
                    e,
                )
            })?;
        Ok(list
            .items
            .into_iter()
            .filter(|d| d.spec.site == site)
            .collect())
    }
}

/// Parses a duration: `90` or `90s`, `5m`, `1h`, `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration; use e.g. 90s, 5m, 1h or 1m30s");
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = total.saturating_add(n.saturating_mul(unit));
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// A short age like `kubectl get` prints: `42s`, `7m`, `3h`, `12d`.
pub fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_the_forms_people_type() {
        for (text, secs) in [
            ("90", 90),
            ("90s", 90),
            ("5m", 300),
            ("1h", 3600),
            ("1m30s", 90),
            ("0", 0),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in ["", "5x", "m", "1.5m", "5m3"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("90s, 5m"), "{bad}: {err}");
        }
    }

    #[test]
    fn ages_like_kubectl() {
        assert_eq!(age(-3), "0s");
        assert_eq!(age(42), "42s");
        assert_eq!(age(7 * 60 + 5), "7m");
        assert_eq!(age(3 * 3600), "3h");
        assert_eq!(age(12 * 86400), "12d");
    }
}
