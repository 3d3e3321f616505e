//! Time N runs of `true` on a busybox rootfs for each runtime.
//!
//! `cargo run --release -p rbuild-exec --example bench_run -- [N]` (as root,
//! with runc and busybox-static installed). Both runtimes use this example
//! binary itself as their sandbox helper.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rbuild_exec::{Executor, ExitStatus, ProcessSpec, RunRequest, Runtime};

fn busybox_rootfs(dir: &Path) -> std::io::Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::create_dir_all(rootfs.join("etc"))?;
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))?;
    for a in ["sh", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a))?;
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n")?;
    Ok(rootfs)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    rbuild_exec::maybe_run_embedded_helper();
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20);
    let tmp = tempfile::tempdir()?;
    let rootfs = busybox_rootfs(tmp.path())?;
    let req = RunRequest::new(
        &rootfs,
        ProcessSpec {
            args: vec!["true".into()],
            ..Default::default()
        },
    );
    let runtimes = [
        ("embedded", Runtime::Embedded),
        ("runc", Runtime::External(PathBuf::from("runc"))),
    ];
    for (name, rt) in runtimes {
        let exec = match Executor::new(rt, tmp.path().join(format!("state-{name}"))) {
            Ok(e) => e,
            Err(e) => {
                println!("{name:>9}: unavailable: {e}");
                continue;
            }
        };
        // Warm up (page cache, first-run state dirs).
        exec.run(&req, &mut |_| {})?;
        let start = Instant::now();
        for _ in 0..n {
            let st = exec.run(&req, &mut |_| {})?;
            if st != ExitStatus::Code(0) {
                return Err(format!("{name}: `true` ended with {st}").into());
            }
        }
        let ms = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
        println!("{name:>9}: {ms:.1} ms per run (mean of {n})");
    }
    Ok(())
}
