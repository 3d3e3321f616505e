//! Client configuration: mirrors, insecure registries, CA files, proxies,
//! retries, credentials. Loadable from TOML; the format is documented in
//! the crate docs and `registry/README.md`.

use crate::reference::normalize_registry;
use crate::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything that shapes how the client talks to registries.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Per-registry settings, keyed by normalized registry name
    /// (`docker.io`, `127.0.0.1:5000`).
    pub registries: BTreeMap<String, RegistryHost>,
    /// PEM CA files trusted for every registry (besides the built-in roots).
    pub ca_files: Vec<PathBuf>,
    /// Proxies for every request, token fetches included.
    pub proxy: ProxyConfig,
    /// Attempts per request (1 = no retry) on 5xx, 429 and transport errors.
    pub max_attempts: u32,
    /// First retry delay; doubles with each attempt.
    pub backoff: Duration,
    /// Blobs fetched or pushed at once by `pull` and `push_image`.
    pub concurrency: usize,
    /// Blobs larger than this are uploaded in chunks (PATCH).
    pub chunk_threshold: u64,
    /// Chunk size for chunked uploads.
    pub chunk_size: u64,
    /// Directory of docker's `config.json` (`$DOCKER_CONFIG`, else
    /// `~/.docker`); `None` disables it.
    pub docker_config_dir: Option<PathBuf>,
    /// Credentials that win over `config.json`, keyed by registry host.
    pub credentials: BTreeMap<String, Credential>,
    /// Timeout to establish a connection.
    pub connect_timeout: Duration,
    /// Timeout for each read from a connection (a stalled transfer fails,
    /// and is retried, after this long without data).
    pub read_timeout: Duration,
    /// User-Agent header.
    pub user_agent: String,
}

/// Settings for one registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryHost {
    /// Mirrors tried in order before the registry itself, for pulls only.
    /// `https://host[:port]` or `http://host[:port]`; a bare `host[:port]`
    /// means https (with the host's own insecure setting).
    pub mirrors: Vec<String>,
    /// Try https without verifying certificates, then plain http
    /// (docker's "insecure registry"). Loopback hosts are always insecure.
    pub insecure: bool,
    /// Speak plain http only.
    pub plain_http: bool,
    /// PEM CA files trusted for this registry.
    pub ca_files: Vec<PathBuf>,
}

/// A username and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// User name.
    pub username: String,
    /// Password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, <redacted>)", self.username)
    }
}

/// Forward proxies. Requests to loopback hosts never use a proxy (as in Go's
/// `net/http`), and hosts matched by `no_proxy` neither.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Proxy URL for `http://` requests.
    pub http: Option<String>,
    /// Proxy URL for `https://` requests (tunnelled with CONNECT).
    pub https: Option<String>,
    /// Comma-separated exceptions: `*`, host names (`example.com` also
    /// matches its subdomains, as does `.example.com`), IP addresses, CIDR
    /// blocks, each optionally with `:port`.
    pub no_proxy: Option<String>,
}

impl ProxyConfig {
    /// From `HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY` (or lowercase forms).
    pub fn from_env() -> Self {
        let var = |a: &str, b: &str| {
            std::env::var(a)
                .ok()
                .or_else(|| std::env::var(b).ok())
                .filter(|v| !v.trim().is_empty())
        };
        ProxyConfig {
            http: var("HTTP_PROXY", "http_proxy"),
            https: var("HTTPS_PROXY", "https_proxy"),
            no_proxy: var("NO_PROXY", "no_proxy"),
        }
    }

    /// The proxy to use for a request to `scheme://host:port`, if any.
    pub fn proxy_for(&self, scheme: &str, host: &str, port: u16) -> Option<&str> {
        let proxy = match scheme {
            "http" => self.http.as_deref(),
            "https" => self.https.as_deref(),
            _ => None,
        }?;
        if is_loopback(host) || self.excluded(host, port) {
            return None;
        }
        Some(proxy)
    }

    fn excluded(&self, host: &str, port: u16) -> bool {
        let Some(list) = &self.no_proxy else {
            return false;
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let ip: Option<IpAddr> = host.parse().ok();
        for entry in list
            .split([',', ' '])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            if entry == "*" {
                return true;
            }
            let entry = entry.to_ascii_lowercase();
            // CIDR block.
            if let Some((net, bits)) = entry.split_once('/') {
                if let (Some(ip), Ok(net), Ok(bits)) =
                    (ip, net.parse::<IpAddr>(), bits.parse::<u8>())
                {
                    if cidr_contains(net, bits, ip) {
                        return true;
                    }
                }
                continue;
            }
            // Optional port: `host:port`, `[v6]:port`; a bare v6 address has
            // several colons and no port.
            let (ehost, eport) = split_host_port(&entry);
            if let Some(p) = eport {
                if p != port {
                    continue;
                }
            }
            if let (Some(ip), Ok(eip)) = (ip, ehost.parse::<IpAddr>()) {
                if ip == eip {
                    return true;
                }
                continue;
            }
            let suffix = ehost.trim_start_matches("*.").trim_start_matches('.');
            if suffix.is_empty() {
                continue;
            }
            if host == suffix || host.ends_with(&format!(".{suffix}")) {
                return true;
            }
        }
        false
    }
}

