//! The state dir beside running builds: `rbuild prune` spares what a
//! running build uses, a build killed during a RUN with a secret leaves the
//! secret nowhere under the state dir, and concurrent cache exports into one
//! directory all succeed.
//!
//! A RUN that must stay running while the test acts fetches a URL from a
//! server the test runs on 127.0.0.1 (RUN uses the host network): the RUN is
//! running once the server accepts, and it ends only when the test answers.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A spawned rbuild whose stderr is collected on a thread.
struct Running {
    child: Child,
    stderr: std::thread::JoinHandle<String>,
}

fn spawn_build(rb: &Rbuild, args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(rb.path())
        .arg("build")
        .args(args)
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rbuild");
    let mut err = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    Running { child, stderr }
}

impl Running {
    /// Wait for the build's end: (success, stderr).
    fn finish(mut self) -> (bool, String) {
        let status = self.child.wait().expect("wait rbuild");
        (status.success(), self.stderr.join().expect("stderr thread"))
    }
}

/// Wait until the RUN connects to `listener` and has sent its request;
/// fails with rbuild's output if the build ends first.
fn wait_for_run(listener: &TcpListener, build: &mut Running) -> TcpStream {
    listener.set_nonblocking(true).expect("nonblocking");
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = build.child.try_wait().expect("try_wait") {
                    let out = std::mem::replace(&mut build.stderr, std::thread::spawn(String::new));
                    panic!(
                        "the build ended ({status}) before its RUN connected:\n{}",
                        out.join().unwrap_or_default()
                    );
                }
                // Polls the build's state, not a deadline.
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    conn.set_nonblocking(false).expect("blocking");
    let mut req = Vec::new();
    let mut b = [0u8; 1];
    while !req.ends_with(b"\r\n\r\n") {
        match conn.read(&mut b) {
            Ok(1) => req.push(b[0]),
            _ => break,
        }
    }
    conn
}

fn respond(mut conn: TcpStream, body: &str) {
    let _ = write!(
        conn,
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn context(dockerfile: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().expect("tmp");
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).expect("write Dockerfile");
    ctx
}

fn ok(out: &std::process::Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

#[test]
fn prune_beside_a_running_build_spares_everything_it_uses() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    // Stage a's result is needed again by the last COPY, after the RUN that
    // waits for the test: nothing but the build's lease protects it then.
    let ctx = context(&format!(
        "FROM {r}/library/busybox:latest AS a\n\
         RUN echo built-a > /a && dd if=/dev/zero of=/pad bs=1k count=64 2>/dev/null\n\
         FROM {r}/library/busybox:latest AS b\n\
         COPY --from=a /a /a0\n\
         ARG PORT\n\
         RUN wget -q -O /w http://127.0.0.1:$PORT/\n\
         FROM b\n\
         COPY --from=a /a /a\n",
        r = registry()
    ));
    let out = tempfile::tempdir().expect("out");
    let dest = format!("type=local,dest={}", out.path().join("rootfs").display());
    let mut build = spawn_build(
        &rb,
        &[
            "--progress=plain",
            "--build-arg",
            &format!("PORT={port}"),
            "--output",
            &dest,
            ctx.path().to_str().expect("utf-8 path"),
        ],
    );
    let _watchdog = Watchdog::new(build.child.id(), 300);
    let conn = wait_for_run(&listener, &mut build);

    // The build is inside its RUN: prune, then prune everything prunable.
    ok(&rb.run(["prune"]), "rbuild prune");
    let all = ok(&rb.run(["prune", "--all"]), "rbuild prune --all");
    respond(conn, "payload-after-prune\n");
    let (success, stderr) = build.finish();
    assert!(success, "the build failed beside prune:\n{stderr}\n{all}");

    let root = out.path().join("rootfs");
    let read =
        |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("a"), "built-a\n");
    assert_eq!(read("a0"), "built-a\n");
    assert_eq!(read("w"), "payload-after-prune\n");
    assert!(
        root.join("bin/busybox").is_file(),
        "the base image is whole"
    );
    // The dead-free state dir has no lease left once the build ended.
    let leases: Vec<_> = std::fs::read_dir(rb.path().join("leases"))
        .expect("leases")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .collect();
    assert!(leases.is_empty(), "leases left: {leases:?}");
}

/// Every process below `pid`, found by the parent pid in `/proc/*/stat`.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| {
            let p: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // Field 4 (ppid) follows the parenthesised command name.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for &(child, _) in parents.iter().filter(|(_, pp)| *pp == p) {
            out.push(child);
            todo.push(child);
        }
    }
    out
}

/// Block until process `pid` has exited (pidfd: no polling).
fn wait_exit(pid: u32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as i32;
    if fd < 0 {
        return; // already gone
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; -1 waits until the process exits.
    unsafe {
        libc::poll(&mut pfd, 1, -1);
        libc::close(fd);
    }
}

/// Regular files under `dir` (symlinks not followed) that contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                todo.push(e.path());
            } else if md.is_file() {
                if let Ok(bytes) = std::fs::read(e.path()) {
                    if bytes.windows(needle.len()).any(|w| w == needle) {
                        hits.push(e.path().display().to_string());
                    }
                }
            }
        }
    }
    hits
}

