//! The crate dependency rules of ARCHITECTURE.md, checked against `cargo metadata`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let rules: &[(&str, &[&str])] = &[
        ("rbuild-graph", &[]),
        ("rbuild-fsroot", &[]),
        ("rbuild-frontend", &["rbuild-graph"]),
        ("rbuild-exec", &["rbuild-fsroot"]),
        ("rbuild-cache", &["rbuild-graph", "rbuild-fsroot"]),
        ("rbuild-registry", &["rbuild-graph", "rbuild-cache"]),
        (
            "rbuild-export",
            &["rbuild-graph", "rbuild-fsroot", "rbuild-cache"],
        ),
        (
            "rbuild-solver",
            &[
                "rbuild-graph",
                "rbuild-fsroot",
                "rbuild-exec",
                "rbuild-cache",
                "rbuild-registry",
            ],
        ),
        (
            "rbuild",
            &[
                "rbuild-graph",
                "rbuild-fsroot",
                "rbuild-frontend",
                "rbuild-solver",
                "rbuild-exec",
                "rbuild-cache",
                "rbuild-registry",
                "rbuild-export",
            ],
        ),
    ];
    rules
        .iter()
        .map(|(k, v)| (*k, v.iter().copied().collect()))
        .collect()
}

#[test]
fn crate_dependencies_follow_architecture_md() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    let rules = allowed();
    let packages = meta["packages"].as_array().expect("packages");
    let mut checked = 0;
    let mut violations = Vec::new();
    for p in packages {
        let name = p["name"].as_str().expect("name");
        let Some(allowed) = rules.get(name) else {
            violations.push(format!(
                "{name}: not listed in ARCHITECTURE.md's crate table"
            ));
            continue;
        };
        checked += 1;
        for d in p["dependencies"].as_array().expect("deps") {
            let dep = d["name"].as_str().expect("dep name");
            let is_dev = d["kind"].as_str() == Some("dev");
            if dep.starts_with("rbuild") && !is_dev && !allowed.contains(dep) {
                violations.push(format!(
                    "{name} depends on {dep}, which ARCHITECTURE.md forbids"
                ));
            }
        }
    }
    assert_eq!(checked, rules.len(), "every crate of the table must exist");
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
