//! `kpages crd` prints exactly the committed CRD YAML.

use std::process::Command;

#[test]
fn kpages_crd_prints_the_committed_crds() {
    let out = Command::new(env!("CARGO_BIN_EXE_kpages"))
        .arg("crd")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/generated");
    let mut committed = String::new();
    for file in [
        "sites.kpages.dev.yaml",
        "deploys.kpages.dev.yaml",
        "functionroutes.kpages.dev.yaml",
    ] {
        committed.push_str("---\n");
        committed.push_str(&std::fs::read_to_string(dir.join(file)).expect("committed CRD"));
    }
    assert_eq!(printed, committed);
    assert_eq!(printed.matches("kind: CustomResourceDefinition").count(), 3);
}

#[test]
fn kpages_crd_out_writes_one_file_per_crd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new(env!("CARGO_BIN_EXE_kpages"))
        .args(["crd", "--out"])
        .arg(dir.path())
        .status()
        .expect("runs");
    assert!(status.success());
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "deploys.kpages.dev.yaml",
            "functionroutes.kpages.dev.yaml",
            "sites.kpages.dev.yaml"
        ]
    );
}
