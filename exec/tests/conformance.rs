//! One executor conformance suite, run against every runtime (runc and the
//! embedded libcontainer helper). Needs root and runc; fails (never skips)
//! with what to install otherwise.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use common::{host_pids_with_cmdline, mountinfo, run, run_ok, tree, tree_diff, Env, Rt};
use rbuild_exec::{CancelToken, ExecMount, ExitStatus, Network, OutputChunk, Stream};

fn cannot_see_host_files(rt: Rt) {
    let env = Env::new();
    let marker = env.tmp.path().join("host-marker");
    std::fs::write(&marker, "secret").expect("marker");
    let host_tmp_marker =
        std::env::temp_dir().join(format!("rbuild-exec-marker-{}", std::process::id()));
    std::fs::write(&host_tmp_marker, "x").expect("marker");
    let name = host_tmp_marker.display().to_string();
    let out = run_ok(
        &env.executor(&rt),
        &env.sh(&format!(
            "if [ -e {name} ]; then echo visible; else echo absent; fi; ls /"
        )),
    );
    let _ = std::fs::remove_file(&host_tmp_marker);
    assert!(out.starts_with("absent"), "{out}");
}

fn pid_namespace_only_own_processes(rt: Rt) {
    let env = Env::new();
    let out = run_ok(&env.executor(&rt), &env.req(&["ps", "-o", "pid,args"]));
    let lines: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(lines.len(), 1, "{out}");
    let mut f = lines[0].split_whitespace();
    assert_eq!(f.next(), Some("1"), "{out}");
    assert_eq!(f.next(), Some("ps"), "{out}");
}

fn hostname_default_and_custom(rt: Rt) {
    let env = Env::new();
    let exec = env.executor(&rt);
    assert_eq!(
        run_ok(&exec, &env.req(&["hostname"])).trim(),
        "buildkitsandbox"
    );
    let mut req = env.req(&["hostname"]);
    req.hostname = "custom-host".into();
    assert_eq!(run_ok(&exec, &req).trim(), "custom-host");
}

fn exit_codes(rt: Rt) {
    let env = Env::new();
    let exec = env.executor(&rt);
    assert_eq!(run(&exec, &env.req(&["true"])).status, ExitStatus::Code(0));
    assert_eq!(run(&exec, &env.sh("exit 3")).status, ExitStatus::Code(3));
    assert_eq!(run(&exec, &env.req(&["false"])).status, ExitStatus::Code(1));
}

fn killed_by_signal(rt: Rt) {
    let env = Env::new();
    let exec = env.executor(&rt);
    // pid 1 ignores SIGKILL from inside its namespace, so kill it from the host.
    let marker = format!("{}", 900_000 + std::process::id() % 90_000);
    let req = env.sh(&format!("echo ready; exec sleep {marker}"));
    let mut killed = false;
    let status = exec
        .run(&req, &mut |c: OutputChunk| {
            if !killed && String::from_utf8_lossy(&c.data).contains("ready") {
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    let pids = host_pids_with_cmdline(&["sleep", &marker]);
                    if let Some(pid) = pids.first() {
                        // SAFETY: plain kill(2) of a pid we just found.
                        unsafe { libc::kill(*pid, libc::SIGKILL) };
                        killed = true;
                        break;
                    }
                    std::thread::yield_now();
                }
            }
        })
        .expect("run");
    assert!(killed, "did not find the sandboxed sleep on the host");
    assert_eq!(status, ExitStatus::Signal(9));
}

