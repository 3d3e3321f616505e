//! Line-by-line progress: BuildKit's plain format (`#N [stage 1/3] RUN …`),
//! raw JSON lines, or nothing (quiet). Each event is printed as it comes.

use super::Mode;
use rbuild_solver::progress::{Event, LogStream};
use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

/// Prints events to stderr as lines, in `Plain`, `RawJson` or `Quiet` mode.
pub struct Lines {
    mode: Mode,
    numbers: HashMap<String, usize>,
    names: HashMap<String, String>,
    start: Instant,
    vertex_start: HashMap<String, Instant>,
    partial: HashMap<String, Vec<u8>>,
}

impl Lines {
    /// A printer in `mode`.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            numbers: HashMap::new(),
            names: HashMap::new(),
            start: Instant::now(),
            vertex_start: HashMap::new(),
            partial: HashMap::new(),
        }
    }

    fn number(&mut self, vertex: &str) -> usize {
        let next = self.numbers.len() + 1;
        *self.numbers.entry(vertex.to_string()).or_insert(next)
    }

    /// Print one message line outside any vertex.
    pub fn line(&mut self, text: &str) {
        if self.mode == Mode::Plain {
            eprintln!("{text}");
        }
    }

    /// Print one line of the result (`#0 writing image sha256:… done`).
    pub fn result(&mut self, text: &str) {
        if self.mode == Mode::Plain {
            eprintln!("#0 {text} done");
        }
    }

    /// Render one event.
    pub fn event(&mut self, ev: &Event) {
        if self.mode == Mode::RawJson {
            self.raw(ev);
            return;
        }
        if self.mode == Mode::Quiet {
            return;
        }
        let stderr = std::io::stderr();
        let mut err = stderr.lock();
        match ev {
            Event::Started { vertex, name } => {
                let v = vertex.to_string();
                let n = self.number(&v);
                self.names.insert(v.clone(), name.clone());
                self.vertex_start.insert(v, Instant::now());
                let _ = writeln!(err, "#{n} {name}");
            }
            Event::Cached { vertex, name } => {
                let v = vertex.to_string();
                let n = self.number(&v);
                // A source that started resolving (git) was already named.
                if !self.names.contains_key(&v) {
                    let _ = writeln!(err, "#{n} {name}");
                }
                let _ = writeln!(err, "#{n} CACHED");
            }
            Event::Note { vertex, text } => {
                let n = self.number(&vertex.to_string());
                let _ = writeln!(err, "#{n} {text}");
            }
            Event::Log {
                vertex,
                data,
                stream,
            } => {
                let v = vertex.to_string();
                let n = self.number(&v);
                let t = self
                    .vertex_start
                    .get(&v)
                    .map(|s| s.elapsed().as_secs_f64())
                    .unwrap_or(0.0);
                let buf = self.partial.entry(v).or_default();
                buf.extend_from_slice(data);
                while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]);
                    let _ = writeln!(err, "#{n} {t:.3} {text}");
                }
                let _ = stream;
            }
            Event::Done { vertex, elapsed } => {
                let v = vertex.to_string();
                let n = self.number(&v);
                if let Some(rest) = self.partial.remove(&v).filter(|b| !b.is_empty()) {
                    let _ = writeln!(err, "#{n} {}", String::from_utf8_lossy(&rest));
                }
                let _ = writeln!(err, "#{n} DONE {:.1}s", elapsed.as_secs_f64());
            }
            Event::Failed { vertex, error } => {
                let v = vertex.to_string();
                let n = self.number(&v);
                if let Some(rest) = self.partial.remove(&v).filter(|b| !b.is_empty()) {
                    let _ = writeln!(err, "#{n} {}", String::from_utf8_lossy(&rest));
                }
                let first = error.lines().next().unwrap_or("");
                let _ = writeln!(err, "#{n} ERROR: {first}");
            }
        }
    }

    fn raw(&mut self, ev: &Event) {
        let t = self.start.elapsed().as_secs_f64();
        let value = match ev {
            Event::Started { vertex, name } => {
                serde_json::json!({"time": t, "vertex": vertex.to_string(), "started": true, "name": name})
            }
            Event::Cached { vertex, name } => {
                serde_json::json!({"time": t, "vertex": vertex.to_string(), "cached": true, "name": name})
            }
            Event::Note { vertex, text } => {
                serde_json::json!({"time": t, "vertex": vertex.to_string(), "note": text})
            }
            Event::Log {
                vertex,
                stream,
                data,
            } => serde_json::json!({
                "time": t, "vertex": vertex.to_string(),
                "stream": if *stream == LogStream::Stdout { 1 } else { 2 },
                "data": String::from_utf8_lossy(data),
            }),
            Event::Done { vertex, elapsed } => serde_json::json!({
                "time": t, "vertex": vertex.to_string(), "completed": true,
                "duration": elapsed.as_secs_f64(),
            }),
            Event::Failed { vertex, error } => {
                serde_json::json!({"time": t, "vertex": vertex.to_string(), "error": error})
            }
        };
        eprintln!("{value}");
    }
}
