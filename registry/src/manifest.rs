//! Manifest and index media types, parsing, and platform selection.

use crate::{Error, Result};
use rbuild_cache::Descriptor;
use rbuild_graph::Platform;
use serde::Deserialize;

/// Media types this client understands.
pub mod media {
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Docker manifest list (schema 2).
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image manifest (schema 2).
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker schema 1 manifest (unsupported).
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    /// Docker schema 1 signed manifest (unsupported).
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";

    /// The `Accept` header for manifest requests.
    pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.v2+json";

    /// Whether `mt` is an index or manifest list.
    pub fn is_index(mt: &str) -> bool {
        mt == OCI_INDEX || mt == DOCKER_LIST
    }

    /// Whether `mt` is an image manifest.
    pub fn is_manifest(mt: &str) -> bool {
        mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
    }
}

/// The fields of a manifest or index this client reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManifestDoc {
    #[serde(default)]
    pub schema_version: Option<u32>,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
}

impl ManifestDoc {
    /// Parse, and settle the media type: the `Content-Type` the registry
    /// sent if it is a known one, else the `mediaType` field, else by shape.
    pub fn parse(
        bytes: &[u8],
        content_type: Option<&str>,
        registry: &str,
    ) -> Result<(Self, String)> {
        let doc: ManifestDoc = serde_json::from_slice(bytes).map_err(|e| Error::Protocol {
            registry: registry.to_string(),
            message: format!("invalid manifest JSON: {e}"),
        })?;
        if doc.schema_version == Some(1) {
            return Err(Error::Unsupported(format!(
                "{registry}: Docker schema 1 manifests are not supported (push the image again with a current client)"
            )));
        }
        let known = |m: &str| media::is_index(m) || media::is_manifest(m);
        let mt = match (content_type.filter(|c| known(c)), doc.media_type.as_deref()) {
            (Some(c), _) => c.to_string(),
            (None, Some(m)) if known(m) => m.to_string(),
            (None, Some(m)) if m == media::DOCKER_SCHEMA1 || m == media::DOCKER_SCHEMA1_SIGNED => {
                return Err(Error::Unsupported(format!("{registry}: schema 1 manifest")));
            }
            _ if doc.manifests.is_some() => media::OCI_INDEX.to_string(),
            _ if doc.config.is_some() => media::OCI_MANIFEST.to_string(),
            _ => {
                return Err(Error::Protocol {
                    registry: registry.to_string(),
                    message: format!(
                        "unknown manifest type (Content-Type {:?}, mediaType {:?})",
                        content_type, doc.media_type
                    ),
                })
            }
        };
        Ok((doc, mt))
    }
}

/// The normalized (os, architecture, variant) of a platform, as containerd
/// normalizes: `x86_64` → `amd64`, `aarch64` → `arm64`, arm64's default
/// variant is `v8`, arm's is `v7`, amd64's `v1` is no variant.
fn normalize(os: &str, arch: &str, variant: Option<&str>) -> (String, String, Option<String>) {
    let os = os.to_ascii_lowercase();
    let arch = arch.to_ascii_lowercase();
    let variant = variant
        .map(str::to_ascii_lowercase)
        .filter(|v| !v.is_empty());
    let (arch, variant) = match arch.as_str() {
        "x86_64" | "x86-64" | "amd64" => ("amd64", variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => (
            "arm64",
            Some(match variant.as_deref() {
                None | Some("8") | Some("v8") => "v8".to_string(),
                Some(v) => v.to_string(),
            }),
        ),
        "armhf" => ("arm", Some("v7".to_string())),
        "armel" => ("arm", Some("v6".to_string())),
        "arm" => (
            "arm",
            Some(match variant.as_deref() {
                None | Some("7") | Some("v7") => "v7".to_string(),
                Some("6") => "v6".to_string(),
                Some("5") => "v5".to_string(),
                Some(v) => v.to_string(),
            }),
        ),
        "i386" | "i686" | "386" => ("386", variant),
        _ => (arch.as_str(), variant),
    };
    (os, arch.to_string(), variant)
}

/// How well a candidate platform fits the wanted one: `None` if it cannot
/// run, else a rank (lower is better). An exact match ranks 0; an older arm
/// variant (v6 on a v7 request) ranks by distance.
fn rank(want: &Platform, os: &str, arch: &str, variant: Option<&str>) -> Option<u32> {
    let (wo, wa, wv) = normalize(&want.os, &want.architecture, want.variant.as_deref());
    let (co, ca, cv) = normalize(os, arch, variant);
    if wo != co || wa != ca {
        return None;
    }
    if wv == cv {
        return Some(0);
    }
    if wa == "arm" {
        let n = |v: &Option<String>| {
            v.as_deref()
                .and_then(|v| v.strip_prefix('v'))
                .and_then(|v| v.parse::<u32>().ok())
        };
        if let (Some(w), Some(c)) = (n(&wv), n(&cv)) {
            if c < w {
                return Some(w - c);
            }
        }
    }
    if wa == "amd64" && wv.is_none() {
        // amd64/v2, v3… need CPU features we did not ask for.
        return None;
    }
    None
}

/// Pick the manifest for `platform` from an index's entries (first best
/// match; entries without a platform, such as attestations, never match).
pub(crate) fn select_platform<'a>(
    manifests: &'a [Descriptor],
    platform: &Platform,
) -> Option<&'a Descriptor> {
    manifests
        .iter()
        .filter_map(|d| {
            let p = d.platform.as_ref()?;
            let os = p.get("os")?.as_str()?;
            let arch = p.get("architecture")?.as_str()?;
            let variant = p.get("variant").and_then(|v| v.as_str());
            rank(platform, os, arch, variant).map(|r| (r, d))
        })
        .min_by_key(|(r, _)| *r)
        .map(|(_, d)| d)
}

