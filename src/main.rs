//! The `rbuild` command: parses the command line, wires the crates together,
//! renders progress and maps errors to exit codes. The only crate that prints.

mod admin;
mod build;
mod cache;
mod checks;
mod cli;
mod progress;
mod resolve;
mod state;

use clap::Parser;
use std::process::ExitCode;

/// An error already laid out for the terminal: context lines, then a summary.
#[derive(Debug)]
pub struct Rendered {
    /// Lines shown before the summary (output tail, Dockerfile excerpt).
    pub block: String,
    /// The one-line summary printed after `ERROR: `.
    pub summary: String,
}

impl std::fmt::Display for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.block, self.summary)
    }
}

impl std::error::Error for Rendered {}

/// The build was cancelled by a signal: Ctrl-C (SIGINT) or SIGTERM.
#[derive(Debug, Clone, Copy)]
pub enum Interrupted {
    /// Ctrl-C: exit code 130.
    Sigint,
    /// SIGTERM (a CI job's timeout, `kill`): exit code 143.
    Sigterm,
}

impl Interrupted {
    /// 128 + the signal number, as a shell reports a death by that signal.
    pub fn exit_code(self) -> u8 {
        match self {
            Interrupted::Sigint => 130,
            Interrupted::Sigterm => 143,
        }
    }
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interrupted::Sigint => f.write_str("build cancelled (interrupted)"),
            Interrupted::Sigterm => f.write_str("build cancelled (terminated)"),
        }
    }
}

impl std::error::Error for Interrupted {}

/// mimalloc: lowering a large Dockerfile makes ~90k small allocations, and
/// glibc's malloc was a fifth of that time (bench_parse, callgrind).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before any thread exists, so every thread inherits the empty mask.
    rbuild_exec::clear_signal_mask();
    // The embedded runtime re-executes this binary as its sandbox helper.
    rbuild_exec::maybe_run_embedded_helper();

    let args = cli::normalize_args(std::env::args().collect());
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let result = match &cli.command {
        cli::Command::Build(b) => build::run(&cli, b),
        cli::Command::Debug(d) => build::debug(&cli, d),
        cli::Command::Du => admin::du(&cli),
        cli::Command::Prune(p) => admin::prune(&cli, p),
        cli::Command::Login(l) => admin::login(&cli, l),
        cli::Command::Logout { server } => admin::logout(&cli, server.as_deref()),
        cli::Command::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                *shell,
                &mut cli::Cli::command(),
                "rbuild",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(r) = e.downcast_ref::<Rendered>() {
                eprint!("{}", r.block);
                eprintln!("ERROR: {}", r.summary);
            } else {
                eprintln!("ERROR: {}", error_text(&e));
            }
            if let Some(why) = e.downcast_ref::<Interrupted>() {
                return ExitCode::from(why.exit_code());
            }
            ExitCode::from(1)
        }
    }
}

/// An error and its causes as one line, `outer: cause: root cause`. A cause
/// whose text its parent already ends with is skipped: many library errors
/// print their source in their own message (`path: Broken pipe`), which
/// anyhow's `{:#}` would repeat.
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod error_text_tests {
    use super::error_text;

    /// Like the libraries' IO errors: the message includes the source.
    #[derive(Debug)]
    struct WithSource {
        path: String,
        source: std::io::Error,
    }

    impl std::fmt::Display for WithSource {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.path, self.source)
        }
    }

    impl std::error::Error for WithSource {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let e = anyhow::Error::new(WithSource {
            path: "/x".into(),
            source: io,
        })
        .context("export type=tar");
        assert_eq!(error_text(&e), "export type=tar: /x: broken pipe");
        let plain = anyhow::anyhow!("root").context("middle").context("top");
        assert_eq!(error_text(&plain), "top: middle: root");
    }
}
