//! A tiny binary that only serves as the embedded-runtime helper, so the
//! exec crate's own tests and benchmarks need not build `rbuild`.

fn main() {
    rbuild_exec::maybe_run_embedded_helper();
    eprintln!(
        "rbuild-exec-helper: run as `{} ...` by rbuild-exec",
        rbuild_exec::HELPER_ARG
    );
    std::process::exit(2);
}