/// The platforms an index lists, for error messages.
pub(crate) fn list_platforms(manifests: &[Descriptor]) -> String {
    let v: Vec<String> = manifests
        .iter()
        .filter_map(|d| {
            let p = d.platform.as_ref()?;
            let os = p.get("os")?.as_str()?;
            let arch = p.get("architecture")?.as_str()?;
            Some(match p.get("variant").and_then(|v| v.as_str()) {
                Some(v) => format!("{os}/{arch}/{v}"),
                None => format!("{os}/{arch}"),
            })
        })
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_graph::Digest;
    use serde_json::json;

    fn entry(n: u8, platform: serde_json::Value) -> Descriptor {
        let mut d = Descriptor::new(media::OCI_MANIFEST, Digest::sha256_of(&[n]), 1);
        d.platform = Some(platform);
        d
    }

    fn pick(entries: &[Descriptor], want: &str) -> Option<u8> {
        let p = Platform::parse(want).expect("platform");
        select_platform(entries, &p)
            .and_then(|d| entries.iter().position(|e| e == d))
            .map(|i| i as u8)
    }

    #[test]
    fn platform_selection() {
        let idx = vec![
            entry(0, json!({"os":"linux","architecture":"amd64"})),
            entry(1, json!({"os":"linux","architecture":"arm","variant":"v6"})),
            entry(2, json!({"os":"linux","architecture":"arm","variant":"v7"})),
            entry(
                3,
                json!({"os":"linux","architecture":"arm64","variant":"v8"}),
            ),
            entry(4, json!({"os":"unknown","architecture":"unknown"})),
            entry(
                5,
                json!({"os":"linux","architecture":"amd64","variant":"v3"}),
            ),
            entry(6, json!({"os":"windows","architecture":"amd64"})),
        ];
        assert_eq!(pick(&idx, "linux/amd64"), Some(0));
        assert_eq!(pick(&idx, "linux/x86_64"), Some(0));
        assert_eq!(pick(&idx, "linux/amd64/v3"), Some(5));
        assert_eq!(pick(&idx, "linux/arm64"), Some(3));
        assert_eq!(pick(&idx, "linux/arm64/v8"), Some(3));
        assert_eq!(pick(&idx, "linux/arm"), Some(2));
        assert_eq!(pick(&idx, "linux/arm/v6"), Some(1));
        assert_eq!(pick(&idx, "linux/arm/v5"), None);
        assert_eq!(pick(&idx, "windows/amd64"), Some(6));
        assert_eq!(pick(&idx, "linux/s390x"), None);
        // arm64 entry without a variant matches a v8 request.
        let idx2 = vec![entry(0, json!({"os":"linux","architecture":"arm64"}))];
        assert_eq!(pick(&idx2, "linux/arm64/v8"), Some(0));
        // arm/v7 request falls back to v6 when v7 is absent.
        let idx3 = vec![entry(
            0,
            json!({"os":"linux","architecture":"arm","variant":"v6"}),
        )];
        assert_eq!(pick(&idx3, "linux/arm/v7"), Some(0));
        assert!(list_platforms(&idx).contains("linux/arm/v7"));
    }

    #[test]
    fn media_type_detection() {
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[]}"#;
        let (_, mt) = ManifestDoc::parse(m, None, "r").expect("parse");
        assert_eq!(mt, media::OCI_MANIFEST);
        let (_, mt) = ManifestDoc::parse(m, Some(media::DOCKER_MANIFEST), "r").expect("parse");
        assert_eq!(mt, media::DOCKER_MANIFEST);
        let (_, mt) = ManifestDoc::parse(
            br#"{"schemaVersion":2,"manifests":[]}"#,
            Some("application/json"),
            "r",
        )
        .expect("parse");
        assert_eq!(mt, media::OCI_INDEX);
        let e = ManifestDoc::parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, None, "r")
            .expect_err("schema1");
        assert_eq!(e.kind(), crate::ErrorKind::Unsupported);
        let e = ManifestDoc::parse(b"{", None, "r").expect_err("json");
        assert_eq!(e.kind(), crate::ErrorKind::Protocol);
    }
}
