//! rbuild's OCI distribution client: references, resolve, pull, push,
//! authentication, mirrors and proxies. Thin and our own, on `reqwest`.
//!
//! Key types: [`Reference`] (parsed and normalized as docker does),
//! [`Client`] (one per process; cheap to clone), [`RegistryConfig`]
//! (mirrors, insecure registries, CA files, proxies, retries),
//! [`ResolvedImage`], and [`Error`] with its [`ErrorKind`].
//!
//! ```no_run
//! # async fn f(store: &rbuild_cache::ContentStore) -> rbuild_registry::Result<()> {
//! use rbuild_registry::{Client, Reference, RegistryConfig};
//! let client = Client::new(RegistryConfig::load(None)?)?;
//! let r = Reference::parse("busybox:1.36")?;
//! let image = client.pull(&r, &rbuild_graph::Platform::host(), store).await?;
//! # let _ = image; Ok(()) }
//! ```
//!
//! Invariants:
//! - A blob enters the content store only after its size and digest were
//!   verified (hashing while streaming; the store renames atomically), and
//!   manifests and configs are checked against the digests that name them.
//! - Layers are never held in memory: downloads stream into the store and
//!   uploads stream from its files.
//! - Every request, token fetches included, goes through the configured
//!   proxy unless the host is loopback or listed in `no_proxy`.
//! - Retries are bounded (`max_attempts`, exponential backoff) and apply to
//!   transport failures, 5xx and 429 only; upload sessions restart whole.
//! - This crate prints nothing (it logs through `tracing`).
//!
//! Design choice and its cost: one probe of `/v2/` per endpoint learns the
//! scheme (https, or http for insecure and loopback hosts) and the auth
//! challenge, so later requests carry credentials up front and a streamed
//! upload is never sent twice for a 401; the cost is one extra round trip
//! per registry and process.
//!
//! # Configuration file
//!
//! `~/.config/rbuild/config.toml` (or `$XDG_CONFIG_HOME/rbuild/config.toml`,
//! or the path given to [`RegistryConfig::load`]); every key is optional:
//!
//! ```toml
//! insecure_registries = ["myregistry.lan:5000"]  # https unverified, then http
//! ca_files = ["/etc/ssl/my-ca.pem"]              # extra roots for every registry
//! max_attempts = 4            # per request; retries on 5xx, 429, dropped connections
//! backoff_ms = 200            # first retry delay, doubling
//! concurrency = 4             # blobs transferred at once
//! chunk_threshold_mb = 256    # larger blobs are uploaded in PATCH chunks
//! chunk_size_mb = 64
//! docker_config = "/path/to/dir"  # dir of config.json (default $DOCKER_CONFIG or ~/.docker)
//!
//! [proxy]                     # replaces HTTP_PROXY / HTTPS_PROXY / NO_PROXY
//! http = "http://proxy.lan:3128"
//! https = "http://proxy.lan:3128"
//! no_proxy = "internal.lan,.corp,10.0.0.0/8"   # loopback is never proxied
//!
//! [registry."docker.io"]
//! mirrors = ["https://mirror.lan", "http://127.0.0.1:5001"]  # tried in order, pulls only
//!
//! [registry."myregistry.lan:5000"]
//! insecure = true             # or plain_http = true for http only
//! ca_files = ["ca.pem"]       # relative to the config file
//! ```
//!
//! Credentials come from docker's `config.json` (`auths`, `credsStore`,
//! `credHelpers`), or from [`RegistryConfig::credentials`].

#![deny(missing_docs)]

mod auth;
mod client;
mod config;
mod credentials;
mod error;
mod manifest;
mod pull;
mod push;
mod reference;

pub use client::Client;
pub use config::{
    default_config_path, default_docker_config_dir, is_loopback, Credential, ProxyConfig,
    RegistryConfig, RegistryHost,
};
pub use error::{Error, ErrorKind, Result};
pub use manifest::media;
pub use pull::ResolvedImage;
pub use push::{PushImage, PushOptions};
pub use rbuild_cache::{ContentStore, Descriptor};
pub use rbuild_graph::{Digest, Platform};
pub use reference::{
    api_host, normalize_registry, parse_normalized, Reference, DEFAULT_TAG, DOCKER_HUB,
    DOCKER_HUB_API,
};

impl Client {
    /// Store credentials for `registry` in docker's `config.json` (or its
    /// credential helper), after checking them against the registry when
    /// `verify` is set (basic auth on `/v2/`, or the token server).
    pub async fn login(
        &self,
        registry: &str,
        username: &str,
        password: &str,
        verify: bool,
    ) -> Result<()> {
        let registry = normalize_registry(registry);
        let cred = Credential {
            username: username.to_string(),
            password: password.to_string(),
        };
        if verify {
            self.verify_credentials(&registry, &cred).await?;
        }
        let dir = self
            .config()
            .docker_config_dir
            .clone()
            .ok_or_else(|| Error::Credentials {
                registry: registry.clone(),
                message: "no docker config directory (set DOCKER_CONFIG or HOME)".into(),
            })?;
        credentials::store(&dir, &registry, &cred).await?;
        self.forget_registry(&registry).await;
        Ok(())
    }

    /// Remove stored credentials for `registry`. Returns whether there were
    /// any.
    pub async fn logout(&self, registry: &str) -> Result<bool> {
        let registry = normalize_registry(registry);
        let Some(dir) = self.config().docker_config_dir.clone() else {
            return Ok(false);
        };
        let found = credentials::erase(&dir, &registry).await?;
        self.forget_registry(&registry).await;
        Ok(found)
    }
}
