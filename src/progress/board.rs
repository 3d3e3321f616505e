//! The state of the terminal display and [`frame`], the pure function that
//! lays it out as lines, BuildKit-style:
//!
//! ```text
//! [+] Building 12.3s (7/9)
//!  => CACHED [build 1/5] FROM …/golang:1.22                      0.0s
//!  => [build 4/5] RUN go build -o /out/app .                     3.4s
//!  => => # compiling main.go
//! ```
//!
//! Time enters only as the `now` argument, so a frame is a function of the
//! state and can be tested without a terminal or a clock.

use rbuild_solver::progress::Event;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Output lines kept (and shown) under a running step.
pub const LOG_LINES: usize = 6;

/// Where a step is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum State {
    /// Running since the instant.
    Running(Instant),
    /// Finished after the duration.
    Done(Duration),
    /// Its result came from the cache.
    Cached,
    /// Failed after the duration.
    Failed(Duration),
    /// Stopped because another step failed.
    Canceled(Duration),
}

/// One line of the display: a step, or a sub-line of the export step.
#[derive(Clone, Debug)]
pub struct Step {
    /// The progress label (`[build 2/5] RUN go build …`).
    pub name: String,
    /// Where it is.
    pub state: State,
    /// The last complete output lines (and notes such as cache misses).
    pub logs: VecDeque<String>,
    /// Output after the last newline.
    partial: Vec<u8>,
    /// Sub-lines shown under the step whatever its state, with their time.
    pub subs: Vec<(String, Duration)>,
}

impl Step {
    fn new(name: &str, state: State) -> Self {
        Self {
            name: name.to_string(),
            state,
            logs: VecDeque::new(),
            partial: Vec::new(),
            subs: Vec::new(),
        }
    }

    fn push_log(&mut self, line: String) {
        self.logs.push_back(line);
        while self.logs.len() > LOG_LINES {
            self.logs.pop_front();
        }
    }

    fn finished(&self, now: Instant) -> Duration {
        match self.state {
            State::Running(since) => now.saturating_duration_since(since),
            State::Done(d) | State::Failed(d) | State::Canceled(d) => d,
            State::Cached => Duration::ZERO,
        }
    }
}

/// Everything the display shows, updated by events.
#[derive(Clone, Debug)]
pub struct Board {
    /// When the build started.
    pub start: Instant,
    /// Steps in the order they first appeared.
    pub steps: Vec<Step>,
    by_vertex: HashMap<String, usize>,
    /// Steps the build will report, when known (grows to fit what appeared).
    pub total: usize,
    export: Option<(usize, Instant)>,
}

impl Board {
    /// An empty board for a build that started at `start`.
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            steps: Vec::new(),
            by_vertex: HashMap::new(),
            total: 0,
            export: None,
        }
    }

    fn step(&mut self, vertex: String, name: &str, state: State) -> &mut Step {
        let i = match self.by_vertex.get(&vertex) {
            Some(&i) => i,
            None => {
                self.steps.push(Step::new(name, state));
                self.by_vertex.insert(vertex, self.steps.len() - 1);
                self.steps.len() - 1
            }
        };
        &mut self.steps[i]
    }

    /// Apply one event that happened at `now`.
    pub fn apply(&mut self, ev: &Event, now: Instant) {
        match ev {
            Event::Started { vertex, name } => {
                self.step(vertex.to_string(), name, State::Running(now))
                    .state = State::Running(now);
            }
            Event::Cached { vertex, name } => {
                let s = self.step(vertex.to_string(), name, State::Cached);
                s.state = State::Cached;
                s.logs.clear();
            }
            Event::Note { vertex, text } => {
                let v = vertex.to_string();
                if let Some(&i) = self.by_vertex.get(&v) {
                    self.steps[i].push_log(clean(text));
                }
            }
            Event::Log { vertex, data, .. } => {
                let v = vertex.to_string();
                if let Some(&i) = self.by_vertex.get(&v) {
                    let s = &mut self.steps[i];
                    s.partial.extend_from_slice(data);
                    while let Some(pos) = s.partial.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = s.partial.drain(..=pos).collect();
                        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                        s.push_log(clean(&text));
                    }
                }
            }
            Event::Done { vertex, elapsed } => {
                let v = vertex.to_string();
                let name = short(&v);
                let s = self.step(v, &name, State::Done(*elapsed));
                s.state = State::Done(*elapsed);
            }
            Event::Failed { vertex, error } => {
                let v = vertex.to_string();
                let name = short(&v);
                let s = self.step(v, &name, State::Failed(Duration::ZERO));
                let d = s.finished(now);
                s.state = if error == "cancelled" {
                    State::Canceled(d)
                } else {
                    State::Failed(d)
                };
            }
        }
    }

    /// Exporting began at `now`: a step of its own, as in BuildKit.
    pub fn begin_export(&mut self, now: Instant) {
        if self.export.is_none() {
            self.steps
                .push(Step::new("exporting to image", State::Running(now)));
            self.export = Some((self.steps.len() - 1, now));
        }
    }

    /// A line of the result under the export step, timed since the last one.
    pub fn result(&mut self, text: &str, now: Instant) {
        self.begin_export(now);
        if let Some((i, last)) = self.export.as_mut() {
            let d = now.saturating_duration_since(*last);
            *last = now;
            self.steps[*i].subs.push((text.to_string(), d));
        }
    }

    /// Stop the clock of the export step (and of anything still running).
    pub fn close(&mut self, now: Instant) {
        for s in &mut self.steps {
            if let State::Running(since) = s.state {
                s.state = State::Done(now.saturating_duration_since(since));
            }
            s.partial.clear();
        }
    }

    fn failed(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.state, State::Failed(_) | State::Canceled(_)))
    }
}

