//! Progress as a user sees it: the live display on a terminal (run under a
//! pseudo-terminal with `script`), plain lines without one, and the same
//! error text either way.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

/// Run rbuild with `args` on a pseudo-terminal; returns what the terminal
/// showed (escape sequences removed, `\r\n` as `\n`) and the exit code.
fn on_terminal(rb: &Rbuild, args: &[&str]) -> (String, Option<i32>) {
    require_tool("script", "bsdutils");
    let mut line = format!(
        "{} --root {}",
        env!("CARGO_BIN_EXE_rbuild"),
        rb.path().display()
    );
    for a in args {
        line.push_str(&format!(" '{a}'"));
    }
    let out = Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .current_dir(repo())
        .env_remove("NO_COLOR")
        .output()
        .expect("run script (apt-get install -y bsdutils)");
    let raw = String::from_utf8_lossy(&out.stdout).to_string();
    (strip_ansi(&raw).replace("\r\n", "\n"), out.status.code())
}

/// `text` without CSI escape sequences (`ESC [ … final`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The last frame: from the last `[+] Building` header to the end.
fn last_frame(screen: &str) -> &str {
    let at = screen
        .rfind("[+] Building")
        .expect("no [+] Building header");
    &screen[at..]
}

fn write_dockerfile(dir: &Path, body: &str) {
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM {}/library/busybox:latest\n{body}", registry()),
    )
    .expect("write Dockerfile");
}

#[test]
fn terminal_shows_a_block_of_steps_with_cached_markers_and_the_image_name() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let iid = rb.path().join("iid");
    let iid_s = iid.to_string_lossy().to_string();
    let args = [
        "build",
        "-t",
        "hello:tty",
        "--iidfile",
        &iid_s,
        "examples/hello",
    ];
    let (first, code) = on_terminal(&rb, &args);
    assert_eq!(code, Some(0), "{first}");
    let (second, code) = on_terminal(&rb, &args);
    assert_eq!(code, Some(0), "{second}");
    let image_id = std::fs::read_to_string(&iid).expect("iidfile");

    for screen in [&first, &second] {
        assert!(!screen.contains("\n#1 "), "plain lines on a tty:\n{screen}");
        let frame = last_frame(screen);
        assert!(
            frame.starts_with("[+] Building ") && frame.contains("(5/5) FINISHED\n"),
            "{frame}"
        );
        assert!(frame.contains(" => exporting to image "), "{frame}");
        // The final lines are whole: the full image ID and the name.
        assert!(
            frame.contains(&format!(" => => writing image {image_id}")),
            "{frame}"
        );
        assert!(frame.contains(" => => naming to hello:tty "), "{frame}");
        assert!(frame.contains("image hello:tty is in rbuild's store"));
    }
    // The first build ran its steps, live; the second found them all cached.
    assert!(first.contains(" => [4/4] RUN chmod 0755 /app/hello.sh"));
    assert!(!first.contains("CACHED [4/4]"), "{first}");
    let frame = last_frame(&second);
    for step in [
        "[2/4] WORKDIR /app",
        "[3/4] COPY hello.sh /app/",
        "[4/4] RUN chmod 0755",
    ] {
        assert!(frame.contains(&format!(" => CACHED {step}")), "{frame}");
    }
}

#[test]
fn a_failing_step_on_a_terminal_shows_its_output_and_the_same_error_as_plain() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    let ctx_s = ctx.path().to_string_lossy().to_string();
    write_dockerfile(
        ctx.path(),
        // One output stream: the order of stdout and stderr is not kept.
        "RUN for i in 1 2 3 4 5 6 7 8; do echo line $i; done; echo about to fail; exit 3\nRUN echo never\n",
    );
    let (screen, code) = on_terminal(&rb, &["build", &ctx_s]);
    assert_eq!(code, Some(1), "{screen}");
    let plain = rb.run(["build", "--progress=plain", &ctx_s]);
    assert_eq!(plain.status.code(), Some(1));
    let plain = String::from_utf8_lossy(&plain.stderr).to_string();

    let frame = last_frame(&screen);
    assert!(
        frame.contains(" => ERROR [2/3] RUN for i in 1 2 3 4 5 6 7 8;"),
        "{frame}"
    );
    assert!(!frame.contains("FINISHED"), "{frame}");
    // The error block: the step's last output, the Dockerfile lines and the
    // message, exactly as --progress=plain ends.
    let tail = |s: &str| -> String {
        let at = s.find("------\n").expect("no error block");
        s[at..].to_string()
    };
    let block = tail(frame);
    assert_eq!(block, tail(&plain));
    for want in [
        "line 8\nabout to fail\n------\n",
        "Dockerfile:2\n",
        "ERROR: failed to solve: process \"/bin/sh -c for i in",
        "did not complete successfully: exit code: 3\n",
    ] {
        assert!(block.contains(want), "{want:?} missing:\n{block}");
    }
}

#[test]
fn progress_tty_without_a_terminal_fails_and_auto_prints_plain_lines() {
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    let ctx_s = ctx.path().to_string_lossy().to_string();
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nENV A=1\n").expect("write");
    let out = rb.run(["build", "--progress=tty", &ctx_s]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ERROR: failed to get console: stderr is not a terminal"),
        "{err}"
    );

    let err = rb.ok(["build", "-t", "plain:auto", &ctx_s]);
    assert!(
        !err.contains('\u{1b}'),
        "escape sequences without a tty:\n{err}"
    );
    assert!(err.contains("#0 naming to plain:auto done\n"), "{err}");
}
