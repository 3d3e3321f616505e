//! RUN through the whole product: secrets, cache mounts, network modes,
//! entitlements and whiteouts, checked on the exported image.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn dockerfile(dir: &Path, body: &str) {
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM {}/library/busybox:latest\n{body}", registry()),
    )
    .expect("write Dockerfile");
}

/// A context dir (and its path as text) and a rootfs dir with the
/// `type=local` output that writes it.
fn context_and_rootfs() -> (tempfile::TempDir, String, tempfile::TempDir, String) {
    let ctx = tempfile::tempdir().expect("tmp");
    let ctx_s = ctx.path().to_string_lossy().to_string();
    let rootfs = tempfile::tempdir().expect("tmp");
    let dest = format!("type=local,dest={}", rootfs.path().display());
    (ctx, ctx_s, rootfs, dest)
}

#[test]
fn secret_is_readable_in_run_and_absent_from_image_history_and_graph() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    let secret = ctx.path().join("token.txt");
    std::fs::write(&secret, "hunter2-secret-value").expect("write");
    dockerfile(
        ctx.path(),
        // The Dockerfile must not contain the value: compare lengths and a checksum.
        "RUN --mount=type=secret,id=tok,required=true wc -c < /run/secrets/tok > /used && md5sum < /run/secrets/tok | cut -c1-8 >> /used\n\
         RUN --mount=type=secret,id=tok,env=TOK test \"${#TOK}\" = 20\n",
    );
    let out = tempfile::tempdir().expect("tmp");
    let oci = out.path().join("img");
    let ctx_s = ctx.path().to_string_lossy().to_string();
    rb.ok([
        "build",
        "--secret",
        &format!("id=tok,src={}", secret.display()),
        "-o",
        &format!("type=oci,tar=false,dest={}", oci.display()),
        &ctx_s,
    ]);
    // Nowhere in the image (layers are gzip: unpack them) nor its config.
    let rootfs = out.path().join("rootfs");
    rb.ok([
        "build",
        "--secret",
        &format!("id=tok,src={}", secret.display()),
        "-o",
        &format!("type=local,dest={}", rootfs.display()),
        &ctx_s,
    ]);
    let md5 = cmd(
        "sh",
        &["-c", &format!("md5sum < {} | cut -c1-8", secret.display())],
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("used")).expect("used"),
        format!("20\n{md5}")
    );
    let grep = std::process::Command::new("grep")
        .args(["-r", "-l", "hunter2"])
        .arg(&rootfs)
        .arg(&oci)
        .arg(rb.path().join("index"))
        .output()
        .expect("grep");
    assert!(
        grep.stdout.is_empty(),
        "secret leaked into: {}",
        String::from_utf8_lossy(&grep.stdout)
    );
    let graph = rb.run(["debug", "graph", &ctx_s]);
    assert!(
        graph.status.success(),
        "{}",
        String::from_utf8_lossy(&graph.stderr)
    );
    assert!(!String::from_utf8_lossy(&graph.stdout).contains("hunter2"));
    // A required secret that is not given fails with its id.
    let missing = rb.run(["build", "--no-cache", &ctx_s]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("secret tok: not found"));
}

#[test]
fn cache_mount_persists_across_builds_and_no_cache_empties_it() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let (ctx, ctx_s, rootfs, dest) = context_and_rootfs();
    for (i, want) in [(1, "1"), (2, "2")] {
        dockerfile(
            ctx.path(),
            &format!("RUN --mount=type=cache,id=c1,target=/var/cache/x echo {i} >> /var/cache/x/log && wc -l < /var/cache/x/log > /count\n"),
        );
        rb.ok(["build", "-o", &dest, &ctx_s]);
        let count = std::fs::read_to_string(rootfs.path().join("count")).expect("count");
        assert_eq!(count.trim(), want, "build {i}");
        assert!(
            !rootfs.path().join("var/cache/x/log").exists(),
            "cache content must not reach the layer"
        );
    }
    rb.ok(["build", "--no-cache", "-o", &dest, &ctx_s]);
    let count = std::fs::read_to_string(rootfs.path().join("count")).expect("count");
    assert_eq!(count.trim(), "1", "--no-cache starts cache mounts empty");
}

