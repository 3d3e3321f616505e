//! Stream a runtime child's stdout and stderr to the caller as they arrive.

use std::io::Read;
use std::process::Child;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::{CancelToken, Error, OutputChunk, Result, Stream};

/// How often cancellation and child exit are checked.
const TICK: Duration = Duration::from_millis(50);
/// How long output may still arrive after the child exited (a process that
/// escaped the sandbox's pid namespace could hold the pipe open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How the child ended.
pub(crate) struct Pumped {
    /// The runtime child's wait status.
    pub status: std::process::ExitStatus,
    /// Whether `on_cancel` was called.
    pub cancelled: bool,
}

fn reader(mut r: impl Read + Send + 'static, stream: Stream, tx: mpsc::Sender<OutputChunk>) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let chunk = OutputChunk {
                        stream,
                        data: buf[..n].to_vec(),
                    };
                    if tx.send(chunk).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    });
}

/// Forward the child's piped stdout/stderr to `output` until both close and
/// the child exits. If `cancel` fires, `on_cancel` is called once (it must
/// make the child exit).
pub(crate) fn pump(
    child: &mut Child,
    output: &mut dyn FnMut(OutputChunk),
    cancel: &CancelToken,
    on_cancel: &mut dyn FnMut(),
) -> Result<Pumped> {
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        reader(out, Stream::Stdout, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        reader(err, Stream::Stderr, tx.clone());
    }
    drop(tx);
    let mut cancelled = false;
    let mut exited: Option<(std::process::ExitStatus, Instant)> = None;
    loop {
        match rx.recv_timeout(TICK) {
            Ok(chunk) => output(chunk),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if cancel.is_cancelled() && !cancelled {
                    cancelled = true;
                    on_cancel();
                }
                match exited {
                    Some((_, at)) if at.elapsed() > DRAIN_GRACE => break,
                    Some(_) => {}
                    None => {
                        if let Some(st) = child
                            .try_wait()
                            .map_err(|e| Error::io("wait for runtime", e))?
                        {
                            exited = Some((st, Instant::now()));
                        }
                    }
                }
            }
        }
    }
    let status = match exited {
        Some((st, _)) => st,
        None => child.wait().map_err(|e| Error::io("wait for runtime", e))?,
    };
    Ok(Pumped { status, cancelled })
}
