//! Progress rendering, the only place that prints build progress.
//!
//! - [`plain`]: BuildKit's plain lines (`#N [stage 1/3] RUN …`), raw JSON,
//!   or nothing; one write per event, for CI logs and machines.
//! - [`board`]: the state of a terminal display and the pure function that
//!   turns it into lines (`[+] Building 3.2s (7/9)`, ` => [build 2/5] …`).
//! - [`tty`]: draws those lines on a terminal, redrawn in place ~10 times a
//!   second by a ticker thread.
//!
//! `--progress=auto` picks the terminal display when stderr is a terminal and
//! plain lines otherwise; `--progress=tty` without a terminal is an error,
//! as in BuildKit and buildx.

pub mod board;
mod plain;
mod tty;

use rbuild_solver::progress::Event;

/// How to show progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A block of lines redrawn in place on a terminal.
    Tty,
    /// Human-readable lines, one per event.
    Plain,
    /// One JSON object per event.
    RawJson,
    /// Nothing.
    Quiet,
}

impl Mode {
    /// Parse `--progress`; `stderr_is_terminal` decides `auto` and whether
    /// `tty` is possible at all.
    pub fn parse(s: &str, quiet: bool, stderr_is_terminal: bool) -> Result<Self, String> {
        if quiet {
            return Ok(Mode::Quiet);
        }
        match s {
            "auto" if stderr_is_terminal => Ok(Mode::Tty),
            "auto" | "plain" => Ok(Mode::Plain),
            "tty" if stderr_is_terminal => Ok(Mode::Tty),
            "tty" => {
                Err("failed to get console: stderr is not a terminal (use --progress=plain)".into())
            }
            "rawjson" => Ok(Mode::RawJson),
            "quiet" => Ok(Mode::Quiet),
            other => Err(format!(
                "invalid --progress {other:?}: expected auto, tty, plain, rawjson or quiet"
            )),
        }
    }
}

/// Renders progress events to stderr in the chosen [`Mode`].
pub enum Renderer {
    /// Plain lines, raw JSON or nothing.
    Lines(plain::Lines),
    /// The live terminal display.
    Tty(tty::Tty),
}

impl Renderer {
    /// A renderer in `mode`.
    pub fn new(mode: Mode) -> Self {
        match mode {
            Mode::Tty => Renderer::Tty(tty::Tty::start()),
            m => Renderer::Lines(plain::Lines::new(m)),
        }
    }

    /// How many steps the build will report (for the `(done/total)` count).
    pub fn set_total(&mut self, total: usize) {
        if let Renderer::Tty(t) = self {
            t.set_total(total);
        }
    }

    /// Print a message outside any step (a warning).
    pub fn line(&mut self, text: &str) {
        match self {
            Renderer::Lines(l) => l.line(text),
            Renderer::Tty(t) => t.line(text),
        }
    }

    /// Render one event.
    pub fn event(&mut self, ev: &Event) {
        match self {
            Renderer::Lines(l) => l.event(ev),
            Renderer::Tty(t) => t.event(ev),
        }
    }

    /// The build graph is solved; exporting begins.
    pub fn begin_export(&mut self) {
        if let Renderer::Tty(t) = self {
            t.begin_export();
        }
    }

    /// One line of the result, e.g. `writing image sha256:…` or `naming to app`.
    pub fn result(&mut self, text: &str) {
        match self {
            Renderer::Lines(l) => l.result(text),
            Renderer::Tty(t) => t.result(text),
        }
    }

    /// Draw the final state; anything printed afterwards goes below it.
    pub fn finish(&mut self) {
        if let Renderer::Tty(t) = self {
            t.finish();
        }
    }
}