/// A short stand-in name for a vertex never announced with a name.
fn short(vertex: &str) -> String {
    let hex = vertex.strip_prefix("sha256:").unwrap_or(vertex);
    format!("vertex {}", &hex[..hex.len().min(12)])
}

/// Output as it should appear on one terminal line: after the last carriage
/// return (progress bars), without escape sequences or control characters.
fn clean(text: &str) -> String {
    let text = text.trim_end_matches('\r');
    let text = text.rsplit('\r').next().unwrap_or(text);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ params final-byte; other escapes: drop ESC + one.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\t' => out.push_str("    "),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// How a line is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// The `[+] Building` header.
    Header,
    /// A running step.
    Running,
    /// A finished or cached step, or a result line.
    Done,
    /// A failed step.
    Error,
    /// A step stopped by another's failure.
    Canceled,
    /// Output of a running step (`=> => # …`).
    Log,
}

/// One laid-out line: its text (no escape sequences) and how to draw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// What to print: at most `width - 1` characters, except the result
    /// lines of the final frame.
    pub text: String,
    /// How to draw it.
    pub style: Style,
}

/// Lay out `board` at `now` for a terminal `width` columns wide and `height`
/// rows high. A live frame fits in `height - 1` rows (older finished steps
/// go first, running steps stay, output lines fill what is left); the final
/// frame (`last`) shows every step and no output lines.
pub fn frame(board: &Board, now: Instant, width: usize, height: usize, last: bool) -> Vec<Line> {
    let width = width.max(20);
    let done = board
        .steps
        .iter()
        .filter(|s| !matches!(s.state, State::Running(_)))
        .count();
    let total = board.total.max(board.steps.len());
    let finished = last && done == total && !board.failed();
    let mut header = format!(
        "[+] Building {:.1}s ({done}/{total})",
        now.saturating_duration_since(board.start).as_secs_f64()
    );
    if finished {
        header.push_str(" FINISHED");
    }
    let mut out = vec![Line {
        text: fit(&header, width),
        style: Style::Header,
    }];

    // Which steps fit: each costs its line plus its sub-lines.
    let cost = |s: &Step| 1 + s.subs.len();
    let mut shown: Vec<bool> = vec![true; board.steps.len()];
    let room = if last {
        usize::MAX
    } else {
        height.saturating_sub(2)
    };
    let mut used: usize = board.steps.iter().map(cost).sum();
    for running_too in [false, true] {
        for (i, s) in board.steps.iter().enumerate() {
            if used <= room {
                break;
            }
            if shown[i] && (running_too || !matches!(s.state, State::Running(_))) {
                shown[i] = false;
                used -= cost(s);
            }
        }
    }
    let mut free = room.saturating_sub(used);

    for (s, _) in board.steps.iter().zip(&shown).filter(|(_, &v)| v) {
        let (prefix, style) = match s.state {
            State::Running(_) => ("", Style::Running),
            State::Done(_) => ("", Style::Done),
            State::Cached => ("CACHED ", Style::Done),
            State::Failed(_) => ("ERROR ", Style::Error),
            State::Canceled(_) => ("CANCELED ", Style::Canceled),
        };
        out.push(Line {
            text: align(
                &format!(" => {prefix}{}", s.name),
                &timer(s.finished(now)),
                width,
            ),
            style,
        });
        for (text, d) in &s.subs {
            let sub = format!(" => => {text}");
            let t = timer(*d);
            // The final result lines (image digest, names) are never cut.
            let text = if last && sub.chars().count() + t.len() + 1 >= width {
                sub
            } else {
                align(&sub, &t, width)
            };
            out.push(Line {
                text,
                style: Style::Done,
            });
        }
        if last || !matches!(s.state, State::Running(_)) {
            continue;
        }
        let partial = String::from_utf8_lossy(&s.partial);
        let partial = clean(&partial);
        let lines: Vec<&String> = s
            .logs
            .iter()
            .chain(std::iter::once(&partial).filter(|p| !p.is_empty()))
            .collect();
        let n = lines.len().min(LOG_LINES).min(free);
        for l in &lines[lines.len() - n..] {
            out.push(Line {
                text: fit(&format!(" => => # {l}"), width),
                style: Style::Log,
            });
        }
        free -= n;
    }
    out
}

