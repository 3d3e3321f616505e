//! The live terminal display: a [`Board`] redrawn in place on stderr by a
//! ticker thread, at most ~10 times a second, with plain ANSI sequences
//! (cursor up, clear to end of line/screen). Events only update the board,
//! so a chatty RUN step costs no terminal writes beyond the ticker's.

use super::board::{frame, Board, Line, Style};
use rbuild_solver::progress::Event;
use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Time between redraws.
const TICK: Duration = Duration::from_millis(100);

/// What the ticker and the event side share.
struct Screen {
    board: Board,
    /// Lines of the last frame, still on the terminal above the cursor.
    drawn: usize,
    /// Whether anything happened yet (nothing is drawn before).
    active: bool,
    /// The final frame was drawn; the display is plain stderr again.
    finished: bool,
    color: bool,
}

impl Screen {
    /// Replace the previous frame with `lines`.
    fn draw(&mut self, lines: &[Line]) {
        let mut buf = String::from("\x1b[?25l");
        if self.drawn > 0 {
            buf.push_str(&format!("\x1b[{}A", self.drawn));
        }
        buf.push('\r');
        for l in lines {
            let (on, off) = match (self.color, l.style) {
                (false, _) | (true, Style::Header | Style::Running) => ("", ""),
                (true, Style::Done) => ("\x1b[34m", "\x1b[0m"),
                (true, Style::Error) => ("\x1b[31m", "\x1b[0m"),
                (true, Style::Canceled) => ("\x1b[33m", "\x1b[0m"),
                (true, Style::Log) => ("\x1b[2m", "\x1b[0m"),
            };
            buf.push_str(on);
            buf.push_str(&l.text);
            buf.push_str(off);
            buf.push_str("\x1b[K\n");
        }
        buf.push_str("\x1b[J\x1b[?25h");
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(buf.as_bytes());
        let _ = err.flush();
        self.drawn = lines.len();
    }

    fn redraw(&mut self) {
        if !self.active || self.finished {
            return;
        }
        let (w, h) = size();
        let lines = frame(&self.board, Instant::now(), w, h, false);
        self.draw(&lines);
    }

    /// Print `text` above the display and redraw it below.
    fn print_above(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        if self.drawn > 0 && !self.finished {
            let _ = write!(err, "\x1b[{}A\r\x1b[J", self.drawn);
            self.drawn = 0;
        }
        let _ = writeln!(err, "{text}");
        drop(err);
        self.redraw();
    }
}

/// The terminal display of one build.
pub struct Tty {
    screen: Arc<Mutex<Screen>>,
    stop: Option<mpsc::Sender<()>>,
    ticker: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<Screen>) -> MutexGuard<'_, Screen> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Tty {
    /// Start the display and its ticker.
    pub fn start() -> Self {
        let screen = Arc::new(Mutex::new(Screen {
            board: Board::new(Instant::now()),
            drawn: 0,
            active: false,
            finished: false,
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }));
        let (stop, ticks) = mpsc::channel::<()>();
        let shared = screen.clone();
        let ticker = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = ticks.recv_timeout(TICK) {
                    lock(&shared).redraw();
                }
            })
            .ok();
        Self {
            screen,
            stop: Some(stop),
            ticker,
        }
    }

    /// How many steps the build will report.
    pub fn set_total(&mut self, total: usize) {
        lock(&self.screen).board.total = total;
    }

    /// Print a message above the display.
    pub fn line(&mut self, text: &str) {
        lock(&self.screen).print_above(text);
    }

    /// Apply one event; the ticker draws it.
    pub fn event(&mut self, ev: &Event) {
        let mut s = lock(&self.screen);
        s.board.apply(ev, Instant::now());
        s.active = true;
    }

    /// Exporting began.
    pub fn begin_export(&mut self) {
        let mut s = lock(&self.screen);
        s.board.begin_export(Instant::now());
        s.active = true;
    }

    /// A line of the result under the export step.
    pub fn result(&mut self, text: &str) {
        let mut s = lock(&self.screen);
        if s.finished {
            drop(s);
            eprintln!("{text}");
            return;
        }
        s.board.result(text, Instant::now());
        s.active = true;
    }

    /// Stop the ticker and draw the final frame (every step, no output).
    pub fn finish(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        let mut s = lock(&self.screen);
        if s.finished {
            return;
        }
        if s.active {
            let now = Instant::now();
            s.board.close(now);
            let (w, h) = size();
            let lines = frame(&s.board, now, w, h, true);
            s.draw(&lines);
        }
        s.finished = true;
    }
}

impl Drop for Tty {
    /// An early return still leaves the final frame above the error.
    fn drop(&mut self) {
        self.finish();
    }
}

/// Columns and rows of the terminal on stderr (80×24 when unknown).
fn size() -> (usize, usize) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointed-to struct,
    // which lives for the whole call; an error leaves it untouched.
    let r = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
    let cols = if r == 0 && ws.ws_col > 0 {
        ws.ws_col as usize
    } else {
        80
    };
    let rows = if r == 0 && ws.ws_row > 0 {
        ws.ws_row as usize
    } else {
        24
    };
    (cols, rows)
}
