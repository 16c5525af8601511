//! The in-process cron scheduler of `kpages dev` (clusters use CronJobs): runs each
//! scheduled function of every site's production deploy at its next time, re-planning
//! whenever the routing table changes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kpages_crds::manifest::InvocationKind;

use crate::jobs::queue::Runner;
use crate::jobs::runner::FunctionRunner;
use crate::table::Routes;
use kpages_crds::schedule::Schedule;

/// A clock in Unix seconds; injectable so tests can run on Tokio's paused time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    })
}

/// Runs scheduled functions until `shutdown` completes. Runs are spawned, so a slow
/// function never delays another's schedule.
pub async fn run(
    routes: Arc<Routes>,
    runner: Arc<dyn Runner>,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
) {
    let mut changed = routes.subscribe();
    tokio::pin!(shutdown);
    loop {
        let now = clock();
        let table = routes.load();
        let mut due_at: Option<i64> = None;
        let mut plan = Vec::new();
        for site in table.sites() {
            if !site.deploy.production {
                continue;
            }
            for f in &site.deploy.routes.manifest.functions {
                if f.invocation != InvocationKind::Scheduled {
                    continue;
                }
                let Some(schedule) = f.schedule.as_deref() else {
                    continue;
                };
                let schedule: Schedule = match schedule.parse() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(site = %site.name, function = %f.name, error = %e, "schedule ignored");
                        continue;
                    }
                };
                if let Some(next) = schedule.next_after(now) {
                    due_at = Some(due_at.map_or(next, |d: i64| d.min(next)));
                    plan.push((site.clone(), f.name.clone(), schedule, next));
                }
            }
        }
        let wait = due_at.map(|t| Duration::from_secs((t - now).max(0) as u64));
        tokio::select! {
            () = &mut shutdown => return,
            r = changed.changed() => {
                if r.is_err() {
                    return;
                }
                continue;
            }
            () = sleep_or_forever(wait) => {}
        }
        let Some(due) = due_at else { continue };
        for (site, name, schedule, next) in plan {
            if next != due {
                continue;
            }
            let job = FunctionRunner::schedule_job(
                &site.name,
                &site.deploy,
                &name,
                schedule.next_after(due),
            );
            let run = runner.run(job);
            tokio::spawn(async move {
                match run.await {
                    Ok(()) => {
                        tracing::info!(site = %site.name, function = %name, "scheduled run done")
                    }
                    Err(e) => {
                        tracing::error!(site = %site.name, function = %name, error = %e, "scheduled run failed")
                    }
                }
            });
        }
        // Move past the minute just run so it is not planned again.
        while clock() < due + 1 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => futures::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::queue::{BoxFuture, Job, RunError};
    use crate::table::{Deploy, RouteTable, Site};
    use kpages_crds::Manifest;
    use kpages_routing::resolve::CompiledDeploy;
    use tokio::sync::mpsc;

    struct Record(mpsc::UnboundedSender<(String, String, i64)>, Clock);

    impl Runner for Record {
        fn run(&self, job: Job) -> BoxFuture<'static, Result<(), RunError>> {
            let body: serde_json::Value = serde_json::from_slice(&job.body).unwrap();
            let next = body["next_run"].as_str().unwrap_or("").to_string();
            let _ = self.0.send((job.function, next, (self.1)()));
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn scheduled_functions_run_on_time_with_next_run() {
        let start = tokio::time::Instant::now();
        // 2024-05-15T10:30:30Z
        let base = 1_715_769_030;
        let clock: Clock = Arc::new(move || base + start.elapsed().as_secs() as i64);
        let mut m = Manifest::new();
        m.functions.push(kpages_testsupport::fixtures::scheduled(
            "tick",
            "*/15 * * * *",
        ));
        let routes = Arc::new(Routes::new(RouteTable::single(Site {
            routes: Default::default(),
            name: "s".into(),
            deploy: Arc::new(Deploy::new(
                "d",
                Arc::new(CompiledDeploy::compile(Arc::new(m))),
                Vec::new(),
                true,
            )),
        })));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let runner = Arc::new(Record(tx, clock.clone()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(routes, runner, clock, async {
            let _ = stop_rx.await;
        }));
        let (name, next, at) = rx.recv().await.unwrap();
        assert_eq!(name, "tick");
        assert_eq!(
            kpages_crds::schedule::iso8601(at),
            "2024-05-15T10:45:00.000Z"
        );
        assert_eq!(next, "2024-05-15T11:00:00.000Z");
        let (_, next, at) = rx.recv().await.unwrap();
        assert_eq!(
            kpages_crds::schedule::iso8601(at),
            "2024-05-15T11:00:00.000Z"
        );
        assert_eq!(next, "2024-05-15T11:15:00.000Z");
        let _ = stop_tx.send(());
        task.await.unwrap();
    }
}
