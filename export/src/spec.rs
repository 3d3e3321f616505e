//! `--output` parsing, in buildx's syntax.
//!
//! `type=oci,dest=out.tar,name=foo:1`: one CSV record of `key=value`
//! fields (double quotes protect commas, as in `"name=a:1,a:2"`). Two
//! shorthands: `-o path` means `type=local,dest=path`, and `-o -` means
//! `type=tar,dest=-` (the rootfs as a tar on stdout).

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What kind of output to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// OCI image layout, as a tar (default) or a directory (`tar=false`).
    Oci,
    /// docker-archive tar, as `docker load` and `podman load` read it.
    Docker,
    /// The final rootfs as files in a directory.
    Local,
    /// The final rootfs as one tarball.
    Tar,
    /// An image for a registry (pushed when `push=true`); done by the registry
    /// crate, not by this crate's exporters.
    Image,
}

impl OutputKind {
    /// The `type=` name of this output.
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Oci => "oci",
            OutputKind::Docker => "docker",
            OutputKind::Local => "local",
            OutputKind::Tar => "tar",
            OutputKind::Image => "image",
        }
    }

    /// Whether this kind produces an image (manifest and config) rather than
    /// a rootfs.
    pub fn is_image(self) -> bool {
        matches!(
            self,
            OutputKind::Oci | OutputKind::Docker | OutputKind::Image
        )
    }
}

/// Layer compression requested with `compression=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar layers.
    Uncompressed,
    /// gzip (the default of every image output).
    Gzip,
    /// zstd (needs OCI media types).
    Zstd,
    /// eStargz (gzip-compatible, seekable).
    Estargz,
}

/// Where an output goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A file or directory.
    Path(PathBuf),
    /// Standard output (`dest=-`).
    Stdout,
}

/// A parsed `--output` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    /// The output type.
    pub kind: OutputKind,
    /// `dest=`; `None` only for `type=image`/`registry`.
    pub dest: Option<Destination>,
    /// `name=`, split on commas (image names, such as `reg/foo:1`).
    pub names: Vec<String>,
    /// `tar=` (oci and docker; default true). `false` writes a directory.
    pub tar: bool,
    /// `oci-mediatypes=`, if given. See [`OutputSpec::oci_mediatypes`].
    pub oci_mediatypes: Option<bool>,
    /// `compression=`, if given.
    pub compression: Option<Compression>,
    /// `compression-level=`, if given: gzip (and estargz) 0–9, zstd 1–22,
    /// checked at parse time; ignored for uncompressed layers.
    pub compression_level: Option<i32>,
    /// `force-compression=` (recompress layers already compressed otherwise).
    pub force_compression: bool,
    /// `push=` (image outputs; `type=registry` implies it).
    pub push: bool,
    /// `annotation.KEY=VALUE` and `annotation-manifest.KEY=VALUE`: manifest
    /// annotations.
    pub annotations: BTreeMap<String, String>,
    /// `annotation-manifest-descriptor.KEY=VALUE`: annotations of the
    /// manifest's descriptor in the layout's `index.json` (oci, docker).
    pub manifest_descriptor_annotations: BTreeMap<String, String>,
    /// `annotation-index.KEY=VALUE`: annotations of the image index, the
    /// layout's `index.json` (type=oci only: a single-platform image has no
    /// other index).
    pub index_annotations: BTreeMap<String, String>,
}

impl OutputSpec {
    fn new(kind: OutputKind, dest: Option<Destination>) -> Self {
        Self {
            kind,
            dest,
            names: Vec::new(),
            tar: true,
            oci_mediatypes: None,
            compression: None,
            compression_level: None,
            force_compression: false,
            push: false,
            annotations: BTreeMap::new(),
            manifest_descriptor_annotations: BTreeMap::new(),
            index_annotations: BTreeMap::new(),
        }
    }

    /// Whether any annotation was asked for.
    pub fn has_annotations(&self) -> bool {
        !(self.annotations.is_empty()
            && self.manifest_descriptor_annotations.is_empty()
            && self.index_annotations.is_empty())
    }

    /// The media types to assemble with: as given, else Docker ones for
    /// `type=docker` and OCI ones otherwise (BuildKit's defaults).
    pub fn oci_mediatypes(&self) -> bool {
        self.oci_mediatypes
            .unwrap_or(self.kind != OutputKind::Docker)
    }
}

