//! Push: blobs (HEAD first, cross-repository mount, monolithic or chunked
//! upload streamed from the content store) and manifests or indexes.

use crate::client::{resolve_location, Client, Endpoint, Scope};
use crate::pull::check_status;
use crate::reference::Reference;
use crate::{Error, Result};
use futures_util::TryStreamExt as _;
use rbuild_cache::{ContentStore, Descriptor};
use rbuild_graph::Digest;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use std::collections::BTreeMap;
use std::io::{Seek as _, SeekFrom};
use std::path::Path;
use tokio::io::AsyncReadExt as _;

/// Options for [`Client::push_image_with`].
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    /// Blobs known to exist in another repository of the same registry
    /// (digest → repository path, e.g. `library/busybox`): they are mounted
    /// instead of uploaded when the registry allows.
    pub mount_from: BTreeMap<Digest, String>,
}

/// One platform's image inside a multi-platform push.
#[derive(Clone, Debug)]
pub struct PushImage {
    /// The image manifest (its bytes must be in the content store).
    pub manifest: Descriptor,
    /// Its config and layers (all in the content store).
    pub blobs: Vec<Descriptor>,
}

/// What happened to one blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlobOutcome {
    Existed,
    Mounted,
    Uploaded,
}

impl Client {
    /// Push an image: its blobs (config and layers, streamed from `store`),
    /// then the manifest by tag (or by digest when the reference has no
    /// tag). Returns the manifest's digest.
    pub async fn push_image(
        &self,
        reference: &Reference,
        store: &ContentStore,
        manifest: &[u8],
        manifest_media_type: &str,
        blobs: &[Descriptor],
    ) -> Result<Digest> {
        self.push_image_with(
            reference,
            store,
            manifest,
            manifest_media_type,
            blobs,
            &PushOptions::default(),
        )
        .await
    }

    /// [`Client::push_image`] with options (cross-repository mounts).
    pub async fn push_image_with(
        &self,
        reference: &Reference,
        store: &ContentStore,
        manifest: &[u8],
        manifest_media_type: &str,
        blobs: &[Descriptor],
        options: &PushOptions,
    ) -> Result<Digest> {
        let ep = self.registry_endpoint(&reference.registry);
        let sources: Vec<&str> = blobs
            .iter()
            .filter_map(|b| options.mount_from.get(&b.digest).map(String::as_str))
            .collect();
        let scope = Scope::push(&reference.repository, sources);
        self.push_blobs(&ep, &scope, reference, store, blobs, options)
            .await?;
        self.put_manifest(&ep, &scope, reference, manifest, manifest_media_type)
            .await
    }

    /// Push a multi-platform image: each platform's blobs and manifest (by
    /// digest), then the index under the reference's tag. Returns the
    /// index's digest.
    pub async fn push_index(
        &self,
        reference: &Reference,
        store: &ContentStore,
        index: &[u8],
        index_media_type: &str,
        images: &[PushImage],
        options: &PushOptions,
    ) -> Result<Digest> {
        for img in images {
            let bytes = store.read_blob(&img.manifest.digest)?;
            let child = Reference {
                tag: None,
                digest: Some(img.manifest.digest.clone()),
                ..reference.clone()
            };
            self.push_image_with(
                &child,
                store,
                &bytes,
                &img.manifest.media_type,
                &img.blobs,
                options,
            )
            .await?;
        }
        let ep = self.registry_endpoint(&reference.registry);
        let scope = Scope::push(&reference.repository, []);
        self.put_manifest(&ep, &scope, reference, index, index_media_type)
            .await
    }

    async fn push_blobs(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        reference: &Reference,
        store: &ContentStore,
        blobs: &[Descriptor],
        options: &PushOptions,
    ) -> Result<()> {
        let n = self.config().concurrency.max(1);
        futures_util::stream::iter(blobs.iter().map(Ok))
            .try_for_each_concurrent(n, |d| async move {
                let from = options.mount_from.get(&d.digest).map(String::as_str);
                let outcome = self.push_blob(ep, scope, reference, store, d, from).await?;
                tracing::debug!(digest = %d.digest, ?outcome, "blob pushed");
                Ok(())
            })
            .await
    }