#[test]
fn network_modes_hostname_seccomp_and_entitlements() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    let ctx_s = ctx.path().to_string_lossy().to_string();
    let rootfs = tempfile::tempdir().expect("tmp");
    dockerfile(
        ctx.path(),
        "RUN --network=none ls /sys/class/net > /nets\nRUN hostname > /host && ps -o pid= | wc -l > /procs\n",
    );
    rb.ok([
        "build",
        "-o",
        &format!("type=local,dest={}", rootfs.path().display()),
        &ctx_s,
    ]);
    assert_eq!(
        std::fs::read_to_string(rootfs.path().join("nets")).expect("nets"),
        "lo\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.path().join("host")).expect("host"),
        "buildkitsandbox\n"
    );
    // sh, ps and wc: only the step's own processes are visible.
    let procs: u32 = std::fs::read_to_string(rootfs.path().join("procs"))
        .expect("procs")
        .trim()
        .parse()
        .expect("n");
    assert!(procs <= 4, "saw {procs} processes");
    // The sandbox's /etc/hosts, /etc/resolv.conf and /etc/hostname are bind
    // mounts: the busybox base has none, and none may reach the image.
    for f in ["etc/hosts", "etc/resolv.conf", "etc/hostname"] {
        assert!(!rootfs.path().join(f).exists(), "{f} leaked into the image");
    }

    // Docker's seccomp profile: a user namespace needs no capability, only
    // the profile refuses it; --security=insecure runs without the profile.
    dockerfile(ctx.path(), "RUN unshare -U true\n");
    let refused = rb.run(["build", &ctx_s]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("Operation not permitted"), "{err}");
    dockerfile(ctx.path(), "RUN --security=insecure unshare -U true\n");
    let denied = rb.run(["build", &ctx_s]);
    assert_eq!(denied.status.code(), Some(1));
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(err.contains("--allow security.insecure"), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
    rb.ok(["build", "--allow", "security.insecure", &ctx_s]);
}

#[test]
fn deleting_a_base_file_becomes_a_whiteout() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    let ctx_s = ctx.path().to_string_lossy().to_string();
    dockerfile(ctx.path(), "RUN rm /bin/vi && echo new > /etc/motd\n");
    let out = tempfile::tempdir().expect("tmp");
    let layout = out.path().join("img");
    rb.ok([
        "build",
        "-o",
        &format!("type=oci,tar=false,dest={}", layout.display()),
        &ctx_s,
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("json");
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let mdigest = index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&mdigest)).expect("manifest")).expect("json");
    let layers = manifest["layers"].as_array().expect("layers");
    let last = layers.last().expect("a layer")["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let listing = cmd("tar", &["-tzf", &blob(&last).to_string_lossy()]);
    let entries: Vec<&str> = listing.lines().collect();
    assert!(entries.contains(&"bin/.wh.vi"), "{entries:?}");
    assert!(entries.contains(&"etc/motd"), "{entries:?}");
    assert!(
        !entries
            .iter()
            .any(|e| e.contains("hosts") || e.contains("resolv.conf")),
        "{entries:?}"
    );
}

/// Serve `body` over HTTP on 127.0.0.1 (any path) from a thread; returns the port.
fn serve(body: &'static [u8]) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        }
    });
    port
}

#[test]
fn add_unpacks_local_archives_and_downloads_urls() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    let ctx_s = ctx.path().to_string_lossy().to_string();
    std::fs::create_dir_all(ctx.path().join("pkg/sub")).expect("mkdir");
    std::fs::write(ctx.path().join("pkg/sub/a.txt"), "inside\n").expect("write");
    cmd(
        "tar",
        &[
            "-czf",
            &ctx.path().join("pkg.tar.gz").to_string_lossy(),
            "-C",
            &ctx_s,
            "pkg",
        ],
    );
    let port = serve(b"remote content\n");
    dockerfile(
        ctx.path(),
        &format!(
            "ADD pkg.tar.gz /opt/\nCOPY pkg.tar.gz /copied/\nADD http://127.0.0.1:{port}/dl/file.txt /web/\n"
        ),
    );
    let rootfs = tempfile::tempdir().expect("tmp");
    rb.ok([
        "build",
        "-o",
        &format!("type=local,dest={}", rootfs.path().display()),
        &ctx_s,
    ]);
    let r = rootfs.path();
    // ADD extracts a local archive; COPY does not.
    assert_eq!(
        std::fs::read_to_string(r.join("opt/pkg/sub/a.txt")).expect("extracted"),
        "inside\n"
    );
    assert!(r.join("copied/pkg.tar.gz").is_file());
    // ADD <url> keeps the URL's file name, mode 0600 and its Last-Modified time.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let web = r.join("web/file.txt");
    assert_eq!(
        std::fs::read_to_string(&web).expect("downloaded"),
        "remote content\n"
    );
    let meta = std::fs::metadata(&web).expect("stat");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(meta.mtime(), 1_704_067_200);
}