fn split_host_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((h, after)) = rest.split_once(']') {
            return (h, after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(p) => (h, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn cidr_contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// Whether `host` (without port; IPv6 with or without brackets) is
/// `localhost`, in 127.0.0.0/8 or `::1`.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.to_ascii_lowercase().ends_with(".localhost")
        || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Split `host[:port]` / `[v6][:port]` into host and port.
pub(crate) fn host_and_port(hostport: &str, default_port: u16) -> (&str, u16) {
    if let Some(rest) = hostport.strip_prefix('[') {
        if let Some((h, after)) = rest.split_once(']') {
            let p = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (h, p.unwrap_or(default_port));
        }
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().unwrap_or(default_port)),
        _ => (hostport, default_port),
    }
}

impl Default for RegistryConfig {
    /// Defaults plus the environment: proxies from `*_PROXY`, docker's
    /// config from `$DOCKER_CONFIG` or `~/.docker`.
    fn default() -> Self {
        RegistryConfig {
            registries: BTreeMap::new(),
            ca_files: Vec::new(),
            proxy: ProxyConfig::from_env(),
            max_attempts: 4,
            backoff: Duration::from_millis(200),
            concurrency: 4,
            chunk_threshold: 256 << 20,
            chunk_size: 64 << 20,
            docker_config_dir: default_docker_config_dir(),
            credentials: BTreeMap::new(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
            user_agent: concat!("rbuild/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// `$DOCKER_CONFIG`, else `$HOME/.docker`.
pub fn default_docker_config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker"))
}

/// `$XDG_CONFIG_HOME/rbuild/config.toml`, else
/// `$HOME/.config/rbuild/config.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("rbuild/config.toml"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/rbuild/config.toml"))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    registry: BTreeMap<String, FileRegistry>,
    #[serde(default)]
    insecure_registries: Vec<String>,
    #[serde(default)]
    ca_files: Vec<PathBuf>,
    proxy: Option<FileProxy>,
    max_attempts: Option<u32>,
    backoff_ms: Option<u64>,
    concurrency: Option<usize>,
    chunk_threshold_mb: Option<u64>,
    chunk_size_mb: Option<u64>,
    docker_config: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileRegistry {
    #[serde(default)]
    mirrors: Vec<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    plain_http: bool,
    #[serde(default)]
    ca_files: Vec<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileProxy {
    http: Option<String>,
    https: Option<String>,
    no_proxy: Option<String>,
}

impl RegistryConfig {
    /// Load the configuration: from `path` when given (it must exist), else
    /// from the default file (`~/.config/rbuild/config.toml`) if it exists,
    /// else the defaults. Settings absent from the file keep their
    /// defaults; a `[proxy]` table replaces the environment's proxies.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => match default_config_path() {
                Some(p) if p.exists() => p,
                _ => return Ok(Self::default()),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Self::from_toml(&text, &path)
    }

    /// Parse TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        let bad = |message: String| Error::Config {
            path: origin.to_path_buf(),
            message,
        };
        let file: FileConfig = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let base = origin.parent().unwrap_or(Path::new("."));
        let abs = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        let mut cfg = RegistryConfig::default();
        for (name, r) in file.registry {
            for m in &r.mirrors {
                validate_endpoint(m)
                    .map_err(|e| bad(format!("registry {name:?} mirror {m:?}: {e}")))?;
            }
            cfg.registries.insert(
                normalize_registry(&name),
                RegistryHost {
                    mirrors: r.mirrors,
                    insecure: r.insecure,
                    plain_http: r.plain_http,
                    ca_files: r.ca_files.into_iter().map(abs).collect(),
                },
            );
        }
        for name in file.insecure_registries {
            cfg.registries
                .entry(normalize_registry(&name))
                .or_default()
                .insecure = true;
        }
        cfg.ca_files = file.ca_files.into_iter().map(abs).collect();
        if let Some(p) = file.proxy {
            cfg.proxy = ProxyConfig {
                http: p.http,
                https: p.https,
                no_proxy: p.no_proxy,
            };
        }
        if let Some(n) = file.max_attempts {
            if n == 0 {
                return Err(bad("max_attempts must be at least 1".into()));
            }
            cfg.max_attempts = n;
        }
        if let Some(ms) = file.backoff_ms {
            cfg.backoff = Duration::from_millis(ms);
        }
        if let Some(n) = file.concurrency {
            cfg.concurrency = n.max(1);
        }
        if let Some(mb) = file.chunk_threshold_mb {
            cfg.chunk_threshold = mb << 20;
        }
        if let Some(mb) = file.chunk_size_mb {
            if mb == 0 {
                return Err(bad("chunk_size_mb must be at least 1".into()));
            }
            cfg.chunk_size = mb << 20;
        }
        if let Some(d) = file.docker_config {
            cfg.docker_config_dir = Some(abs(d));
        }
        Ok(cfg)
    }

    /// Settings for a registry (defaults when not configured).
    pub fn host(&self, registry: &str) -> RegistryHost {
        self.registries.get(registry).cloned().unwrap_or_default()
    }
}

/// Check that a mirror is `host[:port]` or `http(s)://host[:port][/]`.
fn validate_endpoint(s: &str) -> std::result::Result<(), String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s)
        .trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains("://") {
        return Err("expected [http[s]://]host[:port]".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(no_proxy: &str) -> ProxyConfig {
        ProxyConfig {
            http: Some("http://proxy:3128".into()),
            https: Some("http://proxy:3128".into()),
            no_proxy: Some(no_proxy.into()),
        }
    }

    #[test]
    fn loopback_never_proxied() {
        let p = proxy("");
        for h in [
            "127.0.0.1",
            "127.1.2.3",
            "localhost",
            "::1",
            "[::1]",
            "foo.localhost",
        ] {
            assert_eq!(p.proxy_for("http", h, 5000), None, "{h}");
        }
        assert_eq!(
            p.proxy_for("http", "registry.example", 80),
            Some("http://proxy:3128")
        );
        assert_eq!(p.proxy_for("ftp", "registry.example", 80), None);
    }

    #[test]
    fn no_proxy_matching() {
        let p =
            proxy("example.com, .corp.net,10.0.0.0/8,192.168.1.7,host:5000,[fd00::1]:443,fd00::2");
        let on = |h: &str, port: u16| p.proxy_for("https", h, port).is_some();
        assert!(!on("example.com", 443));
        assert!(!on("a.example.com", 443));
        assert!(on("notexample.com", 443));
        assert!(!on("x.corp.net", 443));
        assert!(!on("corp.net", 443));
        assert!(!on("10.1.2.3", 443));
        assert!(on("11.1.2.3", 443));
        assert!(!on("192.168.1.7", 443));
        assert!(on("192.168.1.8", 443));
        assert!(!on("host", 5000));
        assert!(on("host", 5001));
        assert!(!on("fd00::1", 443));
        assert!(on("fd00::1", 80));
        assert!(!on("fd00::2", 1));
        assert!(proxy("*").proxy_for("http", "anything", 1).is_none());
    }

    #[test]
    fn load_from_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("config.toml");
        std::fs::write(
            &p,
            "[registry.\"r:1\"]\ninsecure = true\nca_files = [\"ca.pem\"]\n",
        )
        .expect("write");
        let c = RegistryConfig::load(Some(&p)).expect("load");
        assert!(c.host("r:1").insecure);
        assert_eq!(c.host("r:1").ca_files, vec![dir.path().join("ca.pem")]);
        let e = RegistryConfig::load(Some(&dir.path().join("missing.toml"))).expect_err("missing");
        assert_eq!(e.kind(), crate::ErrorKind::Io);
    }

    #[test]
    fn toml_round() {
        let text = r#"
            insecure_registries = ["myreg:5000"]
            ca_files = ["ca.pem"]
            max_attempts = 2
            backoff_ms = 10
            concurrency = 8
            chunk_size_mb = 16

            [proxy]
            http = "http://p:1"
            no_proxy = "internal"

            [registry."index.docker.io"]
            mirrors = ["https://mirror.example", "http://127.0.0.1:5001"]

            [registry."other:443"]
            plain_http = true
            ca_files = ["/abs/ca.pem"]
        "#;
        let c =
            RegistryConfig::from_toml(text, Path::new("/etc/rbuild/config.toml")).expect("parse");
        assert_eq!(c.max_attempts, 2);
        assert_eq!(c.backoff, Duration::from_millis(10));
        assert_eq!(c.concurrency, 8);
        assert_eq!(c.chunk_size, 16 << 20);
        assert_eq!(c.ca_files, vec![PathBuf::from("/etc/rbuild/ca.pem")]);
        assert_eq!(c.proxy.http.as_deref(), Some("http://p:1"));
        assert_eq!(c.proxy.https, None);
        assert_eq!(c.host("docker.io").mirrors.len(), 2);
        assert!(c.host("myreg:5000").insecure);
        assert!(c.host("other:443").plain_http);
        let e = RegistryConfig::from_toml("bogus = 1", Path::new("x.toml")).expect_err("unknown");
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        let e = RegistryConfig::from_toml("[registry.a]\nmirrors=[\"http://x/y\"]", Path::new("x"))
            .expect_err("path");
        assert!(e.to_string().contains("mirror"), "{e}");
    }
}
