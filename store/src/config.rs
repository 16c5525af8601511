//! Which backend a store URL names, and how to open it.
//!
//! | URL                                                        | backend                 |
//! |------------------------------------------------------------|-------------------------|
//! | `file:///var/lib/kpages` or `/var/lib/kpages`              | local filesystem        |
//! | `s3://bucket/prefix?endpoint=http://minio:9000&region=…`   | S3-compatible           |
//! | `memory://`                                                | in memory (tests)       |
//!
//! S3 credentials come from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`), as every S3 tool expects, never from the URL, so URLs can be logged.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, RetryConfig};

use crate::{BlobStore, StoreError};

/// A parsed store location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A directory on the local filesystem.
    Local(PathBuf),
    /// An S3-compatible bucket.
    S3(S3Config),
    /// Process memory.
    Memory,
}

/// An S3-compatible bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`).
    pub prefix: String,
    /// Endpoint URL for S3-compatible servers (MinIO, R2, Ceph); AWS when unset.
    pub endpoint: Option<String>,
    /// Region (`us-east-1` when unset; most S3-compatible servers accept any).
    pub region: String,
    /// Path-style requests (`endpoint/bucket/key`), which MinIO and Ceph need.
    pub path_style: bool,
    /// Explicit credentials; when unset they come from the environment.
    pub credentials: Option<S3Credentials>,
}

/// An S3 access key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish()
    }
}

const ACCEPTED: &str = "use file:///dir, a plain directory path, s3://bucket[/prefix][?endpoint=URL&region=R&path_style=true|false] or memory://";

impl StoreConfig {
    /// Parses a store URL (see the module docs).
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = |why: String| StoreError::Config(format!("{why}; {ACCEPTED}"));
        if url == "memory://" || url == "memory:" {
            return Ok(Self::Memory);
        }
        if !url.contains("://") {
            if url.is_empty() {
                return Err(bad("empty store URL".into()));
            }
            return Ok(Self::Local(PathBuf::from(url)));
        }
        let parsed =
            url::Url::parse(url).map_err(|e| bad(format!("{url:?} is not a URL ({e})")))?;
        match parsed.scheme() {
            "file" => {
                let path = parsed
                    .to_file_path()
                    .map_err(|()| bad(format!("{url:?} is not an absolute file URL")))?;
                Ok(Self::Local(path))
            }
            "s3" => {
                let bucket = parsed.host_str().unwrap_or_default().to_string();
                if bucket.is_empty() {
                    return Err(bad(format!("{url:?} names no bucket")));
                }
                let mut config = S3Config {
                    bucket,
                    prefix: parsed.path().trim_matches('/').to_string(),
                    endpoint: None,
                    region: "us-east-1".into(),
                    path_style: false,
                    credentials: None,
                };
                for (key, value) in parsed.query_pairs() {
                    match key.as_ref() {
                        "endpoint" => {
                            config.endpoint = Some(value.into_owned());
                            // S3-compatible servers almost always want path-style requests.
                            config.path_style = true;
                        }
                        "region" => config.region = value.into_owned(),
                        "path_style" => {
                            config.path_style = match value.as_ref() {
                                "true" => true,
                                "false" => false,
                                other => {
                                    return Err(bad(format!(
                                        "path_style={other:?} must be true or false"
                                    )));
                                }
                            }
                        }
                        other => return Err(bad(format!("unknown s3 URL parameter {other:?}"))),
                    }
                }
                Ok(Self::S3(config))
            }
            other => Err(bad(format!("unsupported store URL scheme {other:?}"))),
        }
    }

    /// The `object_store` backend and the key prefix blobs live under.
    pub fn object_store(&self) -> Result<(Arc<dyn ObjectStore>, String), StoreError> {
        self.object_store_with(None)
    }

    fn object_store_with(
        &self,
        retry: Option<RetryConfig>,
    ) -> Result<(Arc<dyn ObjectStore>, String), StoreError> {
        match self {
            Self::Memory => Ok((
                Arc::new(object_store::memory::InMemory::new()),
                String::new(),
            )),
            Self::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                    path: dir.clone(),
                    source,
                })?;
                let fs = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| StoreError::Config(format!("{}: {e}", dir.display())))?
                    .with_automatic_cleanup(true);
                Ok((Arc::new(fs), String::new()))
            }
            Self::S3(s3) => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_virtual_hosted_style_request(!s3.path_style);
                if let Some(creds) = &s3.credentials {
                    builder = builder
                        .with_access_key_id(&creds.access_key_id)
                        .with_secret_access_key(&creds.secret_access_key);
                }
                if let Some(retry) = retry {
                    builder = builder.with_retry(retry);
                }
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                let store = builder
                    .build()
                    .map_err(|e| StoreError::Config(e.to_string()))?;
                Ok((Arc::new(store), s3.prefix.clone()))
            }
        }
    }

    /// Opens the store.
    pub fn open(&self) -> Result<BlobStore, StoreError> {
        self.open_with_retry(None)
    }

    /// Opens the store with its own request retry policy instead of `object_store`'s default
    /// (10 retries over up to 3 minutes). An interactive command that retries whole uploads
    /// itself wants a short one, so an unreachable store is reported in seconds. Only network
    /// backends retry; `None` keeps the default.
    pub fn open_with_retry(&self, retry: Option<RetryConfig>) -> Result<BlobStore, StoreError> {
        let (inner, prefix) = self.object_store_with(retry)?;
        Ok(BlobStore::with_object_store(
            inner,
            &prefix,
            &self.to_string(),
        ))
    }
}

impl std::fmt::Display for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(dir) => write!(f, "file://{}", dir.display()),
            Self::Memory => f.write_str("memory://"),
            Self::S3(s3) => {
                write!(f, "s3://{}/{}", s3.bucket, s3.prefix)?;
                if let Some(endpoint) = &s3.endpoint {
                    write!(f, " at {endpoint}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backends() {
        assert_eq!(
            StoreConfig::parse("memory://").unwrap(),
            StoreConfig::Memory
        );
        assert_eq!(
            StoreConfig::parse("/srv/blobs").unwrap(),
            StoreConfig::Local("/srv/blobs".into())
        );
        assert_eq!(
            StoreConfig::parse("file:///srv/blobs").unwrap(),
            StoreConfig::Local("/srv/blobs".into())
        );
        assert_eq!(
            StoreConfig::parse("s3://sites/prod/?endpoint=http://127.0.0.1:9000&region=eu-1")
                .unwrap(),
            StoreConfig::S3(S3Config {
                bucket: "sites".into(),
                prefix: "prod".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: "eu-1".into(),
                path_style: true,
                credentials: None,
            })
        );
        let aws = StoreConfig::parse("s3://sites").unwrap();
        assert!(matches!(
            aws,
            StoreConfig::S3(S3Config {
                path_style: false,
                endpoint: None,
                ..
            })
        ));
    }

    #[test]
    fn bad_urls_say_what_is_accepted() {
        for (url, why) in [
            ("ftp://x/y", "unsupported store URL scheme \"ftp\""),
            ("s3:///prefix", "names no bucket"),
            ("s3://b?path_style=maybe", "must be true or false"),
            ("s3://b?secret=x", "unknown s3 URL parameter"),
            ("", "empty store URL"),
        ] {
            let err = StoreConfig::parse(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
            assert!(err.contains("s3://bucket"), "{url}: {err}");
        }
    }
}
