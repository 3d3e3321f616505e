//! Parse and lower a generated 2,000-line Dockerfile and print the time.
//!
//! `cargo run --release -p rbuild-frontend --example bench_parse`

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

fn generate(lines: usize) -> String {
    let mut s = String::from("ARG BASE=busybox\n");
    let mut i = 0;
    while s.lines().count() < lines {
        if i % 200 == 0 {
            let _ = writeln!(s, "FROM ${{BASE}} AS s{i}");
            if i > 0 {
                let _ = writeln!(s, "COPY --from=s{} /out /in{i}", i - 200);
            }
        }
        let _ = match i % 8 {
            0 if std::env::var_os("BENCH_NO_ENV").is_some() => writeln!(s, "LABEL V{i}=value{i}"),
            0 => writeln!(s, "ENV V{i}=value{i} W{i}=\"${{V{i}:-x}} y\""),
            1 => writeln!(s, "RUN echo $V{} && \\\n    make -j4 target{i}", i - 1),
            2 => writeln!(s, "COPY --chown=1000:1000 src{i}/ /app/{i}/"),
            3 => writeln!(s, "WORKDIR /w/{i}"),
            4 => writeln!(s, "ARG A{i}=${{V{}:+set}}", i - 4),
            5 => writeln!(s, "LABEL l{i}=\"label {i}\""),
            6 => writeln!(
                s,
                "RUN --mount=type=cache,target=/cache{i} [\"sh\", \"-c\", \"true\"]"
            ),
            _ => writeln!(s, "# comment {i}\nEXPOSE {}", 1000 + i),
        };
        i += 1;
    }
    s
}

fn main() {
    let src = generate(2000);
    if std::env::var_os("BENCH_PHASES").is_some() {
        phase_times(&src);
        if let Ok(b) = build(&src, &BuildOptions::default(), &Fake) {
            let lens: Vec<usize> = b
                .graph
                .vertices
                .values()
                .map(|v| v.canonical_bytes().len())
                .collect();
            let (bytes, max) = (lens.iter().sum::<usize>(), lens.iter().max().unwrap_or(&0));
            println!("vertex encodings: {bytes} bytes in all, largest {max}");
            let mut rules = std::collections::BTreeMap::new();
            for c in &b.checks {
                *rules.entry(c.rule.name).or_insert(0) += 1;
            }
            println!("check warnings by rule: {rules:?}");
            if let Some(c) = b.checks.first() {
                println!("first: {c}");
            }
        }
    }
    let opts = BuildOptions::default();
    let mut times = Vec::new();
    let mut vertices = 0;
    let mut checks = 0;
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    for _ in 0..runs {
        let t = Instant::now();
        match build(&src, &opts, &Fake) {
            Ok(b) => {
                vertices = b.graph.vertices.len();
                checks = b.checks.len();
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    if let Ok(path) = std::env::var("BENCH_DUMP") {
        let text: Vec<String> = times.iter().map(|t| format!("{t:.3}")).collect();
        let _ = std::fs::write(path, text.join("\n"));
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: usize| times[(times.len() - 1) * p / 100];
    println!(
        "parsed+lowered {} lines into {vertices} vertices ({checks} check warnings) in {runs} runs: \
         best {:.3} ms, p10 {:.3} ms, median {:.3} ms, p90 {:.3} ms",
        src.lines().count(),
        times[0],
        pct(10),
        pct(50),
        pct(90),
    );
}

#[allow(dead_code)]
fn phase_times(src: &str) {
    let mut best = f64::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        let _ = rbuild_frontend::parser::parse(src);
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("parse only: best {best:.3} ms");
}
