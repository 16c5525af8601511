//! The queue's settings: the router's `--nats-*` and `--queue-*` flags and what they become.

use std::time::Duration;

use super::DEFAULT_INLINE_BODY_MAX;
use super::envelope::token;

/// Settings of the JetStream queue.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// NATS server URL(s), comma-separated.
    pub url: String,
    /// Credentials.
    pub auth: NatsAuth,
    /// The jobs stream's name; the dead letters are `<stream>_DEAD`, statuses `<stream>_CALLS`.
    pub stream: String,
    /// Replicas of the streams and the status bucket (1, 3 or 5 in a NATS cluster).
    pub replicas: usize,
    /// Wait before each retry; its length is the number of retries.
    pub backoff: Vec<Duration>,
    /// Jobs this router runs at once.
    pub workers: usize,
    /// Jobs of one function this router runs at once.
    pub function_concurrency: usize,
    /// How long JetStream waits for an ack or progress before redelivering.
    pub ack_wait: Duration,
    /// How long JetStream remembers message ids to drop re-submissions.
    pub dedup_window: Duration,
    /// How long call statuses are kept.
    pub status_ttl: Duration,
    /// How long a publish may wait for JetStream's ack before the client gets 503.
    pub publish_timeout: Duration,
    /// Bodies up to this size travel inline.
    pub inline_body_max: usize,
    /// Delay before a message for a function at its concurrency limit comes back.
    pub busy_delay: Duration,
    /// Hosts `X-Callback-Url` may name (`*`: any); empty: callbacks refused.
    pub callback_hosts: Vec<String>,
    /// Wall time of a callback POST.
    pub callback_timeout: Duration,
}

impl JetStreamConfig {
    /// Defaults for `url`: 1 replica, retries after 1 and 2 minutes, 16 workers, 4 per
    /// function, 30 s ack wait, 10 min dedup window, statuses kept 7 days.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            auth: NatsAuth::default(),
            stream: "KPAGES_JOBS".into(),
            replicas: 1,
            backoff: vec![Duration::from_secs(60), Duration::from_secs(120)],
            workers: 16,
            function_concurrency: 4,
            ack_wait: Duration::from_secs(30),
            dedup_window: Duration::from_secs(600),
            status_ttl: Duration::from_secs(7 * 24 * 3600),
            publish_timeout: Duration::from_secs(5),
            inline_body_max: DEFAULT_INLINE_BODY_MAX,
            busy_delay: Duration::from_secs(1),
            callback_hosts: vec![],
            callback_timeout: Duration::from_secs(10),
        }
    }

    pub(super) fn dead_stream(&self) -> String {
        format!("{}_DEAD", self.stream)
    }

    pub(super) fn calls_bucket(&self) -> String {
        format!("{}_CALLS", self.stream)
    }

    pub(super) fn job_subject(&self, site: &str, function: &str) -> String {
        format!("{}.{}.{}", self.stream, token(site), token(function))
    }

    pub(super) fn dead_subject(&self, site: &str, function: &str) -> String {
        format!("{}.{}.{}", self.dead_stream(), token(site), token(function))
    }

    /// Attempts before a job is dead-lettered.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.backoff.len()).unwrap_or(u32::MAX - 1) + 1
    }
}

/// How the router authenticates to NATS (the chart passes these as `NATS_*` environment).
#[derive(Debug, Clone, Default)]
pub struct NatsAuth {
    /// User (with `password`).
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Token.
    pub token: Option<String>,
    /// A credentials (`.creds`) file's contents.
    pub creds: Option<String>,
}

