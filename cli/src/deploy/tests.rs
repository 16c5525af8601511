#![allow(clippy::unwrap_used)]

use super::*;
use crate::fake_api::{self, State};
use kpages_crds::DeployStatus;
use kpages_testsupport::fixtures::{SiteFixture, at};

fn digest() -> Digest {
    Digest::of(b"a manifest")
}

#[test]
fn deploy_names_are_the_site_and_the_digest_and_fit_preview_hosts() {
    let hex = &digest().hex()[..10];
    assert_eq!(
        deploy_name("web", &digest(), DeployContext::Production),
        format!("web-{hex}")
    );
    assert_eq!(
        deploy_name("web", &digest(), DeployContext::Preview),
        format!("web-{hex}-preview")
    );
    for len in [1, 20, 25, 30, 41, 42, 45, 50, 63] {
        let site: String = "s".repeat(len - 1) + "x";
        for context in [DeployContext::Production, DeployContext::Preview] {
            let name = deploy_name(&site, &digest(), context);
            assert!(name.contains(hex), "{name}");
            assert!(!name.starts_with('-') && !name.contains("--"), "{name}");
            assert!(name.len() <= 63 - "-fn".len(), "{name}");
            // The preview host's first label, whenever a label can hold it at all.
            if site.len() + 2 + hex.len() + 8 <= 63 {
                let label = format!("{name}--{site}");
                assert!(label.len() <= 63, "{label} ({} chars)", label.len());
            }
        }
    }
    // A site part cut at a '-' loses it rather than doubling it.
    // (37 characters leave room for 13 of them: "aaaaaaaaaaaa-".)
    let site = "a".repeat(12) + "-" + &"b".repeat(24);
    let name = deploy_name(&site, &digest(), DeployContext::Production);
    assert_eq!(name, format!("{}-{hex}", "a".repeat(12)));
    // Same content, same name: deploying again is a no-op.
    assert_eq!(
        deploy_name("web", &digest(), DeployContext::Production),
        deploy_name("web", &Digest::of(b"a manifest"), DeployContext::Production)
    );
}

#[test]
fn site_names_and_source_flags_are_checked_like_the_crd() {
    assert!(check_site_name("web-1").is_ok());
    for bad in ["", "Web", "-web", "web-", "a_b", &"a".repeat(64)] {
        let err = check_site_name(bad).unwrap_err().to_string();
        assert!(err.contains("lowercase DNS label"), "{bad}: {err}");
    }
    assert_eq!(source(None, None, None).unwrap(), None);
    let s = source(Some("4f2a9c1".into()), Some("main".into()), None)
        .unwrap()
        .unwrap();
    assert_eq!(s.commit.as_deref(), Some("4f2a9c1"));
    for bad in ["4F2A9C1", "abc", "xyz1234"] {
        let err = source(Some(bad.into()), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--commit"), "{bad}: {err}");
    }
    assert!(source(None, Some("b".repeat(256)), None).is_err());
    assert!(source(None, None, Some("m".repeat(4097))).is_err());
}

#[test]
fn the_emitted_yaml_is_a_complete_deploy() {
    let source = source(
        Some("4f2a9c1".into()),
        Some("main".into()),
        Some("hi".into()),
    )
    .unwrap();
    let d = desired_deploy(
        "web-1234567890",
        Some("team"),
        "web",
        digest(),
        DeployContext::Production,
        source,
    );
    let yaml = deploy_yaml(&d);
    let value: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(value["apiVersion"], "kpages.dev/v1alpha1");
    assert_eq!(value["kind"], "Deploy");
    assert_eq!(value["metadata"]["namespace"], "team");
    assert_eq!(value["metadata"]["labels"]["kpages.dev/site"], "web");
    assert_eq!(value["spec"]["context"], "production");
    assert_eq!(value["spec"]["manifest"], digest().to_string());
    assert!(value.get("status").is_none(), "{yaml}");
    let back: Deploy = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!((back.spec, back.metadata), (d.spec, d.metadata));
    // Without --namespace, `kubectl apply -n` decides.
    let d = desired_deploy("x", None, "web", digest(), DeployContext::Preview, None);
    assert!(!deploy_yaml(&d).contains("namespace"));
}

fn ready(d: &mut Deploy) {
    d.status = Some(DeployStatus {
        phase: DeployPhase::Ready,
        preview_url: Some(format!(
            "http://{}--web.default.preview.test",
            d.metadata.name.clone().unwrap()
        )),
        ..DeployStatus::default()
    });
}

fn condition(status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(0).unwrap(),
        ),
        observed_generation: None,
    }
}

