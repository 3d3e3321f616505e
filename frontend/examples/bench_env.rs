//! Parse and lower a Dockerfile of many ENV and ARG lines (80,000 by
//! default, `BENCH_LINES=n` to change) and print the time. Lowering must be
//! linear in the number of variables: each line's expansion looks names up
//! in the environment so far, and each ENV extends it.
//!
//! `cargo run --release -p rbuild-frontend --example bench_env`

use rbuild_frontend::{build, BuildOptions, ImageResolver, ResolvedImage};
use std::fmt::Write;
use std::time::Instant;

// The allocator the rbuild binary uses, so the figure is the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Fake;

impl ImageResolver for Fake {
    fn resolve(&self, r: &str, p: &rbuild_graph::Platform) -> Result<ResolvedImage, String> {
        Ok(ResolvedImage {
            reference: format!("docker.io/library/{r}"),
            config: rbuild_graph::ImageConfig {
                architecture: p.architecture.clone(),
                os: p.os.clone(),
                ..Default::default()
            },
        })
    }
}

/// `lines` lines: half `ARG`, half `ENV`, each looking up the previous
/// variable (values stay short), then one RUN so the environment reaches an
/// exec vertex.
fn generate(lines: usize) -> String {
    let mut s = String::from("FROM busybox\n");
    for i in 0..lines {
        let _ = if i % 2 == 0 {
            writeln!(s, "ARG A{i}=a${{E{}:+x}}", i.saturating_sub(1))
        } else {
            writeln!(s, "ENV E{i}=\"e${{A{}:+y}} z\"", i - 1)
        };
    }
    s.push_str("RUN true\n");
    s
}

fn main() {
    let lines: usize = std::env::var("BENCH_LINES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(80_000);
    let src = generate(lines);
    let t = Instant::now();
    match build(&src, &BuildOptions::default(), &Fake) {
        Ok(b) => println!(
            "parsed+lowered {lines} ENV/ARG lines into {} vertices in {:.3} s",
            b.graph.vertices.len(),
            t.elapsed().as_secs_f64()
        ),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
