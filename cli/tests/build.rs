//! `kpages build` prints the manifest digest last and fails cleanly on bad input.

use std::path::Path;
use std::process::Command;

fn kpages_build(site: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kpages"))
        .arg("build")
        .arg(site)
        .arg("--out")
        .arg(out)
        .output()
        .expect("runs")
}

#[test]
fn build_prints_the_manifest_digest_last() {
    let site = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/static-site");
    let out = tempfile::tempdir().expect("tempdir");
    let result = kpages_build(&site, &out.path().join("out"));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let stdout = String::from_utf8(result.stdout).expect("utf-8");
    let last = stdout.lines().last().expect("output");
    let hex = last.strip_prefix("sha256:").expect("a digest");
    let manifest =
        std::fs::read(out.path().join("out/blobs/sha256").join(hex)).expect("manifest blob");
    let parsed = kpages_crds::Manifest::from_json(&manifest).expect("a manifest");
    assert_eq!(parsed.digest().to_string(), last);
}

#[test]
fn build_fails_with_the_file_and_line_and_writes_nothing() {
    let site = tempfile::tempdir().expect("tempdir");
    std::fs::write(site.path().join("index.html"), "hi").expect("write");
    std::fs::write(
        site.path().join("_redirects"),
        "/ok /fine\n/missing-target\n",
    )
    .expect("write");
    let out = tempfile::tempdir().expect("tempdir");
    let result = kpages_build(site.path(), &out.path().join("out"));
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("_redirects:2: "), "{stderr}");
    assert!(!out.path().join("out").exists());
    assert!(result.stdout.is_empty());
}

/// A schedule no scheduler can run fails the build with the function's file, the field and
/// the schedule, instead of building a function that `kpages dev` and the cluster never run.
#[test]
fn build_refuses_a_schedule_that_cannot_run() {
    let site = tempfile::tempdir().expect("tempdir");
    std::fs::write(site.path().join("index.html"), "hi").expect("write");
    std::fs::create_dir_all(site.path().join("netlify/functions")).expect("mkdir");
    std::fs::write(
        site.path().join("netlify/functions/tick.mjs"),
        "export default async () => {};\nexport const config = { schedule: \"60 * * * *\" };\n",
    )
    .expect("write");
    let out = tempfile::tempdir().expect("tempdir");
    let result = kpages_build(site.path(), &out.path().join("out"));
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("netlify/functions/tick.mjs: config field `schedule`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("invalid schedule \"60 * * * *\""),
        "{stderr}"
    );
    assert!(stderr.contains("minute: 60 is outside 0-59"), "{stderr}");
    assert!(!out.path().join("out").exists());
}
