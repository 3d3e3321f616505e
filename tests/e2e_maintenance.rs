//! The state dir survives what users do to it: du, prune, and a build killed
//! with SIGKILL in the middle of a RUN.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn prune_keeps_tagged_images_and_the_cache_stays_usable() {
    require_root();
    require_tool("skopeo", "skopeo");
    require_registry();
    let rb = Rbuild::new();
    rb.ok(["-t", "kept", "examples/hello"]);
    let du = rb.run(["du"]);
    let du_text = String::from_utf8_lossy(&du.stdout).to_string();
    assert!(du.status.success());
    assert!(
        du_text.contains("blobs") && du_text.contains("snapshots"),
        "{du_text}"
    );

    let pruned = rb.run(["prune", "--all"]);
    assert!(
        pruned.status.success(),
        "{}",
        String::from_utf8_lossy(&pruned.stderr)
    );
    assert!(String::from_utf8_lossy(&pruned.stdout).contains("Total reclaimed space"));
    // The tagged image is still complete in the store…
    cmd(
        "skopeo",
        &[
            "inspect",
            &format!("oci:{}:kept:latest", rb.path().display()),
        ],
    );
    // …and the next build works (it runs again: the build cache is gone).
    let again = rb.ok(["build", "--progress=plain", "-t", "kept", "examples/hello"]);
    assert!(again.contains("DONE"), "{again}");
}

#[test]
fn a_build_killed_during_run_leaves_a_usable_state_dir() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/library/busybox:latest\nRUN echo started && sleep 30 && echo finished > /done\n",
            registry()
        ),
    )
    .expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(rb.path())
        .args(["build", "--progress=plain"])
        .arg(ctx.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn rbuild");
    // Wait until the RUN step is executing, then kill rbuild outright.
    let stderr = child.stderr.take().expect("stderr");
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("line");
        if line.ends_with(" started") {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");

    // prune removes the dead build's leftovers (active snapshot, its mount).
    let pruned = rb.run(["prune"]);
    assert!(
        pruned.status.success(),
        "{}",
        String::from_utf8_lossy(&pruned.stderr)
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let ours = rb.path().join("mnt").display().to_string();
    // The sandbox may still hold its own mount namespace; the host must not
    // keep the dead build's overlay mounted under the state dir.
    assert!(
        !mounts.contains(&ours),
        "a mount was left behind:\n{mounts}"
    );

    // Every blob still matches its digest, and the next build succeeds.
    for entry in std::fs::read_dir(rb.path().join("blobs/sha256")).expect("blobs") {
        let p = entry.expect("entry").path();
        let sum = cmd("sha256sum", &[&p.to_string_lossy()]);
        let name = p.file_name().expect("name").to_string_lossy().to_string();
        assert!(sum.starts_with(&name), "blob {name} is corrupt");
    }
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/library/busybox:latest\nRUN echo finished > /done\n",
            registry()
        ),
    )
    .expect("write");
    rb.ok(["build", &ctx.path().to_string_lossy()]);
}
