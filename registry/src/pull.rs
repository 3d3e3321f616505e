//! Resolve (manifest, index, platform, config) and pull (blobs into the
//! content store, verified while streaming).

use crate::client::{error_message, Client, Endpoint, Failed, Scope};
use crate::error::error_chain;
use crate::manifest::{list_platforms, media, select_platform, ManifestDoc};
use crate::reference::Reference;
use crate::{Error, Result};
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use rbuild_cache::{ContentStore, Descriptor};
use rbuild_graph::{Digest, Platform};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use std::io::Write as _;

/// Largest manifest or index accepted (distribution's own limit is 4 MiB).
const MAX_MANIFEST: u64 = 8 << 20;
/// Largest image config read into memory.
const MAX_CONFIG: u64 = 32 << 20;

/// An image resolved for one platform: its manifest, config and layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedImage {
    /// Digest of the platform's image manifest (not of the index).
    pub manifest_digest: Digest,
    /// The manifest's bytes, exactly as served.
    pub manifest: Vec<u8>,
    /// The manifest's media type (OCI or Docker schema 2).
    pub manifest_media_type: String,
    /// The image config's bytes.
    pub config: Vec<u8>,
    /// Digest of the config.
    pub config_digest: Digest,
    /// The layer descriptors, base layer first.
    pub layers: Vec<Descriptor>,
}

impl ResolvedImage {
    /// Put the manifest and the config into `store`.
    pub fn store_metadata(&self, store: &ContentStore) -> Result<()> {
        store.put(&self.manifest)?;
        store.put(&self.config)?;
        Ok(())
    }
}

/// A manifest or index as fetched.
struct Fetched {
    bytes: Vec<u8>,
    digest: Digest,
    doc: ManifestDoc,
    media_type: String,
}