/// BuildKit's timer: one decimal, and 0.0s under 50 ms.
fn timer(d: Duration) -> String {
    let s = d.as_secs_f64();
    format!("{:.1}s", if s < 0.05 { 0.0 } else { s })
}

/// `left` cut to fit, padded, then `right`, in `width - 1` columns.
fn align(left: &str, right: &str, width: usize) -> String {
    let w = width - 1;
    let room = w.saturating_sub(right.chars().count() + 1);
    let left: String = left.chars().take(room).collect();
    let pad = room - left.chars().count();
    format!("{left}{} {right}", " ".repeat(pad))
}

/// `text` cut to `width - 1` columns.
fn fit(text: &str, width: usize) -> String {
    text.chars().take(width - 1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_graph::Digest;
    use rbuild_solver::progress::LogStream;

    fn v(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn texts(lines: &[Line]) -> Vec<String> {
        lines.iter().map(|l| l.text.clone()).collect()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A build at 3.5s: one cached step, one done, one running with output.
    fn board() -> (Board, Instant) {
        let t0 = Instant::now();
        let mut b = Board::new(t0);
        b.total = 4;
        b.apply(
            &Event::Cached {
                vertex: v(1),
                name: "[1/4] FROM busybox".into(),
            },
            t0,
        );
        b.apply(
            &Event::Started {
                vertex: v(2),
                name: "[2/4] COPY . /src".into(),
            },
            t0,
        );
        b.apply(
            &Event::Done {
                vertex: v(2),
                elapsed: ms(1200),
            },
            t0 + ms(1200),
        );
        b.apply(
            &Event::Started {
                vertex: v(3),
                name: "[3/4] RUN make".into(),
            },
            t0 + ms(1200),
        );
        b.apply(
            &Event::Note {
                vertex: v(3),
                text: "cache miss: files changed: main.c".into(),
            },
            t0 + ms(1200),
        );
        let out: String = (1..=8).map(|i| format!("line {i}\n")).collect();
        b.apply(
            &Event::Log {
                vertex: v(3),
                stream: LogStream::Stdout,
                data: format!("{out}\x1b[1mbold\x1b[0m\tpartial").into_bytes(),
            },
            t0 + ms(2000),
        );
        (b, t0 + ms(3500))
    }

    #[test]
    fn live_frame_shows_header_steps_and_last_output_lines() {
        let (b, now) = board();
        let lines = frame(&b, now, 50, 40, false);
        assert_eq!(
            texts(&lines),
            vec![
                "[+] Building 3.5s (2/4)",
                " => CACHED [1/4] FROM busybox                0.0s",
                " => [2/4] COPY . /src                        1.2s",
                " => [3/4] RUN make                           2.3s",
                " => => # line 4",
                " => => # line 5",
                " => => # line 6",
                " => => # line 7",
                " => => # line 8",
                " => => # bold    partial",
            ]
        );
        assert_eq!(lines[0].style, Style::Header);
        assert_eq!(lines[3].style, Style::Running);
        assert_eq!(lines[4].style, Style::Log);
        assert!(lines.iter().all(|l| l.text.chars().count() < 50));
    }

    #[test]
    fn live_frame_fits_the_terminal_height_keeping_running_steps() {
        let (b, now) = board();
        // 6 rows: header + 4 lines, so one output line fits.
        assert_eq!(
            texts(&frame(&b, now, 50, 6, false)),
            vec![
                "[+] Building 3.5s (2/4)",
                " => CACHED [1/4] FROM busybox                0.0s",
                " => [2/4] COPY . /src                        1.2s",
                " => [3/4] RUN make                           2.3s",
                " => => # bold    partial",
            ]
        );
        // 4 rows: the oldest finished step goes, the running one stays.
        assert_eq!(
            texts(&frame(&b, now, 50, 4, false)),
            vec![
                "[+] Building 3.5s (2/4)",
                " => [2/4] COPY . /src                        1.2s",
                " => [3/4] RUN make                           2.3s",
            ]
        );
    }

    #[test]
    fn final_frame_has_every_step_results_and_no_output() {
        let (mut b, now) = board();
        b.apply(
            &Event::Done {
                vertex: v(3),
                elapsed: ms(2500),
            },
            now,
        );
        b.begin_export(now);
        b.result("writing image sha256:abc", now + ms(300));
        b.result("naming to app:latest", now + ms(300));
        let digest = format!("exporting to /tmp/{}", "d".repeat(64));
        b.result(&digest, now + ms(300));
        b.close(now + ms(400));
        let lines = frame(&b, now + ms(400), 50, 3, true);
        assert_eq!(
            texts(&lines),
            vec![
                "[+] Building 3.9s (4/4) FINISHED",
                " => CACHED [1/4] FROM busybox                0.0s",
                " => [2/4] COPY . /src                        1.2s",
                " => [3/4] RUN make                           2.5s",
                " => exporting to image                       0.4s",
                " => => writing image sha256:abc              0.3s",
                " => => naming to app:latest                  0.0s",
                &format!(" => => {digest}"),
            ]
        );
    }

    #[test]
    fn failed_and_cancelled_steps_are_marked_and_the_build_not_finished() {
        let (mut b, now) = board();
        b.apply(
            &Event::Started {
                vertex: v(4),
                name: "[4/4] RUN test".into(),
            },
            now,
        );
        b.apply(
            &Event::Failed {
                vertex: v(3),
                error: "process \"make\" did not complete successfully".into(),
            },
            now,
        );
        b.apply(
            &Event::Failed {
                vertex: v(4),
                error: "cancelled".into(),
            },
            now + ms(100),
        );
        let lines = frame(&b, now + ms(100), 50, 40, true);
        assert_eq!(lines[0].text, "[+] Building 3.6s (4/4)");
        assert_eq!(
            lines[3].text,
            " => ERROR [3/4] RUN make                     2.3s"
        );
        assert_eq!(lines[3].style, Style::Error);
        assert_eq!(
            lines[4].text,
            " => CANCELED [4/4] RUN test                  0.1s"
        );
    }

    #[test]
    fn a_git_source_announced_then_cached_is_one_cached_line() {
        let t0 = Instant::now();
        let mut b = Board::new(t0);
        let name = "[internal] load git source git://h/r.git#main";
        b.apply(
            &Event::Started {
                vertex: v(9),
                name: name.into(),
            },
            t0,
        );
        b.apply(
            &Event::Cached {
                vertex: v(9),
                name: name.into(),
            },
            t0 + ms(30),
        );
        let lines = frame(&b, t0 + ms(30), 80, 10, false);
        assert_eq!(lines.len(), 2);
        assert!(lines[1].text.starts_with(&format!(" => CACHED {name} ")));
        assert!(lines[1].text.ends_with(" 0.0s"));
    }

    #[test]
    fn long_names_are_cut_to_the_width() {
        let t0 = Instant::now();
        let mut b = Board::new(t0);
        b.apply(
            &Event::Started {
                vertex: v(1),
                name: format!("[1/1] RUN {}", "x".repeat(200)),
            },
            t0,
        );
        let lines = frame(&b, t0 + ms(12_345), 30, 10, false);
        assert_eq!(lines[1].text, " => [1/1] RUN xxxxxxxxx 12.3s");
        assert_eq!(lines[1].text.chars().count(), 29);
    }
}
