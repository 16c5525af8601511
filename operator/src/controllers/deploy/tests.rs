//! The Deploy reconcile flow against a mock API server (tower-test): which calls it makes and
//! what status it writes; and the pure build stage.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use kube::runtime::events::Reporter;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::*;
use crate::desired::Settings;
use crate::fixtures::{deploy, manifest, site};
use crate::metrics::Metrics;

/// Requests seen by the mock: method, path and query, and JSON body.
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

/// Starts a mock API server answering with `answer(method, path, body)`; returns a client and
/// the log of requests.
fn mock(answer: impl Fn(&str, &str, &Value) -> (u16, Value) + Send + 'static) -> (Client, Seen) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (status, reply) = answer(&method, &path, &body);
            log.lock().unwrap().push((method, path, body));
            send.send_response(
                Response::builder()
                    .status(status)
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "team"), seen)
}

fn context(client: Client, store: kpages_store::BlobStore) -> Arc<Context> {
    Arc::new(Context::new(
        client,
        Settings::default(),
        store,
        Arc::new(Metrics::default()),
        Reporter {
            controller: "kpages-operator".into(),
            instance: None,
        },
    ))
}

/// The object as the API server returns it after a status patch.
fn with_status(object: &Value, patch: &Value) -> Value {
    let mut out = object.clone();
    out["status"] = patch["status"].clone();
    out
}

fn not_found() -> (u16, Value) {
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
    )
}

fn list(kind: &str, items: Vec<Value>) -> (u16, Value) {
    (
        200,
        json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {}, "items": items}),
    )
}

/// The status the reconcile wrote, checking that it was written by server-side apply with the
/// operator's field manager: a whole Deploy (apiVersion, kind) holding only the status.
fn status_patch(seen: &Seen) -> Value {
    let (path, body) = seen
        .lock()
        .unwrap()
        .iter()
        .find(|(m, p, _)| m == "PATCH" && p.contains("/deploys/v1/status"))
        .map(|(_, p, b)| (p.clone(), b.clone()))
        .expect("a status write");
    let query: Vec<&str> = path.split(['?', '&']).skip(1).collect();
    assert!(query.contains(&"fieldManager=kpages-operator"), "{path}");
    assert!(query.contains(&"force=true"), "{path}");
    assert_eq!(body["apiVersion"], "kpages.dev/v1alpha1", "{body}");
    assert_eq!(body["kind"], "Deploy", "{body}");
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["apiVersion", "kind", "status"],
        "only the status is applied"
    );
    body["status"].clone()
}

fn ready_condition(status: &Value) -> Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_missing_manifest_fails_the_deploy_without_creating_pods() {
    let m = manifest();
    let d = deploy("v1", &m, 0);
    let site_json = serde_json::to_value(site()).unwrap();
    let deploy_json = serde_json::to_value(&d).unwrap();
    let (client, seen) = mock(move |method, path, body| match (method, path) {
        ("GET", p) if p.starts_with("/apis/kpages.dev/v1alpha1/namespaces/team/sites/web") => {
            (200, site_json.clone())
        }
        ("PATCH", p) if p.contains("/deploys/v1/status") => (200, with_status(&deploy_json, body)),
        ("POST", p) if p.contains("/events") => (201, body.clone()),
        _ => not_found(),
    });
    let ctx = context(client, kpages_store::BlobStore::memory());
    let action = reconcile(Arc::new(DeserializeGuard(Ok(d))), ctx)
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(MISSING_RECHECK));

    let status = status_patch(&seen);
    assert_eq!(status["phase"], "Failed");
    let ready = ready_condition(&status);
    assert_eq!(ready["reason"], "ManifestNotFound");
    assert!(
        ready["message"].as_str().unwrap().contains("kpages deploy"),
        "{ready}"
    );
    let calls = seen.lock().unwrap().clone();
    assert!(
        !calls.iter().any(|(_, p, _)| p.contains("/deployments")),
        "no pods for a deploy whose manifest is missing: {calls:?}"
    );
    let event = calls
        .iter()
        .find(|(m, p, _)| m == "POST" && p.contains("/events"))
        .map(|(_, _, b)| b.clone())
        .unwrap();
    assert_eq!(event["reason"], "ManifestNotFound");
    assert_eq!(event["type"], "Warning");
}