fn users_and_groups(rt: Rt) {
    let env = Env::new();
    let exec = env.executor(&rt);
    let id = |user: &str| {
        let mut req = env.req(&["id"]);
        req.process.user = user.into();
        run_ok(&exec, &req).trim().to_string()
    };
    assert!(id("").starts_with("uid=0(root) gid=0(root)"), "{}", id(""));
    assert!(id("root").starts_with("uid=0(root) gid=0(root)"));
    let app = id("app");
    assert!(app.starts_with("uid=1000(app) gid=1000(app)"), "{app}");
    assert!(
        app.contains("10(wheel)") && app.contains("29(audio)"),
        "{app}"
    );
    let explicit = id("1000:1000");
    assert!(
        explicit.starts_with("uid=1000(app) gid=1000(app)"),
        "{explicit}"
    );
    assert!(!explicit.contains("wheel"), "{explicit}");
    assert!(id("app:wheel").starts_with("uid=1000(app) gid=10(wheel)"));
    assert!(
        id("4242").starts_with("uid=4242 gid=0(root)"),
        "{}",
        id("4242")
    );
    let mut req = env.req(&["id"]);
    req.process.user = "nobody-here".into();
    assert!(exec.run(&req, &mut |_| {}).is_err());
}

fn env_and_cwd(rt: Rt) {
    let env = Env::new();
    let mut req = env.sh("echo \"$FOO|$PATH|$HOME\"; pwd");
    req.process.env = vec!["FOO=bar baz".into()];
    req.process.cwd = "/work/sub".into();
    let out = run_ok(&env.executor(&rt), &req);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("bar baz|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|/root")
    );
    assert_eq!(lines.next(), Some("/work/sub"));
    let meta = std::fs::metadata(env.rootfs.join("work/sub")).expect("workdir kept");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, 0, 0o755)
    );
}

fn output_is_streamed(rt: Rt) {
    let env = Env::new();
    let start = Instant::now();
    let mut chunks: Vec<(Duration, Stream, String)> = Vec::new();
    let status = env
        .executor(&rt)
        .run(
            &env.sh("echo one; sleep 1; echo two >&2"),
            &mut |c: OutputChunk| {
                chunks.push((
                    start.elapsed(),
                    c.stream,
                    String::from_utf8_lossy(&c.data).into(),
                ));
            },
        )
        .expect("run");
    assert_eq!(status, ExitStatus::Code(0));
    let one = chunks.iter().find(|c| c.2.contains("one")).expect("one");
    let two = chunks.iter().find(|c| c.2.contains("two")).expect("two");
    assert_eq!((one.1, two.1), (Stream::Stdout, Stream::Stderr));
    assert!(two.0 - one.0 >= Duration::from_millis(500), "{chunks:?}");
}

fn etc_files_present_and_not_left(rt: Rt) {
    let env = Env::new();
    let before = tree(&env.rootfs);
    let mut req =
        env.sh("cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; cat /etc/hostname");
    req.extra_hosts = vec![("db.internal".into(), "10.9.8.7".into())];
    let out = run_ok(&env.executor(&rt), &req);
    assert!(
        out.contains("127.0.0.1\tlocalhost buildkitsandbox"),
        "{out}"
    );
    assert!(out.contains("10.9.8.7\tdb.internal"), "{out}");
    assert!(out.contains("nameserver"), "{out}");
    assert!(out.trim_end().ends_with("buildkitsandbox"), "{out}");
    let after = tree(&env.rootfs);
    assert_eq!(tree_diff(&before, &after), "", "rootfs changed");
}

fn rootfs_untouched_with_existing_mountpoints(rt: Rt) {
    let env = Env::new();
    for d in ["proc", "dev", "sys"] {
        std::fs::create_dir(env.rootfs.join(d)).expect("mkdir");
    }
    std::fs::write(env.rootfs.join("etc/hosts"), "original\n").expect("hosts");
    let before = tree(&env.rootfs);
    let out = run_ok(&env.executor(&rt), &env.req(&["cat", "/etc/hosts"]));
    assert!(out.contains("buildkitsandbox"), "{out}");
    assert_eq!(tree_diff(&before, &tree(&env.rootfs)), "", "rootfs changed");
    assert_eq!(
        std::fs::read_to_string(env.rootfs.join("etc/hosts")).expect("read"),
        "original\n"
    );
}

