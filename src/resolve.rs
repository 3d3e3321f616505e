//! Resolving base images for the frontend: reference → pinned reference and
//! image config, honouring `--pull` and remembering answers in the state dir
//! so a rebuild with `--pull=missing` needs no network.

use anyhow::{Context, Result};
use rbuild_frontend::{ImageResolver, ResolvedImage};
use rbuild_graph::{Digest, ImageConfig, Platform};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// `--pull`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    /// Always ask the registry what a tag points to.
    Always,
    /// Use what was resolved before; ask only when unknown.
    Missing,
    /// Never ask the registry.
    Never,
}

impl PullPolicy {
    /// Parse `--pull` (`true` means always, `false` missing, as docker does).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "always" | "true" => Ok(Self::Always),
            "missing" | "false" => Ok(Self::Missing),
            "never" => Ok(Self::Never),
            other => anyhow::bail!("invalid --pull {other:?}: expected always, missing or never"),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RefRecord {
    pinned: String,
    config: ImageConfig,
}

/// Resolves image references through the registry client.
pub struct Resolver {
    /// The async runtime to drive the registry client on.
    pub rt: Arc<tokio::runtime::Runtime>,
    /// The registry client.
    pub client: Arc<rbuild_registry::Client>,
    /// The content store (manifests and configs land there).
    pub store: rbuild_cache::ContentStore,
    /// Where answers are remembered.
    pub refs_dir: PathBuf,
    /// `--pull`.
    pub policy: PullPolicy,
}

impl Resolver {
    fn record_path(&self, reference: &str, platform: &Platform) -> PathBuf {
        let key = Digest::sha256_of(format!("{reference}\n{platform}").as_bytes());
        self.refs_dir.join(key.hex())
    }

    fn resolve_inner(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage> {
        let parsed = rbuild_registry::Reference::parse(reference)
            .with_context(|| format!("invalid reference {reference:?}"))?;
        let normalized = parsed.to_string();
        let path = self.record_path(&normalized, platform);
        let pinned_by_digest = parsed.digest.is_some();
        if self.policy != PullPolicy::Always || pinned_by_digest {
            if let Some(rec) = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<RefRecord>(&b).ok())
            {
                return Ok(ResolvedImage {
                    reference: rec.pinned,
                    config: rec.config,
                });
            }
        }
        if self.policy == PullPolicy::Never {
            anyhow::bail!("image {normalized} is not available locally and --pull=never was given");
        }
        let resolved = self
            .rt
            .block_on(self.client.resolve(&parsed, platform))
            .with_context(|| format!("failed to resolve source metadata for {normalized}"))?;
        resolved
            .store_metadata(&self.store)
            .with_context(|| format!("store the manifest of {normalized}"))?;
        let config: ImageConfig = serde_json::from_slice(&resolved.config)
            .with_context(|| format!("parse image config of {normalized}"))?;
        let pinned = format!(
            "{}@{}",
            normalized.split('@').next().unwrap_or(&normalized),
            resolved.manifest_digest
        );
        let rec = RefRecord {
            pinned: pinned.clone(),
            config: config.clone(),
        };
        fs::create_dir_all(&self.refs_dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.refs_dir)?;
        tmp.write_all(&serde_json::to_vec(&rec)?)?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(ResolvedImage {
            reference: pinned,
            config,
        })
    }
}

impl ImageResolver for Resolver {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        self.resolve_inner(reference, platform)
            .map_err(|e| crate::error_text(&e))
    }
}