/// Keys that make a lone `key=value` an attribute rather than a path
/// (buildx would take `-o dest=x` as a directory named `dest=x`).
const KNOWN_KEYS: &[&str] = &[
    "dest",
    "name",
    "tar",
    "oci-mediatypes",
    "compression",
    "compression-level",
    "force-compression",
    "push",
];

const IMAGE_KEYS: &[&str] = &[
    "name",
    "oci-mediatypes",
    "compression",
    "compression-level",
    "force-compression",
    "annotation.KEY",
    "annotation-manifest.KEY",
    "annotation-manifest-descriptor.KEY",
    "annotation-index.KEY",
];

/// Where an `annotation…` key puts its annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AnnotationTarget {
    Manifest,
    ManifestDescriptor,
    Index,
}

/// Split an `annotation[-TYPE].NAME` key as BuildKit's `ParseKey` does:
/// the prefix is matched without regard to case, the annotation name keeps
/// its case. `Ok(None)`: not an annotation key.
fn annotation_key(
    raw_key: &str,
    kind: OutputKind,
) -> std::result::Result<Option<(AnnotationTarget, String)>, String> {
    let Some((prefix, name)) = raw_key.split_once('.') else {
        if raw_key.to_ascii_lowercase().starts_with("annotation") {
            return Err(format!("{raw_key}: expected annotation.KEY=VALUE"));
        }
        return Ok(None);
    };
    let prefix = prefix.to_ascii_lowercase();
    if !prefix.starts_with("annotation") {
        return Ok(None);
    }
    if prefix.contains('[') {
        return Err(format!(
            "{raw_key}: platform-qualified annotations (annotation[PLATFORM].KEY) are not supported: rbuild builds one platform; use annotation.KEY"
        ));
    }
    if name.is_empty() {
        return Err(format!("{raw_key}: empty annotation key"));
    }
    let target = match prefix.as_str() {
        "annotation" | "annotation-manifest" => AnnotationTarget::Manifest,
        "annotation-manifest-descriptor" => AnnotationTarget::ManifestDescriptor,
        "annotation-index" => AnnotationTarget::Index,
        "annotation-index-descriptor" => {
            return Err(format!(
                "{raw_key}: a single-platform image has no index descriptor (multi-platform builds are not supported yet)"
            ))
        }
        _ => {
            return Err(format!(
                "unsupported annotation key {raw_key:?}: expected annotation.KEY, annotation-manifest.KEY, annotation-manifest-descriptor.KEY or annotation-index.KEY"
            ))
        }
    };
    match (target, kind) {
        (_, k) if !k.is_image() => Err(format!(
            "{raw_key}: type={} writes files, not an image, so it has nothing to annotate",
            k.name()
        )),
        (AnnotationTarget::ManifestDescriptor, OutputKind::Image) => Err(format!(
            "{raw_key}: a single-platform type=image/registry output has no index holding the manifest descriptor; use type=oci or type=docker"
        )),
        (AnnotationTarget::Index, OutputKind::Docker | OutputKind::Image) => Err(format!(
            "{raw_key}: a single-platform type={} output has no image index; only type=oci writes one",
            kind.name()
        )),
        _ => Ok(Some((target, name.to_string()))),
    }
}

/// Split one CSV record (Go's `encoding/csv` rules, enough for `--output`).
fn split_csv(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut at_start = true;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == ',' {
            fields.push(std::mem::take(&mut cur));
            at_start = true;
        } else if c == '"' {
            return Err("a double quote may only open a field".to_string());
        } else {
            cur.push(c);
            at_start = false;
        }
    }
    if quoted {
        return Err("unterminated double quote".to_string());
    }
    fields.push(cur);
    Ok(fields)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Parse a buildx `--output` value.