fn preview(name: &str) -> Deploy {
    desired_deploy(name, None, "web", digest(), DeployContext::Preview, None)
}

#[tokio::test]
async fn a_preview_deploy_is_applied_by_the_cli_and_waited_for() {
    let mut state = State::default();
    state.sites.insert("web".into(), Site::test("web"));
    state.on_create = Some(Box::new(|d: &mut Deploy| {
        d.status = Some(DeployStatus {
            phase: DeployPhase::Provisioning,
            ..DeployStatus::default()
        })
    }));
    // The operator reports Ready through the watch.
    let mut done = preview("web-1");
    ready(&mut done);
    state.next_deploy = Some(done);
    let (client, state) = fake_api::start(state);
    let cluster = Cluster::new(client, None);

    assert!(create(&cluster, &preview("web-1")).await.unwrap());
    let url = wait_live(
        &cluster,
        "web",
        "web-1",
        DeployContext::Preview,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(url, "http://web-1--web.default.preview.test");

    let st = state.lock().unwrap();
    let (kind, body) = &st.patches[0];
    assert!(kind.starts_with("application/apply-patch+yaml"), "{kind}");
    assert!(kind.contains("fieldManager=kpages-cli"), "{kind}");
    assert_eq!(body["metadata"]["namespace"], "default");
    assert_eq!(body["spec"]["site"], "web");
}

#[tokio::test]
async fn deploying_the_same_content_again_changes_nothing() {
    let mut state = State::default();
    state.sites.insert("web".into(), Site::test("web"));
    let mut existing = preview("web-1");
    ready(&mut existing);
    state.deploys.insert("web-1".into(), existing);
    let (client, state) = fake_api::start(state);
    let cluster = Cluster::new(client, None);
    assert!(!create(&cluster, &preview("web-1")).await.unwrap());
    assert!(state.lock().unwrap().patches.is_empty());

    // Same name, other content: refused, not overwritten.
    let other = desired_deploy(
        "web-1",
        None,
        "web",
        Digest::of(b"other"),
        DeployContext::Preview,
        None,
    );
    let err = create(&cluster, &other).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("already exists with different content"),
        "{err}"
    );
}

