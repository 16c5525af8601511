//! A tiny in-process API server for unit tests of the cluster commands, behind kube's
//! `tower-test` mock service: it stores Sites and Deploys, answers get/list/apply/merge patch,
//! lets a test play the operator when a Deploy is created, and parks watch requests (or answers
//! the first one with a prepared change), so tests wait on real watch semantics without sleeps.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kpages_crds::{Deploy, Site};
use kube::client::Body;
use serde_json::{Value, json};

type Hook = Box<dyn FnMut(&mut Deploy) + Send>;

/// The state a test sets up and inspects.
#[derive(Default)]
pub struct State {
    /// Sites by name.
    pub sites: BTreeMap<String, Site>,
    /// Deploys by name.
    pub deploys: BTreeMap<String, Deploy>,
    /// Plays the operator: runs on every Deploy the CLI creates.
    pub on_create: Option<Hook>,
    /// Delivered to the first watch on a Deploy, as a MODIFIED event.
    pub next_deploy: Option<Deploy>,
    /// Every request, as `METHOD path?query`.
    pub log: Vec<String>,
    /// Bodies of patch requests, with their content type.
    pub patches: Vec<(String, Value)>,
}

/// Starts the fake; returns a client and the shared state.
pub fn start(state: State) -> (kube::Client, Arc<Mutex<State>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state = Arc::new(Mutex::new(state));
    let shared = state.clone();
    tokio::spawn(async move {
        let mut parked = Vec::new();
        while let Some((request, reply)) = handle.next_request().await {
            let is_watch = request
                .uri()
                .query()
                .is_some_and(|q| q.contains("watch=true"));
            let response = answer(&shared, request).await;
            match response {
                Some(r) => reply.send_response(r),
                // An idle watch: never answered while the test runs.
                None if is_watch => parked.push(reply),
                None => reply.send_response(status(500, "unexpected request")),
            }
        }
    });
    (kube::Client::new(service, "default"), state)
}

fn status(code: u16, message: &str) -> Response<Body> {
    let body = json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "code": code, "message": message, "reason": "NotFound",
        "details": {"name": message.split('"').nth(1).unwrap_or_default()}
    });
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn ok(value: Value) -> Response<Body> {
    Response::builder()
        .status(200)
        .body(Body::from(serde_json::to_vec(&value).unwrap()))
        .unwrap()
}

async fn answer(state: &Arc<Mutex<State>>, request: Request<Body>) -> Option<Response<Body>> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let mut st = state.lock().unwrap();
    st.log.push(format!("{method} {path}?{query}"));
    let rest = path.strip_prefix("/apis/kpages.dev/v1alpha1/namespaces/default/")?;
    let (kind, name) = match rest.split_once('/') {
        Some((k, n)) => (k, Some(n.to_string())),
        None => (rest, None),
    };
    let watch = query.contains("watch=true");
    match (method, kind, name) {
        (Method::GET, "sites", Some(n)) => Some(match st.sites.get(&n) {
            Some(s) => ok(serde_json::to_value(s).unwrap()),
            None => status(404, &format!("sites.kpages.dev \"{n}\" not found")),
        }),
        (Method::GET, "deploys", Some(n)) => Some(match st.deploys.get(&n) {
            Some(d) => ok(serde_json::to_value(d).unwrap()),
            None => status(404, &format!("deploys.kpages.dev \"{n}\" not found")),
        }),
        (Method::GET, kind, None) if watch => {
            if kind != "deploys" {
                return None;
            }
            let next = st.next_deploy.take()?;
            st.deploys
                .insert(next.metadata.name.clone().unwrap(), next.clone());
            let event = json!({"type": "MODIFIED", "object": next});
            let mut line = serde_json::to_vec(&event).unwrap();
            line.push(b'\n');
            Some(
                Response::builder()
                    .status(200)
                    .body(Body::from(line))
                    .unwrap(),
            )
        }
        (Method::GET, kind, None) => {
            let selected = |n: &str| {
                !query.contains("metadata.name") || query.contains(&format!("metadata.name%3D{n}"))
            };
            let items: Vec<Value> = match kind {
                "sites" => st
                    .sites
                    .iter()
                    .filter(|(n, _)| selected(n))
                    .map(|(_, s)| serde_json::to_value(s).unwrap())
                    .collect(),
                _ => st
                    .deploys
                    .iter()
                    .filter(|(n, _)| selected(n))
                    .map(|(_, d)| serde_json::to_value(d).unwrap())
                    .collect(),
            };
            Some(ok(json!({
                "apiVersion": "kpages.dev/v1alpha1", "kind": "List",
                "metadata": {"resourceVersion": "1"}, "items": items
            })))
        }
        (Method::PATCH, kind, Some(n)) => {
            let patch: Value = serde_json::from_slice(&body).unwrap();
            st.patches
                .push((format!("{content_type} {query}"), patch.clone()));
            match kind {
                "deploys" => {
                    let mut d: Deploy = serde_json::from_value(patch).unwrap();
                    d.metadata.generation = Some(1);
                    d.metadata.resource_version = Some("2".into());
                    if let Some(hook) = st.on_create.as_mut() {
                        hook(&mut d);
                    }
                    st.deploys.insert(n, d.clone());
                    Some(ok(serde_json::to_value(d).unwrap()))
                }
                _ => {
                    let site = st.sites.get_mut(&n)?;
                    let pinned = &patch["spec"]["pinnedDeploy"];
                    site.spec.pinned_deploy = pinned.as_str().map(str::to_string);
                    let generation = site.metadata.generation.unwrap_or(1) + 1;
                    site.metadata.generation = Some(generation);
                    // Plays the site controller at once.
                    let status = site.status.get_or_insert_default();
                    status.observed_generation = Some(generation);
                    if let Some(p) = &site.spec.pinned_deploy {
                        status.active_deploy = Some(p.clone());
                    }
                    Some(ok(serde_json::to_value(&*site).unwrap()))
                }
            }
        }
        _ => None,
    }
}
