//! Running the `git` CLI as BuildKit does: no system or user configuration,
//! no terminal prompts, `protocol.file.allow=user`, umask 022; the build's
//! proxies (the registry client's, so `[proxy]` in the config applies to git
//! too); the SSH agent of `--ssh default`; and for HTTP(S) remotes the
//! `GIT_AUTH_TOKEN` secret as BuildKit sends it, a basic `Authorization`
//! header for user `x-access-token` (`GIT_AUTH_TOKEN.<host>` first), or a
//! whole header value from `GIT_AUTH_HEADER[.<host>]`.
//!
//! Credentials travel in `GIT_CONFIG_*` environment variables of the git
//! process (never its command line, never a file of the checkout), scoped
//! to the remote's URL, so submodules on other hosts never see them.

use crate::progress::{Event, EventSender, LogStream};
use crate::Error;
use rbuild_graph::Digest;
use rbuild_registry::ProxyConfig;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What every git command of a build runs with.
#[derive(Clone, Debug, Default)]
pub struct GitEnv {
    /// Forward proxies for HTTP(S) remotes.
    pub proxy: ProxyConfig,
    /// The agent socket for SSH remotes (`--ssh default`).
    pub ssh_sock: Option<PathBuf>,
    /// Secrets by id; only `GIT_AUTH_TOKEN[.<host>]` and
    /// `GIT_AUTH_HEADER[.<host>]` are read.
    pub secrets: BTreeMap<String, Vec<u8>>,
}

impl GitEnv {
    /// The `Authorization` header value for `remote`, from the secrets.
    pub fn auth_header(&self, remote: &str) -> Option<String> {
        let (scheme, rest) = remote.split_once("://")?;
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let authority = rest.split('/').next().unwrap_or(rest);
        let host = authority.rsplit('@').next().unwrap_or(authority);
        let host = host.split(':').next().unwrap_or(host);
        let get = |id: &str| {
            self.secrets
                .get(&format!("{id}.{host}"))
                .or_else(|| self.secrets.get(id))
                .map(|v| String::from_utf8_lossy(v).trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(token) = get("GIT_AUTH_TOKEN") {
            return Some(format!(
                "basic {}",
                base64(format!("x-access-token:{token}").as_bytes())
            ));
        }
        get("GIT_AUTH_HEADER")
    }
}

/// Standard base64 with padding.
pub(crate) fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A finished git command: its stdout, or its exit status and stderr.
pub(crate) struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The last lines of stderr, for an error message.
    pub fn message(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(3)..].join("; ");
        if tail.is_empty() {
            "git exited with an error".into()
        } else {
            tail
        }
    }
}

/// Runs git for one source, streaming its stderr as a vertex's output when
/// there is one.
pub(crate) struct Git<'a> {
    pub env: &'a GitEnv,
    /// Where stderr goes as progress (none for the CLI's remote context).
    pub log: Option<(&'a EventSender, &'a Digest)>,
    pub cancel: Option<&'a rbuild_exec::CancelToken>,
    /// `http.<remote>.extraheader` for this source's remote.
    pub auth: Option<(String, String)>,
}

impl<'a> Git<'a> {
    /// A runner for `remote` (its credentials, if any, scoped to it).
    pub fn new(env: &'a GitEnv, remote: &str) -> Self {
        Git {
            env,
            log: None,
            cancel: None,
            auth: env
                .auth_header(remote)
                .map(|h| (remote.to_string(), format!("Authorization: {h}"))),
        }
    }

    fn command(&self, dir: Option<&Path>, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        cmd.args(["-c", "protocol.file.allow=user"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", "/dev/null")
            .env("LC_ALL", "C")
            .env(
                "GIT_SSH_COMMAND",
                "ssh -F /dev/null -o StrictHostKeyChecking=no",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // curl reads lowercase http_proxy only; loopback is never proxied,
        // as for the registry client.
        let p = &self.env.proxy;
        if p.http.is_some() || p.https.is_some() {
            let mut no = String::from("localhost,127.0.0.0/8,::1");
            if let Some(n) = &p.no_proxy {
                no = format!("{n},{no}");
            }
            cmd.env("no_proxy", &no).env("NO_PROXY", &no);
        }
        if let Some(v) = &p.http {
            cmd.env("http_proxy", v);
        }
        if let Some(v) = &p.https {
            cmd.env("https_proxy", v).env("HTTPS_PROXY", v);
        }
        if let Some((remote, header)) = &self.auth {
            cmd.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", format!("http.{remote}.extraheader"))
                .env("GIT_CONFIG_VALUE_0", header);
        }
        if let Some(sock) = &self.env.ssh_sock {
            cmd.env("SSH_AUTH_SOCK", sock);
        }
        if let Some(d) = dir {
            cmd.current_dir(d);
        }
        // SAFETY: between fork and exec the child only calls umask(2), which
        // is async-signal-safe and touches no memory of the parent.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
                Ok(())
            });
        }
        cmd
    }

    /// Run git with `args` (in `dir`), to completion or cancellation.
    pub fn run(&self, dir: Option<&Path>, args: &[&str]) -> Result<Output, Error> {
        let mut child = self
            .command(dir, args)
            .spawn()
            .map_err(super::GitError::NotInstalled)?;
        let mut stdout = child.stdout.take();
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(o) = stdout.as_mut() {
                let _ = o.read_to_string(&mut s);
            }
            s
        });
        let mut stderr = child.stderr.take();
        let log = self.log.map(|(e, v)| (e.clone(), v.clone()));
        let err_reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            while let Some(Ok(n)) = stderr.as_mut().map(|e| e.read(&mut buf)) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
                if let Some((events, vertex)) = &log {
                    let _ = events.send(Event::Log {
                        vertex: vertex.clone(),
                        stream: LogStream::Stderr,
                        data: buf[..n].to_vec(),
                    });
                }
            }
            String::from_utf8_lossy(&all).into_owned()
        });
        let status = loop {
            if self.cancel.is_some_and(|c| c.is_cancelled()) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Cancelled);
            }
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
                Err(e) => return Err(Error::Io("wait for git".into(), e)),
            }
        };
        Ok(Output {
            ok: status.success(),
            stdout: out_reader.join().unwrap_or_default(),
            stderr: err_reader.join().unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_as_the_standard_says() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"x-access-token:t0k"), "eC1hY2Nlc3MtdG9rZW46dDBr");
    }

    #[test]
    fn auth_tokens_are_basic_headers_for_http_remotes_only() {
        let mut env = GitEnv::default();
        assert_eq!(env.auth_header("https://h.example/r.git"), None);
        env.secrets
            .insert("GIT_AUTH_TOKEN".into(), b"t0k\n".to_vec());
        assert_eq!(
            env.auth_header("https://h.example/r.git").as_deref(),
            Some("basic eC1hY2Nlc3MtdG9rZW46dDBr")
        );
        assert_eq!(env.auth_header("ssh://h.example/r.git"), None);
        assert_eq!(env.auth_header("git@h.example:r.git"), None);
        // A host-scoped token wins.
        env.secrets
            .insert("GIT_AUTH_TOKEN.h.example".into(), b"other".to_vec());
        assert_eq!(
            env.auth_header("https://u@h.example:8443/r.git").as_deref(),
            Some(format!("basic {}", base64(b"x-access-token:other")).as_str())
        );
        let mut env = GitEnv::default();
        env.secrets
            .insert("GIT_AUTH_HEADER".into(), b"bearer abc".to_vec());
        assert_eq!(
            env.auth_header("http://h/r.git").as_deref(),
            Some("bearer abc")
        );
    }
}
