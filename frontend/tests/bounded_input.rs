//! Hostile Dockerfiles: deep nesting, long chains and huge lines are
//! errors (or build), never a stack overflow or a hang.

use rbuild_frontend::{build, BuildOptions, FrontendError, ImageResolver, ResolvedImage};

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

fn lower(src: &str) -> Result<rbuild_frontend::LoweredBuild, FrontendError> {
    build(src, &BuildOptions::default(), &Fake)
}

/// `${a:-${a:-…x…}}` nested `depth` levels.
fn nested(depth: usize) -> String {
    format!("{}x{}", "${a:-".repeat(depth), "}".repeat(depth))
}

/// Regression: 10,000 nested `${…}` aborted rbuild with a stack overflow.
#[test]
fn deeply_nested_substitution_is_an_error_at_its_line() {
    let src = format!("FROM busybox\nENV X={}\n", nested(10_000));
    let e = lower(&src).expect_err("too deep");
    let d = &e.diagnostics[0];
    assert_eq!((d.line, d.col), (2, 7), "{d}");
    assert!(
        d.message
            .ends_with("substitutions nested deeper than 128 levels"),
        "{}",
        d.message
    );
    assert!(e
        .to_string()
        .starts_with("Dockerfile:2:7: failed to process"));
    // A normal depth still expands, as in BuildKit.
    let ok = format!("FROM busybox\nENV X={}\n", nested(3));
    let env = lower(&ok).expect("lowers").config.config.env.expect("env");
    assert!(env.contains(&"X=x".to_string()), "{env:?}");
}

#[test]
fn long_onbuild_chain_is_an_error() {
    let src = format!("FROM busybox\n{}RUN true\n", "ONBUILD \\\n".repeat(10_000));
    let e = lower(&src).expect_err("too deep");
    let d = &e.diagnostics[0];
    assert_eq!(d.line, 2, "{d}");
    assert_eq!(
        d.message,
        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    );
}

#[test]
fn deep_json_brackets_are_not_json() {
    let src = format!(
        "FROM busybox\nRUN {}\nCMD {}\n",
        "[".repeat(100_000),
        "[".repeat(60_000)
    );
    let _ = lower(&src);
    let src = format!("FROM busybox\nCOPY {} /x\n", "[".repeat(60_000));
    let _ = lower(&src);
}

#[test]
fn huge_line_continuation_builds() {
    let src = format!(
        "FROM busybox\nRUN echo \\\n{}done\n",
        "  a \\\n".repeat(200_000)
    );
    let b = lower(&src).expect("lowers");
    assert!(b.graph.vertices.len() >= 2);
}

/// Regression: the stage order was a recursive walk, one call per stage of
/// a `FROM` chain.
#[test]
fn long_stage_chain_builds() {
    let n = 5_000;
    let mut src = String::from("FROM busybox AS s0\n");
    for i in 1..n {
        src.push_str(&format!("FROM s{} AS s{i}\n", i - 1));
    }
    src.push_str("RUN true\n");
    let b = lower(&src).expect("lowers");
    assert!(b.graph.vertices.len() >= 2);
}