///
/// Accepted types: `oci`, `docker`, `local`, `tar`, `image`, `registry`
/// (= `image` with `push=true`). Keys: `type`, `dest`, `name`, `tar`,
/// `oci-mediatypes`, `compression` (`gzip`, `zstd`, `uncompressed`,
/// `estargz`), `compression-level`, `force-compression`, `push`,
/// `annotation.KEY`, `annotation-manifest.KEY`,
/// `annotation-manifest-descriptor.KEY` (oci, docker) and
/// `annotation-index.KEY` (oci). Unknown types and keys,
/// keys that do not apply to the type, and missing destinations are errors.
pub fn parse_output_spec(s: &str) -> Result<OutputSpec> {
    let err = |reason: String| Error::InvalidSpec {
        spec: s.to_string(),
        reason,
    };
    if s.is_empty() {
        return Err(err("empty output".to_string()));
    }
    let fields = split_csv(s).map_err(&err)?;
    let looks_like_attr = s
        .split_once('=')
        .is_some_and(|(k, _)| KNOWN_KEYS.contains(&k));
    if fields.len() == 1 && fields[0] == s && !s.starts_with("type=") && !looks_like_attr {
        return Ok(if s == "-" {
            OutputSpec::new(OutputKind::Tar, Some(Destination::Stdout))
        } else {
            OutputSpec::new(OutputKind::Local, Some(Destination::Path(s.into())))
        });
    }

    let mut attrs: Vec<(String, String)> = Vec::new();
    let mut typ: Option<String> = None;
    for field in fields {
        let Some((k, v)) = field.split_once('=') else {
            return Err(err(format!("invalid field {field:?}: expected key=value")));
        };
        let key = k.trim().to_string();
        if key.eq_ignore_ascii_case("type") {
            typ = Some(v.to_string());
        } else {
            attrs.push((key, v.to_string()));
        }
    }
    let Some(typ) = typ else {
        return Err(err(
            "type is required for output (type=oci|docker|local|tar|image|registry)".into(),
        ));
    };
    let (kind, mut push) = match typ.as_str() {
        "oci" => (OutputKind::Oci, false),
        "docker" => (OutputKind::Docker, false),
        "local" => (OutputKind::Local, false),
        "tar" => (OutputKind::Tar, false),
        "image" => (OutputKind::Image, false),
        "registry" => (OutputKind::Image, true),
        other => {
            return Err(err(format!(
                "unknown output type {other:?}; expected one of oci, docker, local, tar, image, registry"
            )))
        }
    };
    let mut out = OutputSpec::new(kind, None);
    let not_for = |key: &str| {
        err(format!(
            "key {key:?} does not apply to type={}",
            kind.name()
        ))
    };
    let bool_value = |key: &str, v: &str| {
        parse_bool(v).ok_or_else(|| err(format!("{key}={v:?}: expected true or false")))
    };
    for (raw_key, v) in attrs {
        let image_key = kind.is_image();
        if let Some((target, name)) = annotation_key(&raw_key, kind).map_err(&err)? {
            let map = match target {
                AnnotationTarget::Manifest => &mut out.annotations,
                AnnotationTarget::ManifestDescriptor => &mut out.manifest_descriptor_annotations,
                AnnotationTarget::Index => &mut out.index_annotations,
            };
            map.insert(name, v);
            continue;
        }
        let key = raw_key.to_ascii_lowercase();
        match key.as_str() {
            "dest" => {
                out.dest = Some(if v == "-" {
                    Destination::Stdout
                } else if v.is_empty() {
                    return Err(err("dest is empty".to_string()));
                } else {
                    Destination::Path(v.into())
                })
            }
            "name" if image_key => {
                out.names = v
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(String::from)
                    .collect()
            }
            "tar" if matches!(kind, OutputKind::Oci | OutputKind::Docker) => {
                out.tar = bool_value(&key, &v)?
            }
            "oci-mediatypes" if image_key => out.oci_mediatypes = Some(bool_value(&key, &v)?),
            "force-compression" if image_key => out.force_compression = bool_value(&key, &v)?,
            "push" if image_key => push = bool_value(&key, &v)?,
            "compression" if image_key => {
                out.compression = Some(match v.as_str() {
                    "gzip" => Compression::Gzip,
                    "zstd" => Compression::Zstd,
                    "uncompressed" => Compression::Uncompressed,
                    "estargz" => Compression::Estargz,
                    other => {
                        return Err(err(format!(
                    "unknown compression {other:?}; expected gzip, zstd, uncompressed or estargz"
                )))
                    }
                })
            }
            "compression-level" if image_key => {
                out.compression_level =
                    Some(v.parse().map_err(|_| {
                        err(format!("compression-level={v:?}: expected an integer"))
                    })?)
            }
            "name" | "tar" | "oci-mediatypes" | "force-compression" | "push" | "compression"
            | "compression-level" => return Err(not_for(&key)),
            other => {
                let mut known = vec!["type", "dest"];
                if matches!(kind, OutputKind::Oci | OutputKind::Docker) {
                    known.push("tar");
                }
                if kind.is_image() {
                    known.extend_from_slice(IMAGE_KEYS);
                }
                if kind == OutputKind::Image {
                    known.push("push");
                }
                return Err(err(format!(
                    "unknown key {other:?} for type={}; known keys: {}",
                    kind.name(),
                    known.join(", ")
                )));
            }
        }
    }
    out.push = push;

    match (kind, &out.dest) {
        (OutputKind::Image, Some(_)) => {
            return Err(err(
                "type=image/registry takes no dest (the image goes to the registry named by name=)"
                    .into(),
            ))
        }
        (OutputKind::Image, None) if out.names.is_empty() => {
            return Err(err("type=image/registry needs name=".into()))
        }
        (OutputKind::Image, None) => {}
        (OutputKind::Docker, None) => {
            return Err(err(
                "type=docker needs dest=FILE or dest=- (rbuild has no daemon to load into)".into(),
            ))
        }
        (_, None) => return Err(err(format!("type={} needs dest=", kind.name()))),
        (OutputKind::Local, Some(Destination::Stdout)) => {
            return Err(err(
                "type=local cannot write to stdout; use type=tar,dest=-".into(),
            ))
        }
        (OutputKind::Oci | OutputKind::Docker, Some(Destination::Stdout)) if !out.tar => {
            return Err(err(
                "tar=false writes a directory and cannot go to stdout".into()
            ))
        }
        _ => {}
    }
    if let Some(level) = out.compression_level {
        let algorithm = match out.compression {
            None | Some(Compression::Gzip | Compression::Estargz) => {
                rbuild_cache::Compression::Gzip
            }
            Some(Compression::Zstd) => rbuild_cache::Compression::Zstd,
            Some(Compression::Uncompressed) => rbuild_cache::Compression::Uncompressed,
        };
        rbuild_cache::check_level(algorithm, level).map_err(|e| err(e.to_string()))?;
    }
    if !out.annotations.is_empty() && !out.oci_mediatypes() {
        return Err(err(format!(
            "annotation.{}: Docker media types have no manifest annotations; add oci-mediatypes=true",
            out.annotations.keys().next().map(String::as_str).unwrap_or("KEY")
        )));
    }
    if out.compression == Some(Compression::Zstd) && kind.is_image() && !out.oci_mediatypes() {
        return Err(err(
            "compression=zstd needs OCI media types (oci-mediatypes=true)".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> OutputSpec {
        parse_output_spec(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn bad(s: &str, needle: &str) {
        let e = parse_output_spec(s).expect_err(s).to_string();
        assert!(e.contains(needle), "{s}: {e:?} lacks {needle:?}");
    }

    #[test]
    fn shorthands() {
        let o = ok("out/dir");
        assert_eq!(o.kind, OutputKind::Local);
        assert_eq!(o.dest, Some(Destination::Path("out/dir".into())));
        let o = ok("-");
        assert_eq!(o.kind, OutputKind::Tar);
        assert_eq!(o.dest, Some(Destination::Stdout));
    }

    #[test]
    fn full_specs() {
        let o = ok(r#"type=oci,dest=a.tar,"name=foo:1,bar:2",compression=zstd,annotation.x=y"#);
        assert_eq!(o.kind, OutputKind::Oci);
        assert_eq!(o.names, vec!["foo:1", "bar:2"]);
        assert_eq!(o.compression, Some(Compression::Zstd));
        assert_eq!(o.annotations.get("x").map(String::as_str), Some("y"));
        assert!(o.tar && o.oci_mediatypes());
        let o = ok("type=docker,dest=-,name=foo");
        assert!(!o.oci_mediatypes());
        assert_eq!(o.dest, Some(Destination::Stdout));
        let o = ok("type=oci,tar=false,dest=layout,oci-mediatypes=false");
        assert!(!o.tar && !o.oci_mediatypes());
        let o = ok("type=registry,name=reg/foo:1");
        assert_eq!(o.kind, OutputKind::Image);
        assert!(o.push);
        let o = ok("TYPE=local, Dest=x".replace("TYPE", "type").as_str());
        assert_eq!(o.dest, Some(Destination::Path("x".into())));
    }

    #[test]
    fn errors() {
        bad("type=zip,dest=x", "unknown output type \"zip\"");
        bad(
            "type=oci,dest=x,colour=red",
            "unknown key \"colour\" for type=oci",
        );
        bad("type=local,dest=x,name=foo", "does not apply to type=local");
        bad("type=tar,dest=x,tar=false", "does not apply to type=tar");
        bad("dest=x", "type is required");
        bad("type=oci", "needs dest=");
        bad("type=docker", "no daemon");
        bad("type=local,dest=-", "cannot write to stdout");
        bad("type=oci,tar=false,dest=-", "cannot go to stdout");
        bad("type=oci,dest=x,tar=maybe", "expected true or false");
        bad("type=oci,dest=x,compression=lz4", "unknown compression");
        bad(
            "type=oci,dest=x,oci-mediatypes=false,compression=zstd",
            "zstd needs OCI",
        );
        bad("type=oci,dest=x,bogus", "expected key=value");
        bad(r#"type=oci,"dest=x"#, "unterminated");
        bad("type=image,dest=x,name=a", "takes no dest");
        bad("type=docker,dest=x,compression=zstd", "zstd needs OCI");
    }

    #[test]
    fn annotations_go_where_their_key_says_or_are_refused() {
        let o = ok("type=oci,dest=x,annotation.a=1,Annotation-Manifest.org.Title=2,annotation-manifest-descriptor.d=3,annotation-index.i=4");
        let m = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(o.annotations, m(&[("a", "1"), ("org.Title", "2")]));
        assert_eq!(o.manifest_descriptor_annotations, m(&[("d", "3")]));
        assert_eq!(o.index_annotations, m(&[("i", "4")]));
        assert!(o.has_annotations());
        let o = ok("type=docker,dest=x,annotation-manifest-descriptor.d=3");
        assert_eq!(o.manifest_descriptor_annotations, m(&[("d", "3")]));
        ok("type=docker,dest=x,oci-mediatypes=true,annotation.a=1");
        assert_eq!(
            ok("type=registry,name=r/x,annotation.a=1").annotations,
            m(&[("a", "1")])
        );
        bad(
            "type=docker,dest=x,annotation.a=1",
            "annotation.a: Docker media types have no manifest annotations",
        );
        bad(
            "type=image,name=x,oci-mediatypes=false,annotation-manifest.a=1",
            "Docker media types have no manifest annotations",
        );
        bad(
            "type=image,name=x,annotation-index.a=1",
            "annotation-index.a: a single-platform type=image output has no image index",
        );
        bad(
            "type=docker,dest=x,annotation-index.a=1",
            "type=docker output has no image index",
        );
        bad(
            "type=registry,name=x,annotation-manifest-descriptor.a=1",
            "no index holding the manifest descriptor",
        );
        bad(
            "type=oci,dest=x,annotation-index-descriptor.a=1",
            "has no index descriptor",
        );
        bad(
            "type=oci,dest=x,annotation[linux/amd64].a=1",
            "platform-qualified annotations",
        );
        bad(
            "type=oci,dest=x,annotation-config.a=1",
            "unsupported annotation key",
        );
        bad("type=oci,dest=x,annotation.=1", "empty annotation key");
        bad(
            "type=oci,dest=x,annotation=1",
            "expected annotation.KEY=VALUE",
        );
        bad("type=local,dest=x,annotation.a=1", "nothing to annotate");
    }

    #[test]
    fn compression_levels_are_checked_against_the_algorithm() {
        let o = ok("type=oci,dest=x,compression=gzip,compression-level=1");
        assert_eq!(o.compression_level, Some(1));
        ok("type=oci,dest=x,compression-level=0");
        ok("type=oci,dest=x,compression-level=9,compression=gzip");
        ok("type=oci,dest=x,compression=zstd,compression-level=22");
        ok("type=docker,dest=x,compression=estargz,compression-level=9");
        // BuildKit ignores a level for uncompressed layers.
        ok("type=oci,dest=x,compression=uncompressed,compression-level=30");
        bad(
            "type=oci,dest=x,compression=gzip,compression-level=10",
            "compression-level=10 is out of range for gzip: expected 0-9",
        );
        // The key order does not matter: the default algorithm is gzip.
        bad(
            "type=oci,dest=x,compression-level=12",
            "out of range for gzip: expected 0-9",
        );
        bad(
            "type=oci,dest=x,compression-level=-1,compression=gzip",
            "compression-level=-1 is out of range for gzip",
        );
        bad(
            "type=oci,dest=x,compression=zstd,compression-level=0",
            "compression-level=0 is out of range for zstd: expected 1-22",
        );
        bad(
            "type=oci,dest=x,compression=zstd,compression-level=23",
            "out of range for zstd: expected 1-22",
        );
        bad(
            "type=oci,dest=x,compression-level=fast",
            "compression-level=\"fast\": expected an integer",
        );
    }
}