#[tokio::test]
async fn a_production_deploy_is_live_when_the_site_serves_it() {
    let mut state = State::default();
    let mut s = Site::test("web").serving("web-1");
    s.status.as_mut().unwrap().url = Some("http://web.example".into());
    state.sites.insert("web".into(), s);
    state.on_create = Some(Box::new(ready));
    let (client, _) = fake_api::start(state);
    let cluster = Cluster::new(client, None);
    let d = desired_deploy(
        "web-1",
        None,
        "web",
        digest(),
        DeployContext::Production,
        None,
    );
    assert!(create(&cluster, &d).await.unwrap());
    let url = wait_live(
        &cluster,
        "web",
        "web-1",
        DeployContext::Production,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(url, "http://web.example");
}

#[tokio::test]
async fn a_failed_deploy_reports_its_reason_and_exits_4() {
    let mut state = State::default();
    state.sites.insert("web".into(), Site::test("web"));
    state.on_create = Some(Box::new(|d: &mut Deploy| {
        d.status = Some(DeployStatus {
            phase: DeployPhase::Failed,
            conditions: vec![condition(
                "False",
                "ManifestNotFound",
                "manifest is not in storage",
            )],
            ..DeployStatus::default()
        })
    }));
    let (client, _) = fake_api::start(state);
    let cluster = Cluster::new(client, None);
    create(&cluster, &preview("web-1")).await.unwrap();
    let err = wait_live(
        &cluster,
        "web",
        "web-1",
        DeployContext::Preview,
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 4);
    assert_eq!(
        err.to_string(),
        "Deploy web-1 failed: ManifestNotFound: manifest is not in storage"
    );
}

#[tokio::test]
async fn a_timeout_prints_the_conditions_and_exits_3() {
    let mut state = State::default();
    state.sites.insert("web".into(), Site::test("web"));
    state.on_create = Some(Box::new(|d: &mut Deploy| {
        d.status = Some(DeployStatus {
            phase: DeployPhase::Provisioning,
            conditions: vec![condition("False", "PodsStarting", "0/1 pods ready")],
            ..DeployStatus::default()
        })
    }));
    let (client, _) = fake_api::start(state);
    let cluster = Cluster::new(client, None);
    create(&cluster, &preview("web-1")).await.unwrap();
    let err = wait_live(
        &cluster,
        "web",
        "web-1",
        DeployContext::Preview,
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 3);
    let text = err.to_string();
    assert!(
        text.contains("timed out after 0s waiting for Deploy web-1"),
        "{text}"
    );
    assert!(
        text.contains("Ready=False PodsStarting: 0/1 pods ready"),
        "{text}"
    );
}

#[tokio::test]
async fn a_missing_site_says_how_to_create_it() {
    let (client, _) = fake_api::start(State::default());
    let cluster = Cluster::new(client, Some("default"));
    let err = cluster.site("web").await.unwrap_err().to_string();
    assert!(
        err.contains("Site \"web\" not found in namespace \"default\""),
        "{err}"
    );
    assert!(err.contains("kubectl apply -n default"), "{err}");
}

#[tokio::test]
async fn redeploying_content_older_than_the_active_deploy_points_to_rollback() {
    let mut state = State::default();
    state
        .sites
        .insert("web".into(), Site::test("web").serving("web-new"));
    let mut old = desired_deploy(
        "web-old",
        None,
        "web",
        digest(),
        DeployContext::Production,
        None,
    );
    old.metadata.creation_timestamp = Some(at(1));
    let mut new = desired_deploy(
        "web-new",
        None,
        "web",
        Digest::of(b"new"),
        DeployContext::Production,
        None,
    );
    new.metadata.creation_timestamp = Some(at(2));
    state.deploys.insert("web-old".into(), old.clone());
    state.deploys.insert("web-new".into(), new);
    let (client, _) = fake_api::start(state);
    let cluster = Cluster::new(client, None);
    let err = create(&cluster, &old).await.unwrap_err().to_string();
    assert!(err.contains("kpages rollback --site web web-old"), "{err}");
}

#[tokio::test]
async fn earlier_manifests_come_from_the_active_deploy_then_the_newest_others() {
    let m = |i: u8| Digest::of(&[i]);
    let mut state = State::default();
    let mut s = Site::test("web").serving("web-1");
    s.status.as_mut().unwrap().active_manifest = Some(m(1).to_string());
    state.sites.insert("web".into(), s.clone());
    for i in 1..=5u8 {
        let name = format!("web-{i}");
        let mut d = desired_deploy(&name, None, "web", m(i), DeployContext::Preview, None);
        d.metadata.creation_timestamp = Some(at(i64::from(i)));
        state.deploys.insert(name, d);
    }
    // Another site's deploy lends nothing.
    let other = desired_deploy(
        "blog-9",
        None,
        "blog",
        m(9),
        DeployContext::Production,
        None,
    );
    state.deploys.insert("blog-9".into(), other);
    let (client, _) = fake_api::start(state);
    let cluster = Cluster::new(client, None);
    let got = previous_manifests(&cluster, &s).await;
    assert_eq!(got, vec![m(1), m(5), m(4), m(3)]);

    // No deploys and no status: nothing known, every blob is checked.
    let (client, _) = fake_api::start(State::default());
    let bare = previous_manifests(&Cluster::new(client, None), &Site::test("web")).await;
    assert!(bare.is_empty());
}

#[test]
fn newest_manifests_skip_repeats() {
    let m = Digest::of(b"same");
    let deploys: Vec<Deploy> = (0..3)
        .map(|i| {
            desired_deploy(
                &format!("web-{i}"),
                None,
                "web",
                m,
                DeployContext::Preview,
                None,
            )
        })
        .collect();
    assert_eq!(newest_manifests(deploys, 3), vec![m]);
}

#[test]
fn an_emitted_deploy_for_the_same_site_names_the_previous_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploy.yaml");
    assert_eq!(emitted_manifest(&path, "web"), None, "no file yet");
    let d = desired_deploy(
        "web-1",
        None,
        "web",
        digest(),
        DeployContext::Production,
        None,
    );
    std::fs::write(&path, deploy_yaml(&d)).unwrap();
    assert_eq!(emitted_manifest(&path, "web"), Some(digest()));
    assert_eq!(
        emitted_manifest(&path, "blog"),
        None,
        "another site's deploy"
    );
    std::fs::write(&path, "not: [a deploy").unwrap();
    assert_eq!(emitted_manifest(&path, "web"), None);
    assert_eq!(emitted_manifest(Path::new("-"), "web"), None);
}