/// The queue's router flags (`#[command(flatten)]` into the binary's arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct QueueArgs {
    /// NATS URL of the JetStream background queue (`nats://host:4222`, several
    /// comma-separated). Without it background jobs stay in the router process and are lost
    /// when it stops (`kpages dev`).
    #[arg(long, env = "KPAGES_NATS_URL")]
    pub nats_url: Option<String>,
    /// NATS user (with NATS_PASSWORD).
    #[arg(long, env = "NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password.
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// NATS token.
    #[arg(long, env = "NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// Contents of a NATS credentials (.creds) file.
    #[arg(long, env = "NATS_CREDS", hide_env_values = true)]
    pub nats_creds: Option<String>,
    /// JetStream stream of background jobs; dead letters go to <name>_DEAD, call statuses to
    /// the KV bucket <name>_CALLS.
    #[arg(long, env = "KPAGES_QUEUE_STREAM", default_value = "KPAGES_JOBS")]
    pub queue_stream: String,
    /// Replicas of the queue's streams and status bucket (1, 3 or 5).
    #[arg(long, env = "KPAGES_QUEUE_REPLICAS", default_value_t = 1)]
    pub queue_replicas: usize,
    /// Waits before the retries of a failed background job, comma-separated (`1m,2m`: three
    /// attempts); empty: no retries.
    #[arg(long, env = "KPAGES_QUEUE_BACKOFF", default_value = "1m,2m", value_parser = parse_backoff)]
    pub queue_backoff: Backoff,
    /// Background jobs this router runs at once.
    #[arg(long, env = "KPAGES_QUEUE_WORKERS", default_value_t = 16)]
    pub queue_workers: usize,
    /// Background jobs of one function this router runs at once.
    #[arg(long, env = "KPAGES_QUEUE_FUNCTION_CONCURRENCY", default_value_t = 4)]
    pub queue_function_concurrency: usize,
    /// Time without progress after which JetStream gives a job to another worker.
    #[arg(long, env = "KPAGES_QUEUE_ACK_WAIT", default_value = "30s", value_parser = parse_duration)]
    pub queue_ack_wait: Duration,
    /// Window in which a re-submitted Idempotency-Key is dropped by JetStream itself.
    #[arg(long, env = "KPAGES_QUEUE_DEDUP_WINDOW", default_value = "10m", value_parser = parse_duration)]
    pub queue_dedup_window: Duration,
    /// How long call statuses (GET /calls/<id>) are kept.
    #[arg(long, env = "KPAGES_QUEUE_STATUS_TTL", default_value = "7d", value_parser = parse_duration)]
    pub queue_status_ttl: Duration,
    /// Hosts an X-Callback-Url may name (comma-separated, `*` for any); none: callbacks are
    /// refused with 400.
    #[arg(long, env = "KPAGES_QUEUE_CALLBACK_HOSTS", value_delimiter = ',')]
    pub queue_callback_hosts: Vec<String>,
}

/// Retry waits, parsed from `1m,2m`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff(pub Vec<Duration>);

/// Parses a duration flag: `250ms`, `30s`, `2m`, `1h`, `7d`, `1h 30m` (humantime's forms), or
/// a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{s:?} is too large a number of seconds"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}; expected e.g. 250ms, 30s, 2m, 1h, 7d)"))
}

/// Parses a comma-separated list of durations; empty is no retries.
pub fn parse_backoff(s: &str) -> Result<Backoff, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_duration)
        .collect::<Result<_, _>>()
        .map(Backoff)
}

impl QueueArgs {
    /// The queue's settings, or `None` without a NATS URL (the in-process queue).
    pub fn config(&self) -> Option<JetStreamConfig> {
        let url = self
            .nats_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())?;
        let mut c = JetStreamConfig::new(url);
        c.auth = NatsAuth {
            user: self.nats_user.clone(),
            password: self.nats_password.clone(),
            token: self.nats_token.clone(),
            creds: self.nats_creds.clone(),
        };
        c.stream = self.queue_stream.clone();
        c.replicas = self.queue_replicas.max(1);
        c.backoff = self.queue_backoff.0.clone();
        c.workers = self.queue_workers.max(1);
        c.function_concurrency = self.queue_function_concurrency.max(1);
        c.ack_wait = self.queue_ack_wait.max(Duration::from_millis(300));
        c.dedup_window = self.queue_dedup_window;
        c.status_ttl = self.queue_status_ttl;
        c.callback_hosts = self
            .queue_callback_hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_backoffs_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(
            parse_backoff("1m, 2m"),
            Ok(Backoff(vec![
                Duration::from_secs(60),
                Duration::from_secs(120)
            ]))
        );
        assert_eq!(parse_backoff(""), Ok(Backoff(vec![])));
    }

    #[test]
    fn flags_default_to_the_documented_queue() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            queue: QueueArgs,
        }
        let none = Cli::try_parse_from(["r"]).unwrap();
        assert!(none.queue.config().is_none());
        let empty = Cli::try_parse_from(["r", "--nats-url", " "]).unwrap();
        assert!(
            empty.queue.config().is_none(),
            "the chart passes an empty URL"
        );
        let c = Cli::try_parse_from([
            "r",
            "--nats-url",
            "nats://n:4222",
            "--queue-replicas",
            "3",
            "--queue-callback-hosts",
            "Hooks.example.com,*",
        ])
        .unwrap()
        .queue
        .config()
        .unwrap();
        assert_eq!(c.url, "nats://n:4222");
        assert_eq!(c.replicas, 3);
        assert_eq!(c.max_attempts(), 3);
        assert_eq!(
            c.backoff,
            vec![Duration::from_secs(60), Duration::from_secs(120)]
        );
        assert_eq!(c.callback_hosts, vec!["hooks.example.com", "*"]);
        assert_eq!(c.job_subject("my.site", "send"), "KPAGES_JOBS.my_site.send");
        assert_eq!(c.dead_subject("s", "f"), "KPAGES_JOBS_DEAD.s.f");
    }
}
