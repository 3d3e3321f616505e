//! The state dir survives what users do to it: du, prune, and a build killed
//! with SIGKILL in the middle of a RUN (on both runtimes).

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// Host processes whose command line is exactly `args`.
fn pids_with_cmdline(args: &[&str]) -> Vec<String> {
    let want: Vec<u8> = args
        .iter()
        .flat_map(|a| a.bytes().chain(std::iter::once(0)))
        .collect();
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Poll (up to a deadline, not a speed check) until `pred` holds.
fn eventually(mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    pred()
}

/// `kill -9` of rbuild while a RUN step runs: the sandboxed process dies
/// too, prune removes the dead build's mounts, the next build works.
fn killed_during_run(runtime: &str, marker_base: u32) {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    // A sleep nobody else runs: its argv is the marker we look for.
    let marker = (marker_base + std::process::id() % 90_000).to_string();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/library/busybox:latest\nRUN echo started && sleep {marker} && echo finished > /done\n",
            registry()
        ),
    )
    .expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(rb.path())
        .args(["build", "--progress=plain", "--runtime", runtime])
        .arg(ctx.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn rbuild");
    let _watchdog = Watchdog::new(child.id(), 120);
    // Wait until the RUN step is executing, then kill rbuild outright.
    let stderr = child.stderr.take().expect("stderr");
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("line");
        if line.ends_with(" started") {
            break;
        }
        seen.push(line);
    }
    let sleeping = eventually(|| !pids_with_cmdline(&["sleep", &marker]).is_empty());
    assert!(
        sleeping,
        "the RUN step never ran `sleep {marker}`:\n{}",
        seen.join("\n")
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");

    // Nothing of the sandbox survives its caller.
    let gone = eventually(|| pids_with_cmdline(&["sleep", &marker]).is_empty());
    assert!(
        gone,
        "`sleep {marker}` outlived the killed rbuild ({runtime}): pids {:?}",
        pids_with_cmdline(&["sleep", &marker])
    );

    // prune removes the dead build's leftovers (active snapshot, its mount).
    let pruned = rb.run(["prune"]);
    assert!(
        pruned.status.success(),
        "{}",
        String::from_utf8_lossy(&pruned.stderr)
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let ours = rb.path().display().to_string();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&ours)).collect();
    assert!(left.is_empty(), "mounts left behind: {left:#?}");
    let bundles = rb.path().join("exec/bundles");
    let stale: Vec<_> = std::fs::read_dir(&bundles)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(stale.is_empty(), "bundles left behind: {stale:?}");

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
    rb.ok(["build", "--runtime", runtime, &ctx.path().to_string_lossy()]);
}

#[test]
fn a_build_killed_during_run_leaves_nothing_running_embedded() {
    killed_during_run("embedded", 600_000);
}

#[test]
fn a_build_killed_during_run_leaves_nothing_running_runc() {
    killed_during_run("runc", 500_000);
}

/// A signal while a RUN step runs: the build is cancelled, rbuild exits
/// with 128 + the signal's number, and nothing is left running or mounted,
/// without a prune.
fn signalled_during_run(signal: i32, marker_base: u32, code: i32, message: &str) {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    let marker = (marker_base + std::process::id() % 90_000).to_string();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/library/busybox:latest\nRUN echo started && sleep {marker}\n",
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
    let _watchdog = Watchdog::new(child.id(), 120);
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        if line.ends_with(" started") {
            break;
        }
        seen.push(line);
    }
    assert!(
        eventually(|| !pids_with_cmdline(&["sleep", &marker]).is_empty()),
        "the RUN step never ran `sleep {marker}`:\n{}",
        seen.join("\n")
    );
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(rc, 0, "send signal {signal}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("wait");
    assert_eq!(
        status.code(),
        Some(code),
        "exit status after signal {signal} ({status}):\n{}",
        rest.join("\n")
    );
    assert!(
        rest.iter().any(|l| l.contains(message)),
        "no `{message}` in:\n{}",
        rest.join("\n")
    );
    assert!(
        eventually(|| pids_with_cmdline(&["sleep", &marker]).is_empty()),
        "`sleep {marker}` outlived the cancelled build"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let ours = rb.path().display().to_string();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&ours)).collect();
    assert!(left.is_empty(), "mounts left behind: {left:#?}");
}

#[test]
fn ctrl_c_cancels_the_build_and_leaves_nothing_running_or_mounted() {
    signalled_during_run(libc::SIGINT, 700_000, 130, "build cancelled (interrupted)");
}

#[test]
fn sigterm_cancels_the_build_like_ctrl_c() {
    signalled_during_run(libc::SIGTERM, 800_000, 143, "build cancelled (terminated)");
}
