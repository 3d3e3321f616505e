//! The HTTP layer: endpoints (registry and mirrors), protocol probing
//! (https, then http for insecure hosts), authentication (basic and bearer
//! tokens cached per scope), and retries with exponential backoff.

use crate::auth::{parse_challenge, unauthorized, Challenge, TokenSlot};
use crate::config::{host_and_port, is_loopback, Credential, RegistryConfig};
use crate::error::error_chain;
use crate::reference::{api_host, Reference};
use crate::{Error, Result};
use reqwest::header::{HeaderMap, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

/// A registry client. Cheap to clone (shared state behind an `Arc`): HTTP
/// connection pools, probed endpoints, tokens and credentials are shared.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) config: RegistryConfig,
    pub(crate) http: Mutex<HashMap<String, reqwest::Client>>,
    pub(crate) probes: Mutex<HashMap<String, Arc<OnceCell<Probe>>>>,
    /// One slot per (endpoint host, scope); a slot's async lock makes
    /// concurrent requests wait for one token fetch instead of each fetching.
    pub(crate) tokens: Mutex<HashMap<(String, String), TokenSlot>>,
    pub(crate) creds: tokio::sync::Mutex<HashMap<String, Option<Credential>>>,
}

/// One place to send requests to: the registry itself or a mirror.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    /// `host[:port]` used in URLs.
    pub host: String,
    /// Name for credentials and messages (the registry name, or the mirror's
    /// host).
    pub name: String,
    /// Scheme given explicitly (mirror URL or `plain_http`).
    pub scheme: Option<&'static str>,
    /// Unverified https, then http.
    pub insecure: bool,
    /// Extra CA files.
    pub ca_files: Vec<PathBuf>,
    /// Whether this is a mirror (errors fall through to the next endpoint).
    pub mirror: bool,
}

/// What probing `/v2/` learned about an endpoint.
#[derive(Clone, Debug)]
pub(crate) struct Probe {
    /// `scheme://host[:port]`.
    pub base: String,
    pub(crate) tls_insecure: bool,
    pub(crate) challenge: Arc<Mutex<Challenge>>,
}

/// The access a request needs: `repository:<name>:<actions>` entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scope(pub(crate) Vec<String>);

impl Scope {
    /// Pull access to one repository.
    pub fn pull(repo: &str) -> Self {
        Scope(vec![format!("repository:{repo}:pull")])
    }
    /// Push (and pull) access to `repo`, plus pull access to each mount
    /// source.
    pub fn push<'a>(repo: &str, mount_from: impl IntoIterator<Item = &'a str>) -> Self {
        let mut v = vec![format!("repository:{repo}:pull,push")];
        for src in mount_from {
            let s = format!("repository:{src}:pull");
            if src != repo && !v.contains(&s) {
                v.push(s);
            }
        }
        Scope(v)
    }
    pub(crate) fn key(&self) -> String {
        self.0.join(" ")
    }
}

/// How a request's body and headers are made, once per attempt (bodies
/// streamed from files cannot be replayed, so each attempt builds anew).
pub(crate) type Build<'a> =
    &'a (dyn Fn(reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder> + Sync);

impl Client {
    /// A client with this configuration. Fails when a configured CA file
    /// cannot be read or parsed.
    pub fn new(config: RegistryConfig) -> Result<Self> {
        let client = Client {
            inner: Arc::new(Inner {
                config,
                http: Mutex::new(HashMap::new()),
                probes: Mutex::new(HashMap::new()),
                tokens: Mutex::new(HashMap::new()),
                creds: tokio::sync::Mutex::new(HashMap::new()),
            }),
        };
        // Build the common HTTP clients now so CA problems show up early.
        let cfg = &client.inner.config;
        client.http(false, &cfg.ca_files)?;
        for host in cfg.registries.values().filter(|h| !h.ca_files.is_empty()) {
            let cas: Vec<PathBuf> = cfg.ca_files.iter().chain(&host.ca_files).cloned().collect();
            client.http(false, &cas)?;
        }
        Ok(client)
    }

    /// The configuration this client uses.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// The endpoint of the registry itself.
    pub(crate) fn registry_endpoint(&self, registry: &str) -> Endpoint {
        let cfg = &self.inner.config;
        let host_cfg = cfg.host(registry);
        let host = api_host(registry).to_string();
        let (h, _) = host_and_port(&host, 443);
        Endpoint {
            insecure: host_cfg.insecure || is_loopback(h),
            scheme: host_cfg.plain_http.then_some("http"),
            ca_files: cfg
                .ca_files
                .iter()
                .chain(&host_cfg.ca_files)
                .cloned()
                .collect(),
            host,
            name: registry.to_string(),
            mirror: false,
        }
    }