#[tokio::test]
async fn a_deploy_with_functions_is_applied_server_side_and_reports_provisioning() {
    let store = kpages_store::BlobStore::memory();
    let mut m = manifest();
    for f in &mut m.functions {
        f.bundle = store.put_bytes(f.name.clone().into()).await.unwrap();
    }
    store.put_manifest(&m).await.unwrap();
    let mut d = deploy("v1", &m, 0);
    // Just created: within the idle period, so it gets a pod.
    d.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let site_json = serde_json::to_value(site()).unwrap();
    let deploy_json = serde_json::to_value(&d).unwrap();
    let (client, seen) = mock(move |method, path, body| match (method, path) {
        ("GET", p) if p.starts_with("/apis/kpages.dev/v1alpha1/namespaces/team/sites/web") => {
            (200, site_json.clone())
        }
        ("GET", p) if p.starts_with("/apis/kpages.dev/v1alpha1/namespaces/team/deploys?") => {
            list("Deploy", vec![deploy_json.clone()])
        }
        ("GET", p) if p.contains("/pods?") => list("Pod", vec![]),
        ("GET", p) if p.contains("/functionroutes?") || p.contains("/cronjobs?") => {
            list("PartialObjectMetadata", vec![])
        }
        ("PATCH", p) if p.contains("/deploys/v1/status") => (200, with_status(&deploy_json, body)),
        ("PATCH", _) | ("POST", _) => (200, body.clone()),
        _ => not_found(),
    });
    let ctx = context(client, store);
    let action = reconcile(Arc::new(DeserializeGuard(Ok(d))), ctx)
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(PROVISIONING_RECHECK));

    let calls = seen.lock().unwrap().clone();
    // First the Site becomes the Deploy's owner (its own field manager), so deleting the Site
    // deletes the deploy.
    let adopted = calls
        .iter()
        .find(|(m, p, _)| m == "PATCH" && p.contains("fieldManager=kpages-operator-owner"))
        .map(|(_, _, b)| b.clone())
        .expect("an owner-reference patch");
    assert_eq!(adopted["kind"], "Deploy");
    assert_eq!(adopted["metadata"]["ownerReferences"][0]["kind"], "Site");
    assert_eq!(adopted["metadata"]["ownerReferences"][0]["name"], "web");
    // …and labels it with its site, by which the plan lists the site's deploys.
    assert_eq!(adopted["metadata"]["labels"]["kpages.dev/site"], "web");
    let lists: Vec<&str> = calls
        .iter()
        .filter(|(m, p, _)| m == "GET" && p.contains("/deploys?"))
        .map(|(_, p, _)| p.as_str())
        .collect();
    assert_eq!(lists.len(), 1, "{lists:?}");
    assert!(
        lists[0].contains("labelSelector=kpages.dev%2Fsite%3Dweb")
            && lists[0].contains("resourceVersion=0"),
        "from the API server's watch cache: {lists:?}"
    );
    let applied: Vec<&str> = calls
        .iter()
        .filter(|(m, p, _)| {
            m == "PATCH"
                && p.contains("fieldManager=kpages-operator")
                && !p.contains("fieldManager=kpages-operator-owner")
                && !p.contains("/status?")
        })
        .map(|(_, _, b)| b["kind"].as_str().unwrap_or(""))
        .collect();
    // Not the active deploy yet (the Site has no status): no CronJob.
    assert_eq!(
        applied,
        [
            "Deployment",
            "Service",
            "NetworkPolicy",
            "FunctionRoute",
            "FunctionRoute"
        ]
    );
    assert!(
        calls
            .iter()
            .filter(|(m, p, _)| m == "PATCH" && p.contains("fieldManager"))
            .all(|(_, p, _)| p.contains("force=true"))
    );
    let status = status_patch(&seen);
    assert_eq!(status["phase"], "Provisioning");
    assert_eq!(ready_condition(&status)["reason"], "PodsNotReady");
    let names: Vec<&str> = status["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello", "jobs", "nightly"]);
    assert_eq!(
        status["previewUrl"],
        "https://v1--web.team.preview.kpages.localhost"
    );
    assert_eq!(status["observedGeneration"], 1);
}

#[tokio::test]
async fn a_malformed_deploy_waits_for_a_change() {
    let (client, _) = mock(|_, _, _| not_found());
    let ctx = context(client, kpages_store::BlobStore::memory());
    let guard: DeserializeGuard<Deploy> = serde_json::from_value(
        json!({"apiVersion": "kpages.dev/v1alpha1", "kind": "Deploy",
            "metadata": {"name": "bad", "namespace": "team"}, "spec": {"site": 7}}),
    )
    .unwrap();
    assert!(guard.0.is_err());
    let err = reconcile(Arc::new(guard), ctx.clone()).await.unwrap_err();
    assert!(err.is_invalid_input());
    let obj = ObjectRef::<DeserializeGuard<Deploy>>::new("bad").within("team");
    assert_eq!(
        crate::context::error_policy(CONTROLLER, &obj, &err, &ctx),
        Action::await_change()
    );
    let transient = Error::Store {
        what: "manifest".into(),
        source: kpages_store::StoreError::Config("x".into()),
    };
    assert_eq!(
        crate::context::error_policy(CONTROLLER, &obj, &transient, &ctx),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        crate::context::error_policy(CONTROLLER, &obj, &transient, &ctx),
        Action::requeue(Duration::from_secs(10)),
        "backs off"
    );
    let _ = site().name_any();
}