    async fn push_blob(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        reference: &Reference,
        store: &ContentStore,
        desc: &Descriptor,
        mount_from: Option<&str>,
    ) -> Result<BlobOutcome> {
        // A blob that is not local must exist in the target repository or
        // be mountable from `mount_from` (a lazily imported layer).
        let local = store.contains(&desc.digest);
        if local {
            let have = store.size(&desc.digest)?;
            if have != desc.size {
                return Err(Error::SizeMismatch {
                    what: format!("local blob {}", desc.digest),
                    expected: desc.size,
                    actual: have,
                });
            }
        }
        let probe = self.probe(ep).await?;
        let repo = &reference.repository;
        let blob_url = format!("{}/v2/{repo}/blobs/{}", probe.base, desc.digest);
        let resp = self
            .send(ep, scope, Method::HEAD, &blob_url, &Ok, true)
            .await?;
        if resp.status() == StatusCode::OK {
            return Ok(BlobOutcome::Existed);
        }
        if !local {
            if let Some(from) = mount_from.filter(|f| f != repo) {
                let url = format!(
                    "{}/v2/{repo}/blobs/uploads/?mount={}&from={from}",
                    probe.base, desc.digest
                );
                let empty = |rb: reqwest::RequestBuilder| Ok(rb.header(CONTENT_LENGTH, "0"));
                let resp = self
                    .send(ep, scope, Method::POST, &url, &empty, true)
                    .await?;
                if resp.status() == StatusCode::CREATED {
                    return Ok(BlobOutcome::Mounted);
                }
            }
            return Err(Error::NotFound {
                registry: reference.registry.clone(),
                what: format!(
                    "blob {} (not in the local store and not mountable into {repo})",
                    desc.digest
                ),
            });
        }
        let path = store.blob_path(&desc.digest);
        let max = self.config().max_attempts;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .upload(ep, scope, &probe.base, repo, &path, desc, mount_from)
                .await
            {
                Err(e) if e.is_transient() && attempt < max => {
                    tracing::debug!(digest = %desc.digest, error = %e, attempt, "upload failed, retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                r => return r,
            }
        }
    }

    /// One upload session: POST (maybe mounting), then PUT, or PATCHes and
    /// a closing PUT for large blobs.
    #[allow(clippy::too_many_arguments)]
    async fn upload(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        base: &str,
        repo: &str,
        path: &Path,
        desc: &Descriptor,
        mount_from: Option<&str>,
    ) -> Result<BlobOutcome> {
        let what = format!("upload of {} to {}/{repo}", desc.digest, ep.name);
        let mut url = format!("{base}/v2/{repo}/blobs/uploads/");
        if let Some(from) = mount_from.filter(|f| *f != repo) {
            url = format!("{url}?mount={}&from={from}", desc.digest);
        }
        let empty = |rb: reqwest::RequestBuilder| Ok(rb.header(CONTENT_LENGTH, "0"));
        let resp = self
            .send(ep, scope, Method::POST, &url, &empty, true)
            .await?;
        if resp.status() == StatusCode::CREATED && mount_from.is_some() {
            return Ok(BlobOutcome::Mounted);
        }
        let resp = check_status(ep, "POST", &url, resp, &what, StatusCode::ACCEPTED).await?;
        let mut location = resolve_location(&ep.name, &url, &resp)?;
        let chunked = desc.size > self.config().chunk_threshold;
        if chunked {
            let chunk = self.config().chunk_size.max(1);
            let mut offset = 0;
            while offset < desc.size {
                let len = chunk.min(desc.size - offset);
                let range = format!("{offset}-{}", offset + len - 1);
                let build = |rb: reqwest::RequestBuilder| {
                    Ok(rb
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, len.to_string())
                        .header("Content-Range", range.as_str())
                        .body(file_body(path, offset, len)?))
                };
                let resp = self
                    .send(ep, scope, Method::PATCH, &location, &build, false)
                    .await?;
                let resp =
                    check_status(ep, "PATCH", &location, resp, &what, StatusCode::ACCEPTED).await?;
                location = resolve_location(&ep.name, &location, &resp)?;
                offset += len;
            }
        }
        let sep = if location.contains('?') { '&' } else { '?' };
        let put_url = format!("{location}{sep}digest={}", desc.digest);
        let size = desc.size;
        let build = |rb: reqwest::RequestBuilder| {
            if chunked {
                Ok(rb.header(CONTENT_LENGTH, "0"))
            } else {
                Ok(rb
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size.to_string())
                    .body(file_body(path, 0, size)?))
            }
        };
        let resp = self
            .send(ep, scope, Method::PUT, &put_url, &build, false)
            .await?;
        check_status(ep, "PUT", &put_url, resp, &what, StatusCode::CREATED).await?;
        Ok(BlobOutcome::Uploaded)
    }

    async fn put_manifest(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        reference: &Reference,
        manifest: &[u8],
        media_type: &str,
    ) -> Result<Digest> {
        let digest = Digest::sha256_of(manifest);
        if let Some(want) = &reference.digest {
            if *want != digest {
                return Err(Error::DigestMismatch {
                    what: format!("manifest for {reference}"),
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        let object = match (&reference.tag, &reference.digest) {
            (Some(t), _) => t.clone(),
            (None, _) => digest.to_string(),
        };
        let probe = self.probe(ep).await?;
        let url = format!(
            "{}/v2/{}/manifests/{object}",
            probe.base, reference.repository
        );
        let body = bytes::Bytes::copy_from_slice(manifest);
        let build = |rb: reqwest::RequestBuilder| {
            Ok(rb.header(CONTENT_TYPE, media_type).body(body.clone()))
        };
        let resp = self
            .send(ep, scope, Method::PUT, &url, &build, true)
            .await?;
        let what = format!("manifest {}:{object}", reference.name());
        let resp = check_status(ep, "PUT", &url, resp, &what, StatusCode::CREATED).await?;
        if let Some(d) = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
        {
            if d != digest {
                return Err(Error::DigestMismatch {
                    what,
                    expected: digest,
                    actual: d,
                });
            }
        }
        Ok(digest)
    }
}

/// A request body streaming `len` bytes of `path` from `offset`.
fn file_body(path: &Path, offset: u64, len: u64) -> Result<reqwest::Body> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    if offset > 0 {
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
    }
    let reader = tokio::fs::File::from_std(f).take(len);
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024);
    Ok(reqwest::Body::wrap_stream(stream))
}
