//! The walking skeleton, end to end: build examples/hello against the local
//! registry, check the image with skopeo, and run it with podman.

mod common;
use common::*;

fn inspect_config(reference: &str) -> serde_json::Value {
    let out = cmd("skopeo", &["inspect", "--config", reference]);
    serde_json::from_str(&out).expect("skopeo config json")
}

#[test]
fn hello_builds_to_an_oci_archive_that_skopeo_and_podman_accept() {
    require_root();
    require_tool("skopeo", "skopeo");
    require_tool("podman", "podman");
    require_registry();
    let rb = Rbuild::new();
    let out = tempfile::tempdir().expect("tmp");
    let oci = out.path().join("hello.tar");
    let docker = out.path().join("hello-docker.tar");
    rb.ok([
        "build",
        "-t",
        "hello:latest",
        "--output",
        &format!("type=oci,dest={}", oci.display()),
        "--output",
        &format!("type=docker,dest={}", docker.display()),
        "examples/hello",
    ]);

    let cfg = inspect_config(&format!("oci-archive:{}", oci.display()));
    let env: Vec<String> = serde_json::from_value(cfg["config"]["Env"].clone()).expect("Env");
    assert!(
        env.contains(&"GREETING=hello from rbuild".to_string()),
        "{env:?}"
    );
    assert!(env.contains(&"TARGET=world".to_string()), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    assert_eq!(cfg["config"]["WorkingDir"], "/app");
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["/app/hello.sh"]));
    assert_eq!(cfg["os"], "linux");

    let info: serde_json::Value = serde_json::from_str(&cmd(
        "skopeo",
        &["inspect", &format!("oci-archive:{}", oci.display())],
    ))
    .expect("skopeo inspect json");
    // busybox (1) + WORKDIR /app (new directory) + COPY + RUN.
    assert_eq!(
        info["Layers"].as_array().map(|l| l.len()),
        Some(4),
        "{info}"
    );

    let load = podman(&["load", "-i", &docker.to_string_lossy()]);
    assert!(
        load.status.success(),
        "podman load: {}",
        String::from_utf8_lossy(&load.stderr)
    );
    let run = podman(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=4096:4096",
        "docker.io/library/hello:latest",
    ]);
    let _ = podman(&["rmi", "-f", "docker.io/library/hello:latest"]);
    assert!(
        run.status.success(),
        "podman run: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        "hello from rbuild, world! (built by rbuild)"
    );
}

#[test]
fn shorthand_stores_the_image_in_rbuilds_oci_layout() {
    require_root();
    require_tool("skopeo", "skopeo");
    require_registry();
    let rb = Rbuild::new();
    let meta_file = rb.path().join("metadata.json");
    let iid_file = rb.path().join("iid");
    let stderr = rb.ok([
        "-t",
        "hello",
        "--metadata-file",
        &meta_file.to_string_lossy(),
        "--iidfile",
        &iid_file.to_string_lossy(),
        "examples/hello",
    ]);
    assert!(stderr.contains("hello:latest"), "{stderr}");
    let cfg = inspect_config(&format!("oci:{}:hello:latest", rb.path().display()));
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["/app/hello.sh"]));
    // --iidfile holds the config digest; --metadata-file uses buildx's keys.
    let iid = std::fs::read_to_string(&iid_file).expect("iidfile");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_file).expect("metadata")).expect("json");
    assert_eq!(meta["containerimage.config.digest"], serde_json::json!(iid));
    let manifest = meta["containerimage.digest"].as_str().expect("digest");
    assert_eq!(meta["containerimage.descriptor"]["digest"], manifest);
    assert_eq!(
        meta["containerimage.descriptor"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(
        meta["containerimage.descriptor"]["size"]
            .as_u64()
            .expect("size")
            > 0
    );
    assert_eq!(meta["image.name"], "docker.io/library/hello:latest");
    // Unnamed: no `image.name` at all.
    rb.ok([
        "build",
        "--metadata-file",
        &meta_file.to_string_lossy(),
        "examples/hello",
    ]);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_file).expect("metadata")).expect("json");
    assert!(meta.get("image.name").is_none(), "{meta}");
    // A second build of the same input is fully cached.
    let again = rb.ok(["-t", "hello", "--progress=plain", "examples/hello"]);
    assert!(again.contains("CACHED"), "{again}");
    assert!(
        !again.contains("DONE"),
        "nothing should run again:\n{again}"
    );
}

#[test]
fn push_sends_the_image_to_the_registry() {
    require_root();
    require_tool("skopeo", "skopeo");
    require_registry();
    let rb = Rbuild::new();
    let name = format!("{}/rbuild-e2e/hello:p{}", registry(), std::process::id());
    let stderr = rb.ok([
        "build",
        "--push",
        "-t",
        &name,
        "--progress=plain",
        "examples/hello",
    ]);
    assert!(
        stderr.contains(&format!("pushing {name}@sha256:")),
        "{stderr}"
    );
    let cfg = serde_json::from_str::<serde_json::Value>(&cmd(
        "skopeo",
        &[
            "inspect",
            "--config",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ],
    ))
    .expect("config json");
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["/app/hello.sh"]));
    // --push without a name is a clear error.
    let out = rb.run(["build", "--push", "examples/hello"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--push needs a name"));
}

#[test]
fn dash_output_writes_the_rootfs_tar_to_stdout_and_a_closed_pipe_is_named() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    // `-o -` is `type=tar,dest=-`: the final rootfs as one tar on stdout.
    let out = rb.run(["build", "-o", "-", "examples/hello"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(&out.stdout[..]);
    for e in archive.entries().expect("a tar on stdout") {
        let e = e.expect("tar entry");
        names.push(e.path().expect("path").to_string_lossy().into_owned());
    }
    for want in ["app/hello.sh", "app/build-info", "bin/busybox"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }

    // A reader that stops early: the error says stdout went away, once.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(rb.path())
        .args(["build", "-q", "-o", "-", "examples/hello"])
        .current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn rbuild");
    let mut first = [0u8; 512];
    std::io::Read::read_exact(child.stdout.as_mut().expect("stdout"), &mut first)
        .expect("the start of the tar");
    drop(child.stdout.take());
    let done = child.wait_with_output().expect("rbuild exits");
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ERROR: export type=tar: writing the export to stdout: broken pipe\n"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("broken pipe").count(), 1, "{stderr}");
}

#[test]
fn a_context_archive_on_stdin_is_the_build_context() {
    require_root();
    require_registry();
    use std::io::Write;
    let rb = Rbuild::new();
    // `docker build - < ctx.tar`: the archive is the context; `-f` names a
    // file inside it. Plain and gzip archives.
    let mut plain = tar::Builder::new(Vec::new());
    plain
        .append_dir_all(".", repo().join("examples/hello"))
        .expect("archive the example");
    let plain = plain.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).expect("gzip");
    let gz = gz.finish().expect("gzip");
    for (what, bytes) in [("tar", plain), ("tar.gz", gz)] {
        let out = tempfile::tempdir().expect("tmp");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
            .arg("--root")
            .arg(rb.path())
            .args(["build", "-q", "-f", "Dockerfile", "-o"])
            .arg(format!("type=local,dest={}", out.path().display()))
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn rbuild");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&bytes)
            .expect("send the archive");
        let done = child.wait_with_output().expect("rbuild exits");
        assert!(
            done.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&done.stderr)
        );
        let info = std::fs::read_to_string(out.path().join("app/build-info")).expect(what);
        assert_eq!(info, "built by rbuild\n", "{what}");
        assert!(out.path().join("app/hello.sh").exists(), "{what}");
    }
}
