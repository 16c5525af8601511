//! Schedule jobs: one CronJob per scheduled function of the site's active production deploy,
//! whose pod asks the router to run the function (`kpages-operator trigger-schedule`).

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kpages_crds::manifest::{Function, InvocationKind};

use super::Ctx;
use super::pod::{pod_security, resources, restricted};
use crate::names;

impl Ctx<'_> {
    pub(super) fn cron_jobs(&self) -> Vec<CronJob> {
        self.inputs
            .manifest
            .functions
            .iter()
            .filter(|f| f.invocation == InvocationKind::Scheduled)
            .filter_map(|f| f.schedule.as_ref().map(|s| (f, s)))
            .map(|(f, schedule)| self.cron_job(f, schedule))
            .collect()
    }

    fn cron_job(&self, f: &Function, schedule: &str) -> CronJob {
        let mut labels = self.labels();
        labels.insert(names::FUNCTION_LABEL.into(), names::label_value(&f.name));
        let mut pod_labels = labels.clone();
        pod_labels.insert(names::COMPONENT_LABEL.into(), "schedule".into());
        let timeout = f
            .limits
            .background_timeout_seconds
            .unwrap_or(self.defaults().background_timeout_seconds);
        let pod = PodSpec {
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(pod_security(self.settings.run_as_user)),
            containers: vec![Container {
                name: "trigger".into(),
                image: Some(self.settings.kpages_image.clone()),
                image_pull_policy: Some("IfNotPresent".into()),
                command: Some(vec!["kpages-operator".into(), "trigger-schedule".into()]),
                args: Some(vec![
                    "--router".into(),
                    self.settings.router_admin_url.clone(),
                    "--namespace".into(),
                    self.namespace.clone(),
                    "--site".into(),
                    self.site_name().to_string(),
                    "--function".into(),
                    f.name.clone(),
                    "--schedule".into(),
                    schedule.to_string(),
                    "--timeout-seconds".into(),
                    timeout.to_string(),
                ]),
                resources: Some(resources(
                    &[("cpu", "10m"), ("memory", "16Mi")],
                    &[("memory", "64Mi")],
                )),
                security_context: Some(restricted()),
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        };
        CronJob {
            metadata: self.meta(names::cron_job_name(&self.deploy_name, &f.name), labels),
            spec: Some(CronJobSpec {
                schedule: schedule.to_string(),
                time_zone: Some("Etc/UTC".into()),
                concurrency_policy: Some("Forbid".into()),
                starting_deadline_seconds: Some(300),
                successful_jobs_history_limit: Some(1),
                failed_jobs_history_limit: Some(3),
                job_template: JobTemplateSpec {
                    metadata: None,
                    spec: Some(JobSpec {
                        backoff_limit: Some(2),
                        active_deadline_seconds: Some(i64::from(timeout) + 120),
                        ttl_seconds_after_finished: Some(3600),
                        template: PodTemplateSpec {
                            metadata: Some(ObjectMeta {
                                labels: Some(pod_labels),
                                ..ObjectMeta::default()
                            }),
                            spec: Some(pod),
                        },
                        ..JobSpec::default()
                    }),
                },
                ..CronJobSpec::default()
            }),
            status: None,
        }
    }
}