    /// Endpoints to pull `reference` from: its mirrors in order, then the
    /// registry.
    pub(crate) fn pull_endpoints(&self, reference: &Reference) -> Vec<Endpoint> {
        let cfg = &self.inner.config;
        let mut out = Vec::new();
        for m in cfg.host(&reference.registry).mirrors {
            let (scheme, rest) = if let Some(r) = m.strip_prefix("https://") {
                (Some("https"), r)
            } else if let Some(r) = m.strip_prefix("http://") {
                (Some("http"), r)
            } else {
                (None, m.as_str())
            };
            let host = rest.trim_end_matches('/').to_string();
            let mut ep = self.registry_endpoint(&host);
            ep.host = host;
            ep.mirror = true;
            if scheme.is_some() {
                ep.scheme = scheme;
            }
            out.push(ep);
        }
        out.push(self.registry_endpoint(&reference.registry));
        out
    }

    pub(crate) fn http(&self, tls_insecure: bool, ca_files: &[PathBuf]) -> Result<reqwest::Client> {
        let key = format!("{tls_insecure}|{ca_files:?}");
        let mut map = self.inner.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let cfg = &self.inner.config;
        let proxy = cfg.proxy.clone();
        let mut b = reqwest::Client::builder()
            .user_agent(cfg.user_agent.clone())
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .no_proxy()
            .proxy(reqwest::Proxy::custom(move |url| {
                let host = url.host_str()?;
                let port = url.port_or_known_default()?;
                proxy
                    .proxy_for(url.scheme(), host, port)
                    .and_then(|p| reqwest::Url::parse(p).ok())
            }))
            .danger_accept_invalid_certs(tls_insecure);
        for f in ca_files {
            let pem = std::fs::read(f).map_err(|source| Error::Io {
                path: f.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Config {
                path: f.clone(),
                message: format!("invalid PEM CA file: {e}"),
            })?;
            if certs.is_empty() {
                return Err(Error::Config {
                    path: f.clone(),
                    message: "no PEM certificate found in the CA file".into(),
                });
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let c = b.build().map_err(|e| Error::Config {
            path: PathBuf::from("<http client>"),
            message: error_chain(&e),
        })?;
        map.insert(key, c.clone());
        Ok(c)
    }

    /// Probe `/v2/` once per endpoint: pick the scheme and learn the auth
    /// challenge.
    pub(crate) async fn probe(&self, ep: &Endpoint) -> Result<Probe> {
        let key = format!("{}|{:?}|{}", ep.host, ep.scheme, ep.insecure);
        let cell = {
            let mut map = self.inner.probes.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key).or_default().clone()
        };
        cell.get_or_try_init(|| self.do_probe(ep)).await.cloned()
    }

    async fn do_probe(&self, ep: &Endpoint) -> Result<Probe> {
        let candidates: Vec<(&str, bool)> = match (ep.scheme, ep.insecure) {
            (Some("http"), _) => vec![("http", false)],
            (Some(_), insecure) => vec![("https", insecure)],
            (None, true) => vec![("https", true), ("http", false)],
            (None, false) => vec![("https", false)],
        };
        let mut last = None;
        for (i, (scheme, tls_insecure)) in candidates.iter().enumerate() {
            let is_last = i + 1 == candidates.len();
            let http = self.http(*tls_insecure, &ep.ca_files)?;
            let base = format!("{scheme}://{}", ep.host);
            let url = format!("{base}/v2/");
            let attempts = if is_last {
                self.inner.config.max_attempts
            } else {
                1
            };
            match self
                .retrying(&ep.name, attempts, || http.get(&url).send())
                .await
            {
                Ok(resp) => {
                    let challenge = parse_challenge(resp.headers());
                    tracing::debug!(endpoint = %base, ?challenge, "probed registry");
                    return Ok(Probe {
                        base,
                        tls_insecure: *tls_insecure,
                        challenge: Arc::new(Mutex::new(challenge)),
                    });
                }
                Err(e) => {
                    tracing::debug!(endpoint = %base, error = %e, "probe failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Transport {
            registry: ep.name.clone(),
            message: "no usable protocol".into(),
        }))
    }

    /// Send a request with retries (when `retry`), probing and
    /// authenticating first. 401 answers are retried once with fresh
    /// credentials, then become [`Error::Unauthorized`]; other statuses are
    /// returned for the caller to judge.
    pub(crate) async fn send(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        method: Method,
        url: &str,
        build: Build<'_>,
        retry: bool,
    ) -> Result<Response> {
        let probe = self.probe(ep).await?;
        let http = self.http(probe.tls_insecure, &ep.ca_files)?;
        let attempts = if retry {
            self.inner.config.max_attempts
        } else {
            1
        };
        let mut refreshed = false;
        loop {
            let challenge = lock(&probe.challenge).clone();
            let (auth, cred, fresh) = self.authorization(ep, &challenge, scope).await?;
            let resp = self
                .retrying(&ep.name, attempts, || {
                    let rb = http.request(method.clone(), url);
                    let rb = match &auth {
                        Some(a) => rb.header(AUTHORIZATION, a.as_str()),
                        None => rb,
                    };
                    let fut = build(rb).map(|rb| rb.send());
                    async move {
                        match fut {
                            Ok(f) => f.await.map_err(Into::into),
                            Err(e) => Err(SendError::Local(e)),
                        }
                    }
                })
                .await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let new = parse_challenge(resp.headers());
            let changed = new != Challenge::None && new != challenge;
            if !refreshed && (changed || !fresh) {
                refreshed = true;
                if changed {
                    *lock(&probe.challenge) = new;
                }
                self.forget_token(ep, scope, auth.as_deref()).await;
                continue;
            }
            let msg = error_message(resp).await;
            return Err(unauthorized(&ep.name, &msg, cred.as_ref()));
        }
    }

    /// Run `f` up to `attempts` times, backing off on transport errors,
    /// 5xx and 429.
    pub(crate) async fn retrying<F, Fut, E>(
        &self,
        registry: &str,
        attempts: u32,
        mut f: F,
    ) -> Result<Response>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<Response, E>>,
        E: Into<SendError>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= attempts;
            match f().await.map_err(Into::into) {
                Ok(resp) => {
                    let s = resp.status();
                    if (s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS) && !last {
                        let wait =
                            retry_after(resp.headers()).unwrap_or_else(|| self.backoff(attempt));
                        tracing::debug!(registry, status = %s, attempt, "retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Ok(resp);
                }
                Err(SendError::Local(e)) => return Err(e),
                Err(SendError::Http(e)) => {
                    let transient =
                        e.is_connect() || e.is_timeout() || e.is_request() || e.is_body();
                    if transient && !last {
                        tracing::debug!(registry, error = %error_chain(&e), attempt, "retrying");
                        tokio::time::sleep(self.backoff(attempt)).await;
                        continue;
                    }
                    let mut message = error_chain(&e);
                    if attempt > 1 {
                        message.push_str(&format!(" (after {attempt} attempts)"));
                    }
                    return Err(Error::Transport {
                        registry: registry.to_string(),
                        message,
                    });
                }
            }
        }
    }

    /// Run a whole fetch (request, body, verification) up to
    /// `max_attempts` times: again when its body breaks off, comes up short
    /// of its `Content-Length` or fails its digest ([`Failed::Body`]).
    /// Failures up to the response status are [`Failed::Final`]: [`send`]
    /// (or [`retrying`]) already retried them.
    ///
    /// [`send`]: Client::send
    /// [`retrying`]: Client::retrying
    pub(crate) async fn refetching<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Failed>>,
    {
        let max = self.inner.config.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match f().await {
                Ok(v) => return Ok(v),
                Err(Failed::Final(e)) => return Err(e),
                Err(Failed::Body(e)) if attempt < max => {
                    tracing::debug!(what, error = %e, attempt, "body failed, fetching again");
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(Failed::Body(mut e)) => {
                    if let Error::Transport { message, .. } = &mut e {
                        if attempt > 1 {
                            message.push_str(&format!(" (after {attempt} attempts)"));
                        }
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Delay before attempt `attempt + 1`: base × 2^(attempt-1), at most 10 s.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let base = self.inner.config.backoff;
        base.saturating_mul(1 << attempt.saturating_sub(1).min(10))
            .min(Duration::from_secs(10))
    }
}

/// How one attempt of a [`Client::refetching`] fetch failed.
pub(crate) enum Failed {
    /// A failure not worth fetching again for.
    Final(Error),
    /// The body broke off, came up short or failed verification.
    Body(Error),
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed::Final(e)
    }
}

/// Either a local failure building a request or an HTTP failure.
pub(crate) enum SendError {
    Local(Error),
    Http(reqwest::Error),
}

impl From<reqwest::Error> for SendError {
    fn from(e: reqwest::Error) -> Self {
        SendError::Http(e)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let secs: u64 = h.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(10)))
}

/// The registry's error message from a response body
/// (`{"errors":[{"code","message","detail"}]}`), or the body's start.
pub(crate) async fn error_message(resp: Response) -> String {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<Err1>,
    }
    #[derive(serde::Deserialize)]
    struct Err1 {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(e) = serde_json::from_slice::<Errs>(&body) {
        let parts: Vec<String> = e
            .errors
            .into_iter()
            .map(|e| match (e.code, e.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (c, m) => c.or(m).unwrap_or_default(),
            })
            .filter(|s| !s.is_empty())
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if text.is_empty() {
        status.canonical_reason().unwrap_or("").to_string()
    } else {
        text.chars().take(300).collect()
    }
}

/// Resolve a `Location` header against the request URL.
pub(crate) fn resolve_location(
    registry: &str,
    request_url: &str,
    resp: &Response,
) -> Result<String> {
    let loc = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Protocol {
            registry: registry.to_string(),
            message: format!("no Location header in the answer to {request_url}"),
        })?;
    let base = reqwest::Url::parse(request_url).map_err(|e| Error::Protocol {
        registry: registry.to_string(),
        message: format!("bad URL {request_url}: {e}"),
    })?;
    base.join(loc)
        .map(|u| u.to_string())
        .map_err(|e| Error::Protocol {
            registry: registry.to_string(),
            message: format!("bad Location {loc:?}: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(Scope::pull("a/b").key(), "repository:a/b:pull");
        assert_eq!(
            Scope::push("a/b", ["c", "a/b", "c"]).key(),
            "repository:a/b:pull,push repository:c:pull"
        );
    }
}