fn network_none_has_only_lo(rt: Rt) {
    let env = Env::new();
    let mut req = env.sh("ls /sys/class/net; cat /sys/class/net/lo/flags");
    req.network = Network::None;
    let out = run_ok(&env.executor(&rt), &req);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"lo"), "{out}");
    assert_eq!(lines.len(), 2, "{out}");
    let flags = u32::from_str_radix(lines[1].trim_start_matches("0x"), 16).expect("flags");
    assert_eq!(flags & 1, 1, "lo is not up: {out}");
}

fn no_mount_leaks(rt: Rt) {
    let env = Env::new();
    let exec = env.executor(&rt);
    let src = env.tmp.path().join("bind-src");
    std::fs::create_dir(&src).expect("mkdir");
    let before = mountinfo();
    let mut req = env.sh("ls /mnt/src; exit 7");
    req.mounts = vec![
        ExecMount::Bind {
            source: src.clone(),
            target: "/mnt/src".into(),
            readonly: true,
        },
        ExecMount::Tmpfs {
            target: "/scratch".into(),
            size: Some(1 << 20),
        },
    ];
    assert_eq!(run(&exec, &req).status, ExitStatus::Code(7));
    let mut bad = env.req(&["no-such-command"]);
    bad.mounts = req.mounts.clone();
    assert!(exec.run(&bad, &mut |_| {}).is_err());
    assert_eq!(before, mountinfo());
}

fn mounts_bind_tmpfs_secret(rt: Rt) {
    let env = Env::new();
    let src = env.tmp.path().join("ctx");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("f.txt"), "from host").expect("write");
    let before = tree(&env.rootfs);
    let mut req = env.sh(
        "cat /ctx/f.txt; echo; touch /ctx/x 2>/dev/null && echo writable || echo readonly; \
         cat /run/secrets/tok; echo; stat -c %a:%u:%g /run/secrets/tok; \
         echo hi > /scratch/a && cat /scratch/a",
    );
    req.mounts = vec![
        ExecMount::Bind {
            source: src,
            target: "/ctx".into(),
            readonly: true,
        },
        ExecMount::Tmpfs {
            target: "/scratch".into(),
            size: None,
        },
        ExecMount::Secret {
            data: b"s3cr3t".to_vec().into(),
            target: "/run/secrets/tok".into(),
            mode: 0o400,
            uid: 1000,
            gid: 1000,
        },
    ];
    let out = run_ok(&env.executor(&rt), &req);
    assert_eq!(out, "from host\nreadonly\ns3cr3t\n400:1000:1000\nhi\n");
    assert_eq!(tree_diff(&before, &tree(&env.rootfs)), "", "rootfs changed");
}

fn capabilities_default_and_insecure(rt: Rt) {
    let env = Env::new();
    let exec = env.executor(&rt);
    let cap_eff = |insecure: bool| {
        let mut req = env.req(&["grep", "CapEff", "/proc/self/status"]);
        req.insecure = insecure;
        let out = run_ok(&exec, &req);
        let hex = out
            .split_whitespace()
            .nth(1)
            .expect("CapEff value")
            .to_string();
        u64::from_str_radix(&hex, 16).expect("hex")
    };
    const SYS_ADMIN: u64 = 1 << 21;
    const CHOWN: u64 = 1;
    let default = cap_eff(false);
    assert_eq!(default & SYS_ADMIN, 0, "{default:x}");
    assert_eq!(default & CHOWN, CHOWN, "{default:x}");
    assert_eq!(default, 0x00000000a80425fb, "Docker's default set");
    assert_ne!(cap_eff(true) & SYS_ADMIN, 0);
}

fn masked_and_readonly_paths(rt: Rt) {
    let env = Env::new();
    let out = run_ok(
        &env.executor(&rt),
        &env.sh("wc -c < /proc/timer_list; echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo rw || echo ro"),
    );
    assert_eq!(out, "0\nro\n");
}