/// rbuild started by a parent that blocks and ignores signals (nohup, some
/// CI runners): each RUN still starts with an empty signal mask and no
/// ignored signals, so `yes | head -n1` ends `yes` with SIGPIPE (status 141), on both
/// runtimes. (Signal 32, which glibc reserves, may stay ignored: runc
/// leaves it so.)
#[test]
fn run_steps_start_with_a_clean_signal_state() {
    use std::os::unix::process::CommandExt;
    require_root();
    require_registry();
    let ctx = tempfile::tempdir().expect("tmp");
    // `&& true`: busybox sh would exec the last command in its own process,
    // and the shell (pid 1) ignores SIGQUIT, under runc as much as here.
    dockerfile(
        ctx.path(),
        "RUN { yes; echo $? > /yes-status; } | head -n1 > /yes && grep -E '^Sig(Blk|Ign)' /proc/self/status > /sig && true\n",
    );
    for runtime in ["embedded", "runc"] {
        let rb = Rbuild::new();
        let rootfs = tempfile::tempdir().expect("tmp");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
        cmd.arg("--root")
            .arg(rb.path())
            .args(["build", "--runtime", runtime, "-o"])
            .arg(format!("type=local,dest={}", rootfs.path().display()))
            .arg(ctx.path());
        // SAFETY: the closure only calls async-signal-safe functions
        // (sigemptyset, sigaddset, sigprocmask, signal) on local data.
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1] {
                    libc::sigaddset(&mut set, sig);
                }
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                libc::signal(libc::SIGPIPE, libc::SIG_IGN);
                libc::signal(libc::SIGQUIT, libc::SIG_IGN);
                Ok(())
            });
        }
        let out = cmd.output().expect("run rbuild");
        assert!(
            out.status.success(),
            "{runtime}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(rootfs.path().join("yes")).expect("yes"),
            "y\n"
        );
        // 128 + 13: `yes` was killed by SIGPIPE, not told EPIPE.
        assert_eq!(
            std::fs::read_to_string(rootfs.path().join("yes-status")).expect("status"),
            "141\n",
            "{runtime}: how `yes` ended"
        );
        let sig = std::fs::read_to_string(rootfs.path().join("sig")).expect("sig");
        let mask = |name: &str| {
            let hex = sig
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {sig}"))
                .trim();
            u64::from_str_radix(hex, 16).expect("hex mask")
        };
        assert_eq!(mask("SigBlk:"), 0, "{runtime}: blocked signals in RUN");
        // Only signal 32 (bit 31) may stay ignored, and only under runc.
        assert_eq!(
            mask("SigIgn:") & !(1 << 31),
            0,
            "{runtime}: ignored signals in RUN: {sig}"
        );
    }
}

#[test]
fn add_host_entries_reach_etc_hosts_of_run_steps_and_the_cache_key() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let (ctx, ctx_s, rootfs, dest) = context_and_rootfs();
    dockerfile(ctx.path(), "RUN grep -v localhost /etc/hosts > /extra\n");
    rb.ok([
        "build",
        "--add-host",
        "Registry.Internal:10.1.2.3",
        "--add-host",
        "v6=[fd00::1]",
        "-o",
        &dest,
        &ctx_s,
    ]);
    assert_eq!(
        std::fs::read_to_string(rootfs.path().join("extra")).expect("extra"),
        "10.1.2.3\tregistry.internal\nfd00::1\tv6\n"
    );
    // Another mapping is another definition: the step runs again.
    let progress = rb.ok([
        "build",
        "--progress",
        "plain",
        "--add-host",
        "registry.internal:10.9.9.9",
        "-o",
        &dest,
        &ctx_s,
    ]);
    assert!(
        progress
            .contains("/extra\n#2 cache miss: the instruction or a build option it uses changed"),
        "the RUN must not be a cache hit:\n{progress}"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.path().join("extra")).expect("extra"),
        "10.9.9.9\tregistry.internal\n"
    );
    let bad = rb.run(["build", "--add-host", "nohost", &ctx_s]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("invalid --add-host \"nohost\": expected HOST:IP"),
        "{err}"
    );
    let bad = rb.run(["build", "--add-host", "h:999.1.1.1", &ctx_s]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("\"999.1.1.1\" is not an IP address"), "{err}");
}