/// Mounts whose mount point is under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = format!(" {}/", dir.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.contains(&prefix))
        .map(str::to_string)
        .collect()
}

fn killed_during_a_run_with_a_secret(runtime: &str) {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let secret_dir = tempfile::tempdir().expect("tmp");
    let value = format!("rbuild-test-secret-{}-{runtime}-x9q", std::process::id());
    let secret_file = secret_dir.path().join("tok");
    std::fs::write(&secret_file, &value).expect("write secret");
    let dockerfile = format!(
        "FROM {}/library/busybox:latest\n\
         RUN echo step1 > /s\n\
         ARG PORT\n\
         RUN --mount=type=secret,id=tok wget -q -O /w http://127.0.0.1:$PORT/ && test -s /run/secrets/tok\n",
        registry()
    );
    let ctx = context(&dockerfile);
    let args = |port: u16| {
        vec![
            "--progress=plain".to_string(),
            "--runtime".into(),
            runtime.into(),
            "--secret".into(),
            format!("id=tok,src={}", secret_file.display()),
            "--build-arg".into(),
            format!("PORT={port}"),
            ctx.path().display().to_string(),
        ]
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let a = args(port);
    let mut build = spawn_build(&rb, &a.iter().map(String::as_str).collect::<Vec<_>>());
    let _watchdog = Watchdog::new(build.child.id(), 300);
    let conn = wait_for_run(&listener, &mut build);

    // The RUN holds the secret now: kill rbuild outright, then wait until
    // everything it started (its sandbox helper) has ended.
    let below = descendants(build.child.id());
    assert!(!below.is_empty(), "no sandbox helper below rbuild");
    build.child.kill().expect("SIGKILL");
    build.child.wait().expect("wait");
    for p in below {
        wait_exit(p);
    }
    drop(conn);

    let hits = files_containing(rb.path(), value.as_bytes());
    assert!(
        hits.is_empty(),
        "the secret is on disk after kill -9: {hits:?}"
    );
    ok(&rb.run(["prune"]), "rbuild prune");
    let hits = files_containing(rb.path(), value.as_bytes());
    assert!(
        hits.is_empty(),
        "the secret is on disk after prune: {hits:?}"
    );
    let left = mounts_under(rb.path());
    assert!(left.is_empty(), "mounts left after prune: {left:#?}");

    // The state dir still works, and its cache too.
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 1024];
        let _ = c.read(&mut buf);
        respond(c, "second\n");
    });
    let again = ok(
        &rb.run(["build"].into_iter().map(String::from).chain(args(port))),
        "the next build",
    );
    server.join().expect("server");
    assert!(again.contains("CACHED"), "step1 should be cached:\n{again}");
    let hits = files_containing(rb.path(), value.as_bytes());
    assert!(
        hits.is_empty(),
        "the secret is on disk after a build: {hits:?}"
    );
}

#[test]
fn secret_of_a_build_killed_during_run_is_nowhere_in_the_state_dir_embedded() {
    killed_during_a_run_with_a_secret("embedded");
}

#[test]
fn secret_of_a_build_killed_during_run_is_nowhere_in_the_state_dir_runc() {
    require_tool("runc", "runc");
    killed_during_a_run_with_a_secret("runc");
}

#[test]
fn concurrent_local_cache_exports_into_one_dir_all_succeed() {
    require_root();
    require_registry();
    let dir = tempfile::tempdir().expect("tmp");
    let cache = dir.path().join("cache");
    let n = 4;
    let builders: Vec<(Rbuild, tempfile::TempDir)> = (0..n)
        .map(|_| {
            let rb = Rbuild::new();
            // The same steps: the exports race for the same blob and index
            // names.
            let ctx = context(&format!(
                "FROM {}/library/busybox:latest\nRUN echo shared > /n\n",
                registry()
            ));
            // Warm: the concurrent builds are all cache hits, so their
            // exports start together.
            rb.ok(["build", ctx.path().to_str().expect("utf-8")]);
            (rb, ctx)
        })
        .collect();
    let to = format!("--cache-to=type=local,dest={}", cache.display());
    let running: Vec<Running> = builders
        .iter()
        .map(|(rb, ctx)| spawn_build(rb, &[&to, ctx.path().to_str().expect("utf-8")]))
        .collect();
    for (i, r) in running.into_iter().enumerate() {
        let (success, stderr) = r.finish();
        assert!(success, "export {i} into the shared dir failed:\n{stderr}");
    }
    // The directory is a whole layout, and one of the caches imports.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("index.json")).expect("index"))
            .expect("index.json is whole");
    assert!(index["manifests"].as_array().is_some_and(|m| !m.is_empty()));
    let leftovers: Vec<_> = std::fs::read_dir(&cache)
        .expect("cache dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "index.json" && n != "oci-layout" && n != "blobs")
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    let fresh = Rbuild::new();
    let last = &builders[n - 1].1;
    let out = fresh.ok([
        "build",
        "--progress=plain",
        &format!("--cache-from=type=local,src={}", cache.display()),
        last.path().to_str().expect("utf-8"),
    ]);
    assert!(out.contains("CACHED"), "the exported cache imports:\n{out}");
}