fn seccomp_default_profile_and_insecure(rt: Rt) {
    let env = Env::new();
    let exec = env.executor(&rt);
    // A user namespace needs no capability: only the profile forbids it.
    let script = "grep '^Seccomp:' /proc/self/status; \
                  unshare -U true 2>&1 && echo unshared || echo refused; \
                  (echo forked | cat) & wait";
    let out = run_ok(&exec, &env.sh(script));
    assert_eq!(
        out,
        "Seccomp:\t2\nunshare: unshare(0x10000000): Operation not permitted\nrefused\nforked\n"
    );
    let mut req = env.sh(script);
    req.insecure = true;
    assert_eq!(
        run_ok(&exec, &req),
        "Seccomp:\t0\nunshared\nforked\n",
        "--security=insecure runs without seccomp"
    );
}

fn background_processes_die(rt: Rt) {
    let env = Env::new();
    let marker = format!("{}", 800_000 + std::process::id() % 90_000);
    let start = Instant::now();
    let out = run_ok(
        &env.executor(&rt),
        &env.sh(&format!("sleep {marker} >/dev/null 2>&1 & echo started")),
    );
    assert_eq!(out, "started\n");
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(
        host_pids_with_cmdline(&["sleep", &marker]).is_empty(),
        "a process outlived the run"
    );
}

fn missing_command_is_an_error(rt: Rt) {
    let env = Env::new();
    let err = env
        .executor(&rt)
        .run(&env.req(&["no-such-command"]), &mut |_| {});
    let msg = err.expect_err("missing command must fail").to_string();
    eprintln!("missing command: {msg}");
    assert!(msg.contains("no-such-command"), "{msg}");
}

fn cancel_kills_everything(rt: Rt) {
    let env = Env::new();
    let exec = env.executor(&rt);
    let marker = format!("{}", 700_000 + std::process::id() % 90_000);
    let before = mountinfo();
    let token = CancelToken::new();
    let start = Instant::now();
    let res = exec.run_cancellable(
        &env.sh(&format!("echo ready; sleep {marker}; echo not-reached")),
        &mut |c: OutputChunk| {
            if String::from_utf8_lossy(&c.data).contains("ready") {
                token.cancel();
            }
        },
        &token,
    );
    assert!(matches!(res, Err(rbuild_exec::Error::Cancelled)), "{res:?}");
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(
        host_pids_with_cmdline(&["sleep", &marker]).is_empty(),
        "a process outlived the run"
    );
    assert_eq!(before, mountinfo());
    let bundles: Vec<_> = std::fs::read_dir(env.state.join("bundles"))
        .expect("bundles")
        .collect();
    assert!(bundles.is_empty(), "bundle dirs left: {bundles:?}");
}

fn state_dir_is_clean_after_runs(rt: Rt) {
    let env = Env::new();
    run_ok(&env.executor(&rt), &env.req(&["true"]));
    let bundles: Vec<_> = std::fs::read_dir(env.state.join("bundles"))
        .expect("bundles")
        .collect();
    assert!(bundles.is_empty(), "bundle dirs left: {bundles:?}");
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod runc {
            $( #[test] fn $name() { super::$name(super::Rt::Runc) } )*
        }
        mod embedded {
            $( #[test] fn $name() { super::$name(super::Rt::Embedded) } )*
        }
    };
}

conformance!(
    cannot_see_host_files,
    pid_namespace_only_own_processes,
    hostname_default_and_custom,
    exit_codes,
    killed_by_signal,
    users_and_groups,
    env_and_cwd,
    output_is_streamed,
    etc_files_present_and_not_left,
    rootfs_untouched_with_existing_mountpoints,
    network_none_has_only_lo,
    no_mount_leaks,
    mounts_bind_tmpfs_secret,
    capabilities_default_and_insecure,
    masked_and_readonly_paths,
    seccomp_default_profile_and_insecure,
    background_processes_die,
    missing_command_is_an_error,
    cancel_kills_everything,
    state_dir_is_clean_after_runs,
);