#[tokio::test]
async fn a_sites_deploys_are_listed_by_its_label_and_all_of_them_when_its_active_one_is_unlabelled()
{
    let m = manifest();
    let labelled = serde_json::to_value(deploy("v2", &m, 2)).unwrap();
    let unlabelled = serde_json::to_value(deploy("v1", &m, 1)).unwrap();
    let mut other_site = deploy("x1", &m, 3);
    other_site.spec.site = "other".into();
    let other_site = serde_json::to_value(other_site).unwrap();
    let (client, seen) = mock(move |method, path, _| match (method, path) {
        ("GET", p) if p.contains("/deploys?") && p.contains("labelSelector=") => {
            list("Deploy", vec![labelled.clone()])
        }
        ("GET", p) if p.contains("/deploys?") => list(
            "Deploy",
            vec![unlabelled.clone(), labelled.clone(), other_site.clone()],
        ),
        _ => not_found(),
    });
    let ctx = context(client, kpages_store::BlobStore::memory());
    let lists = |seen: &Seen| -> Vec<String> {
        seen.lock()
            .unwrap()
            .drain(..)
            .filter(|(m, p, _)| m == "GET" && p.contains("/deploys?"))
            .map(|(_, p, _)| p)
            .collect()
    };
    let names = |deploys: Vec<Deploy>| -> Vec<String> {
        deploys.iter().map(|d| d.name_any()).collect::<Vec<_>>()
    };

    // The active deploy is labelled: one small list.
    let mut s = site();
    s.status = Some(kpages_crds::SiteStatus {
        active_deploy: Some("v2".into()),
        ..Default::default()
    });
    assert_eq!(names(ctx.site_deploys(&s).await.unwrap()), ["v2"]);
    assert_eq!(lists(&seen).len(), 1);

    // Active (or pinned) but not labelled, as adopted by an operator that did not label: the
    // whole namespace, so the plan still sees it; other sites' deploys are left out.
    s.status.as_mut().unwrap().active_deploy = Some("v1".into());
    assert_eq!(names(ctx.site_deploys(&s).await.unwrap()), ["v1", "v2"]);
    let seen_lists = lists(&seen);
    assert_eq!(seen_lists.len(), 2, "{seen_lists:?}");
    assert!(!seen_lists[1].contains("labelSelector="), "{seen_lists:?}");
    s.status = None;
    s.spec.pinned_deploy = Some("v1".into());
    assert_eq!(names(ctx.site_deploys(&s).await.unwrap()), ["v1", "v2"]);
    assert_eq!(lists(&seen).len(), 2);
}

/// 2023-11-14T22:13:20Z plus `secs`, the clock of the fixtures.
fn at(secs: i64) -> i64 {
    1_700_000_000 + secs
}

#[test]
fn a_deploy_not_listed_with_its_site_yet_still_counts_in_its_own_plan() {
    let m = manifest();
    let older = [deploy("v1", &m, 0), deploy("v2", &m, 10)];
    let new = deploy("v3", &m, 20);
    let built = build(&new, &site(), &m, &older, &Settings::default(), at(80)).unwrap();
    assert!(
        built.warm,
        "the newest deploy is warm even when the list missed it"
    );
    assert_eq!(built.replicas, 1);
    assert_eq!(built.idle_in, Some(Duration::from_secs(900 - 60)));
    let deployment = built.objects.deployment.unwrap();
    assert_eq!(deployment.spec.unwrap().replicas, Some(1));
    assert!(
        built.objects.cron_jobs.is_empty(),
        "not the active deploy: no schedules"
    );
}

#[test]
fn the_active_deploy_keeps_its_schedules_and_idle_deploys_scale_to_zero() {
    let m = manifest();
    let all = [
        deploy("v1", &m, 0),
        deploy("v2", &m, 10),
        deploy("v3", &m, 20),
    ];
    let mut s = site();
    s.status = Some(kpages_crds::SiteStatus {
        active_deploy: Some("v1".into()),
        ..Default::default()
    });
    let idle = at(10_000);

    let active = build(&all[0], &s, &m, &all, &Settings::default(), idle).unwrap();
    assert!(
        active.warm,
        "the active deploy is warm though it is the oldest"
    );
    assert_eq!((active.replicas, active.idle_in), (0, None));
    assert_eq!(active.objects.cron_jobs.len(), 1);
    assert!(
        active
            .objects
            .routes
            .iter()
            .all(|r| r.spec.hostnames.is_empty()),
        "the active deploy's routes serve every host of the site"
    );

    let preview = build(&all[1], &s, &m, &all, &Settings::default(), idle).unwrap();
    assert!(preview.warm, "among the two newest");
    assert!(preview.objects.cron_jobs.is_empty());
    assert!(
        preview
            .objects
            .routes
            .iter()
            .all(|r| r.spec.hostnames == ["v2--web.team.preview.kpages.localhost"])
    );
}