impl Client {
    /// Resolve `reference` for `platform`: fetch the manifest (choosing from
    /// an index or manifest list), and the config. Mirrors are tried first.
    /// Digests are verified; nothing is stored (see [`Client::pull`]).
    pub async fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<ResolvedImage> {
        let endpoints = self.pull_endpoints(reference);
        let mut last = None;
        for ep in &endpoints {
            match self.resolve_at(ep, reference, platform).await {
                Ok(r) => return Ok(r),
                Err(e) if ep.mirror => {
                    tracing::debug!(mirror = %ep.host, error = %e, "mirror failed, trying next");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::NotFound {
            registry: reference.registry.clone(),
            what: format!("manifest {reference}"),
        }))
    }

    async fn resolve_at(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<ResolvedImage> {
        let scope = Scope::pull(&reference.repository);
        let top = self
            .fetch_manifest(ep, &scope, reference, &reference.object())
            .await?;
        if let Some(want) = &reference.digest {
            if *want != top.digest {
                return Err(Error::DigestMismatch {
                    what: format!("manifest {reference}"),
                    expected: want.clone(),
                    actual: top.digest,
                });
            }
        }
        let manifest = if media::is_index(&top.media_type) {
            let entries = top.doc.manifests.as_deref().unwrap_or_default();
            let chosen =
                select_platform(entries, platform).ok_or_else(|| Error::PlatformNotFound {
                    reference: reference.to_string(),
                    platform: platform.to_string(),
                    available: list_platforms(entries),
                })?;
            let child = self
                .fetch_manifest(ep, &scope, reference, &chosen.digest.to_string())
                .await?;
            if child.digest != chosen.digest {
                return Err(Error::DigestMismatch {
                    what: format!("manifest {}@{}", reference.name(), chosen.digest),
                    expected: chosen.digest.clone(),
                    actual: child.digest,
                });
            }
            if !media::is_manifest(&child.media_type) {
                return Err(Error::Protocol {
                    registry: ep.name.clone(),
                    message: format!(
                        "index entry {} is a {}, not an image manifest",
                        chosen.digest, child.media_type
                    ),
                });
            }
            child
        } else {
            top
        };
        let config_desc = manifest.doc.config.clone().ok_or_else(|| Error::Protocol {
            registry: ep.name.clone(),
            message: format!("manifest {} has no config", manifest.digest),
        })?;
        if config_desc.size > MAX_CONFIG {
            return Err(Error::Protocol {
                registry: ep.name.clone(),
                message: format!("config of {} bytes is too large", config_desc.size),
            });
        }
        let config = self
            .fetch_small_blob(ep, &scope, reference, &config_desc)
            .await?;
        Ok(ResolvedImage {
            manifest_digest: manifest.digest,
            manifest: manifest.bytes,
            manifest_media_type: manifest.media_type,
            config,
            config_digest: config_desc.digest,
            layers: manifest.doc.layers.unwrap_or_default(),
        })
    }

    /// Fetch a manifest or index; by digest, its digest is checked. A body
    /// that breaks off, comes up short or fails the check is fetched again.
    async fn fetch_manifest(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        reference: &Reference,
        object: &str,
    ) -> Result<Fetched> {
        let what = format!("manifest {}:{object}", reference.name());
        self.refetching(&what, || {
            self.fetch_manifest_once(ep, scope, reference, object, &what)
        })
        .await
    }

    async fn fetch_manifest_once(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        reference: &Reference,
        object: &str,
        what: &str,
    ) -> std::result::Result<Fetched, Failed> {
        let probe = self.probe(ep).await?;
        let url = format!(
            "{}/v2/{}/manifests/{object}",
            probe.base, reference.repository
        );
        let resp = self
            .send(
                ep,
                scope,
                Method::GET,
                &url,
                &|rb| Ok(rb.header(ACCEPT, media::ACCEPT)),
                true,
            )
            .await?;
        let resp = check_status(ep, "GET", &url, resp, what, StatusCode::OK).await?;
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
        let bytes = read_limited(ep, resp, MAX_MANIFEST, what, &url).await?;
        let digest = Digest::sha256_of(&bytes);
        if let Ok(want) = object.parse::<Digest>() {
            if want != digest {
                return Err(Failed::Body(Error::DigestMismatch {
                    what: format!("{what} from {url}"),
                    expected: want,
                    actual: digest,
                }));
            }
        }
        let (doc, media_type) = ManifestDoc::parse(&bytes, content_type.as_deref(), &ep.name)?;
        Ok(Fetched {
            bytes,
            digest,
            doc,
            media_type,
        })
    }

    /// Fetch a small blob (a config) whole and verify it; fetched again
    /// when the body breaks off, comes up short or fails verification.
    async fn fetch_small_blob(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        reference: &Reference,
        desc: &Descriptor,
    ) -> Result<Vec<u8>> {
        let what = format!("blob {}@{}", reference.name(), desc.digest);
        self.refetching(&what, || async {
            let probe = self.probe(ep).await?;
            let url = format!(
                "{}/v2/{}/blobs/{}",
                probe.base, reference.repository, desc.digest
            );
            let resp = self.send(ep, scope, Method::GET, &url, &Ok, true).await?;
            let resp = check_status(ep, "GET", &url, resp, &what, StatusCode::OK).await?;
            let bytes = read_limited(ep, resp, desc.size, &what, &url).await?;
            verify_bytes(&format!("{what} from {url}"), &bytes, desc).map_err(Failed::Body)?;
            Ok(bytes)
        })
        .await
    }

    /// Download one blob into `store`, verifying size and digest while
    /// streaming; nothing is stored on a mismatch. Does nothing when the
    /// store already has it. Mirrors are tried first.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        store: &ContentStore,
    ) -> Result<()> {
        if store.contains(&desc.digest) && store.size(&desc.digest)? == desc.size {
            return Ok(());
        }
        let endpoints = self.pull_endpoints(reference);
        let mut last = None;
        for ep in &endpoints {
            match self.fetch_blob_at(ep, reference, desc, store).await {
                Ok(()) => return Ok(()),
                Err(e) if ep.mirror => {
                    tracing::debug!(mirror = %ep.host, error = %e, "mirror failed, trying next");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::NotFound {
            registry: reference.registry.clone(),
            what: format!("blob {}", desc.digest),
        }))
    }

    async fn fetch_blob_at(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        desc: &Descriptor,
        store: &ContentStore,
    ) -> Result<()> {
        let scope = Scope::pull(&reference.repository);
        let max = self.config().max_attempts;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.download(ep, &scope, reference, desc, store).await {
                // A digest mismatch may be a corrupted transfer: fetch
                // again; a registry that keeps serving it fails in the end.
                Err(e)
                    if (e.is_transient() || matches!(e, Error::DigestMismatch { .. }))
                        && attempt < max =>
                {
                    tracing::debug!(digest = %desc.digest, error = %e, attempt, "blob download failed, retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                r => return r,
            }
        }
    }

    async fn download(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        reference: &Reference,
        desc: &Descriptor,
        store: &ContentStore,
    ) -> Result<()> {
        let probe = self.probe(ep).await?;
        let url = format!(
            "{}/v2/{}/blobs/{}",
            probe.base, reference.repository, desc.digest
        );
        let what = format!("blob {}@{}", reference.name(), desc.digest);
        let resp = self.send(ep, scope, Method::GET, &url, &Ok, true).await?;
        let resp = check_status(ep, "GET", &url, resp, &what, StatusCode::OK).await?;
        if let Some(len) = content_length(&resp) {
            if len != desc.size {
                return Err(Error::SizeMismatch {
                    what,
                    expected: desc.size,
                    actual: len,
                });
            }
        }
        // File writes run on a blocking thread; chunks cross a bounded
        // channel. The writer commits only after an explicit end marker, so
        // an aborted download leaves nothing in the store.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Bytes>>(16);
        let writer_store = store.clone();
        let expected = (desc.digest.clone(), desc.size);
        let writer = tokio::task::spawn_blocking(move || -> Result<bool> {
            let mut w = writer_store.writer()?;
            while let Some(msg) = rx.blocking_recv() {
                match msg {
                    Some(chunk) => w.write_all(&chunk).map_err(|source| Error::Io {
                        path: writer_store.root().join("ingest"),
                        source,
                    })?,
                    None => {
                        w.commit(Some((&expected.0, expected.1)))?;
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        });
        let mut stream = resp.bytes_stream();
        let mut n: u64 = 0;
        let mut failure = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => {
                    n += chunk.len() as u64;
                    if n > desc.size {
                        failure = Some(Error::SizeMismatch {
                            what: what.clone(),
                            expected: desc.size,
                            actual: n,
                        });
                        break;
                    }
                    if tx.send(Some(chunk)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(Error::Transport {
                        registry: ep.name.clone(),
                        message: format!(
                            "{what}: reading the body of GET {url}: {}",
                            error_chain(&e)
                        ),
                    });
                    break;
                }
            }
        }
        if failure.is_none() && n < desc.size {
            failure = Some(Error::SizeMismatch {
                what: what.clone(),
                expected: desc.size,
                actual: n,
            });
        }
        if failure.is_none() {
            let _ = tx.send(None).await;
        }
        drop(tx);
        let joined = writer.await.map_err(|e| Error::Io {
            path: store.root().to_path_buf(),
            source: std::io::Error::other(format!("blob writer task failed: {e}")),
        })?;
        if let Some(f) = failure {
            return Err(f);
        }
        match joined {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Io {
                path: store.root().to_path_buf(),
                source: std::io::Error::other("blob writer stopped early"),
            }),
            Err(Error::Store(rbuild_cache::Error::DigestMismatch { expected, actual })) => {
                Err(Error::DigestMismatch {
                    what,
                    expected,
                    actual,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Resolve `reference` for `platform` and download everything into
    /// `store`: manifest, config, and the layers (at most
    /// `config.concurrency` at once).
    pub async fn pull(
        &self,
        reference: &Reference,
        platform: &Platform,
        store: &ContentStore,
    ) -> Result<ResolvedImage> {
        let image = self.resolve(reference, platform).await?;
        image.store_metadata(store)?;
        let n = self.config().concurrency.max(1);
        futures_util::stream::iter(image.layers.iter().map(Ok))
            .try_for_each_concurrent(n, |d| self.fetch_blob(reference, d, store))
            .await?;
        Ok(image)
    }
}

/// Turn unexpected statuses into errors.
pub(crate) async fn check_status(
    ep: &Endpoint,
    method: &str,
    url: &str,
    resp: reqwest::Response,
    what: &str,
    want: StatusCode,
) -> Result<reqwest::Response> {
    let status = resp.status();
    if status == want {
        return Ok(resp);
    }
    let message = error_message(resp).await;
    Err(match status {
        StatusCode::NOT_FOUND => Error::NotFound {
            registry: ep.name.clone(),
            what: what.to_string(),
        },
        StatusCode::FORBIDDEN => Error::Denied {
            registry: ep.name.clone(),
            message,
        },
        _ => Error::Status {
            registry: ep.name.clone(),
            status: status.as_u16(),
            method: method.to_string(),
            url: url.to_string(),
            message,
        },
    })
}

fn content_length(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Read a body of at most `limit` bytes, and all of its `Content-Length`.
/// A body that breaks off or comes up short is [`Failed::Body`] (worth
/// fetching again); a body over `limit` is final. Errors name `url`.
async fn read_limited(
    ep: &Endpoint,
    resp: reqwest::Response,
    limit: u64,
    what: &str,
    url: &str,
) -> std::result::Result<Vec<u8>, Failed> {
    let too_large = || {
        Failed::Final(Error::Protocol {
            registry: ep.name.clone(),
            message: format!("{what}: larger than {limit} bytes"),
        })
    };
    let declared = content_length(&resp);
    if declared.is_some_and(|l| l > limit) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Failed::Body(Error::Transport {
                registry: ep.name.clone(),
                message: format!("{what}: reading the body of GET {url}: {}", error_chain(&e)),
            })
        })?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    match declared {
        Some(l) if (out.len() as u64) < l => Err(Failed::Body(Error::SizeMismatch {
            what: format!("{what} from {url}"),
            expected: l,
            actual: out.len() as u64,
        })),
        _ => Ok(out),
    }
}

fn verify_bytes(what: &str, bytes: &[u8], desc: &Descriptor) -> Result<()> {
    let actual = Digest::sha256_of(bytes);
    if actual != desc.digest {
        return Err(Error::DigestMismatch {
            what: what.to_string(),
            expected: desc.digest.clone(),
            actual,
        });
    }
    if bytes.len() as u64 != desc.size {
        return Err(Error::SizeMismatch {
            what: what.to_string(),
            expected: desc.size,
            actual: bytes.len() as u64,
        });
    }
    Ok(())
}
