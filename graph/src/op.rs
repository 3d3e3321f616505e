//! Typed operations: sources, exec, file actions and merge.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Position of an input in [`crate::Vertex::inputs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InputIndex(pub u32);

/// One operation of the build graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Produce a filesystem from outside the graph.
    Source(SourceOp),
    /// Run a process on a root filesystem; the output is the changed root.
    Exec(ExecOp),
    /// Apply file actions (copy, mkdir, mkfile, rm) to a base filesystem.
    File(FileOp),
    /// Stack the inputs' filesystems in order (later inputs win).
    Merge(MergeOp),
}

impl Op {
    /// A short kind name for progress and dumps.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Source(_) => "source",
            Op::Exec(_) => "exec",
            Op::File(_) => "file",
            Op::Merge(_) => "merge",
        }
    }
}

/// Where a source filesystem comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceOp {
    /// An empty filesystem (`FROM scratch`).
    Scratch,
    /// The root filesystem of a registry image.
    Image(ImageSource),
    /// Files from a local directory given to the build (the context).
    Local(LocalSource),
    /// A git repository.
    Git(GitSource),
    /// A file fetched over HTTP(S).
    Http(HttpSource),
}

/// An image from a registry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageSource {
    /// The platform to select from an index.
    pub platform: Platform,
    /// Normalized reference, pinned by digest when the frontend resolved it
    /// (e.g. `127.0.0.1:5000/library/busybox:latest@sha256:…`).
    pub reference: String,
}

/// A named local directory (`context`, or a `--build-context name=path`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LocalSource {
    /// `.dockerignore` patterns.
    pub exclude_patterns: Vec<String>,
    /// Only these patterns are transferred (empty: everything).
    pub include_patterns: Vec<String>,
    /// The name the CLI maps to a host path; the path itself is never hashed.
    pub name: String,
}

/// A git repository source.
///
/// `checksum` and `skip_submodules` are left out of the encoding when unset,
/// so sources without them keep the digests they had before the fields
/// existed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GitSource {
    /// The commit the ref must resolve to: a full or abbreviated hex commit
    /// id (`ADD --checksum=`, `?commit=`), checked against the resolved
    /// commit (or the annotated tag object) as a prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Keep the `.git` directory.
    pub keep_git_dir: bool,
    /// Branch, tag or commit.
    pub reference: Option<String>,
    /// Remote URL.
    pub remote: String,
    /// Do not check submodules out (`?submodules=false`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_submodules: bool,
    /// Sub directory of the checkout to use.
    pub subdir: Option<String>,
}

/// A remote file source.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HttpSource {
    /// Expected digest of the content, if given (`ADD --checksum`).
    pub checksum: Option<crate::Digest>,
    /// Mode of the stored file.
    pub chmod: Option<u32>,
    /// File name to store the content under.
    pub filename: Option<String>,
    /// The URL.
    pub url: String,
}

/// An OS/architecture pair, e.g. `linux/amd64` or `linux/arm64/v8`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture in GOARCH form (`amd64`, `arm64`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// Variant (`v7`, `v8`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this binary runs on.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// Parse `os/arch[/variant]`, `os` or `arch` and normalize it as
    /// containerd's `platforms.Parse` does: lower case, `x86_64` → `amd64`,
    /// `aarch64` → `arm64`, `armhf` → `arm/v7`, arm64's `v8` and amd64's `v1`
    /// dropped, a bare `arm` taken as `arm/v7`. A lone OS gets the host's
    /// architecture and a lone architecture the OS `linux`. `None` for an
    /// empty part, more than three parts, or a lone word that is neither a
    /// known OS nor a known architecture.
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<String> = s.split('/').map(str::to_ascii_lowercase).collect();
        let valid = |p: &String| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if parts.len() > 3 || !parts.iter().all(valid) {
            return None;
        }
        let (os, arch, variant) = match parts.as_slice() {
            [one] if KNOWN_OS.contains(&normalize_os(one)) => {
                (one.clone(), Platform::host().architecture, None)
            }
            [one] if is_known_arch(one) => ("linux".to_string(), one.clone(), None),
            [_] => return None,
            [os, arch] => (os.clone(), arch.clone(), None),
            [os, arch, variant] => (os.clone(), arch.clone(), Some(variant.clone())),
            _ => return None,
        };
        let (architecture, variant) = normalize_arch(&arch, variant);
        Some(Platform {
            os: normalize_os(&os).to_string(),
            architecture,
            variant,
        })
    }
}

/// Operating systems Go knows (containerd's `isKnownOS`).
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "windows",
    "zos",
];

/// Architectures Go knows (containerd's `isKnownArch`).
const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "ppc64",
    "ppc64le",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

fn normalize_os(os: &str) -> &str {
    match os {
        "macos" => "darwin",
        o => o,
    }
}

fn is_known_arch(arch: &str) -> bool {
    KNOWN_ARCH.contains(&normalize_arch(arch, None).0.as_str())
}

/// containerd's `NormalizeArch`.
fn normalize_arch(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    let v = variant.filter(|v| !v.is_empty());
    let (a, v) = match arch {
        "i386" => ("386", v),
        "x86_64" | "x86-64" | "amd64" => ("amd64", v.filter(|v| v != "v1")),
        "aarch64" | "arm64" => ("arm64", v.filter(|v| v != "8" && v != "v8")),
        "armhf" => ("arm", Some("v7".to_string())),
        "armel" => ("arm", Some("v6".to_string())),
        "arm" => (
            "arm",
            Some(match v.as_deref() {
                None | Some("7") => "v7".to_string(),
                Some(n @ ("5" | "6" | "8")) => format!("v{n}"),
                Some(other) => other.to_string(),
            }),
        ),
        other => (other, v),
    };
    (a.to_string(), v)
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Run a process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOp {
    /// The process.
    pub meta: ExecMeta,
    /// Mounts; the first is the root filesystem at `/` and is the output.
    pub mounts: Vec<Mount>,
    /// Network namespace mode.
    pub network: NetworkMode,
    /// Security mode.
    pub security: SecurityMode,
}

/// An exec environment: (name, value) pairs in order, shared.
pub type Env = Arc<Vec<(Arc<str>, Arc<str>)>>;

/// The process of an exec op.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecMeta {
    /// argv.
    pub args: Vec<String>,
    /// Working directory (absolute).
    pub cwd: String,
    /// Environment, in order, as (name, value). The list is shared between
    /// the exec vertices of a stage that see the same environment, and its
    /// strings between all of them, so lowering a long stage does not copy
    /// its environment for every RUN; the encoding is that of a plain list
    /// of string pairs.
    pub env: Env,
    /// Extra `/etc/hosts` entries, as (host, ip).
    pub extra_hosts: Vec<(String, String)>,
    /// Proxy variables (HTTP_PROXY …) given as build args but not declared:
    /// passed to the process, never hashed, never in history.
    #[serde(skip)]
    pub proxy_env: Vec<(String, String)>,
    /// User spec (`name`, `uid`, `uid:gid`, `name:group`); empty means root.
    pub user: String,
}

/// A mount of an exec op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The input providing the content; `None` for an empty directory.
    pub input: Option<InputIndex>,
    /// What kind of mount.
    pub kind: MountKind,
    /// Path inside the input to mount (`/` for all of it).
    pub selector: String,
    /// Absolute path inside the container.
    pub target: String,
}

/// The kind of an exec mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// A bind of the input (read-only unless `readonly` is false; writes to a
    /// non-root bind are discarded).
    Bind {
        /// Mounted read-only.
        readonly: bool,
    },
    /// A persistent cache directory shared between builds.
    Cache {
        /// Owner gid of a newly created cache directory.
        gid: u32,
        /// Cache id (defaults to the target path).
        id: String,
        /// Mode of a newly created cache directory.
        mode: u32,
        /// Read-only.
        readonly: bool,
        /// How concurrent users share it.
        sharing: CacheSharing,
        /// Owner uid of a newly created cache directory.
        uid: u32,
    },
    /// A tmpfs.
    Tmpfs {
        /// Size limit in bytes.
        size: Option<u64>,
    },
    /// A secret file or env variable; the value is never part of the graph.
    Secret {
        /// Expose as this environment variable instead of / as well as a file.
        env: Option<String>,
        /// Owner gid.
        gid: u32,
        /// Secret id.
        id: String,
        /// File mode.
        mode: u32,
        /// Fail if the secret is not provided.
        required: bool,
        /// Owner uid.
        uid: u32,
    },
    /// An SSH agent socket.
    Ssh {
        /// Owner gid.
        gid: u32,
        /// SSH id (`default`).
        id: String,
        /// Socket mode.
        mode: u32,
        /// Fail if no agent is provided.
        required: bool,
        /// Owner uid.
        uid: u32,
    },
}

/// Sharing mode of a cache mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheSharing {
    /// Concurrent users share one directory.
    #[default]
    Shared,
    /// Each concurrent user gets its own directory.
    Private,
    /// Users wait for each other.
    Locked,
}

/// Network mode of an exec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The builder's default (the host network for now).
    #[default]
    Default,
    /// Loopback only.
    None,
    /// The host's network namespace.
    Host,
}

/// Security mode of an exec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMode {
    /// Default capabilities, seccomp, masked paths.
    #[default]
    Sandbox,
    /// All capabilities (`--security=insecure`, needs `--allow security.insecure`).
    Insecure,
}

/// File actions applied in order to a base filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOp {
    /// The actions, in order.
    pub actions: Vec<FileAction>,
    /// The filesystem the actions modify; `None` starts from scratch.
    pub base: Option<InputIndex>,
}

/// One file action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    /// Copy from another input.
    Copy(CopyAction),
    /// Create a directory.
    Mkdir(MkdirAction),
    /// Create a file with given content.
    Mkfile(MkfileAction),
    /// Remove a path.
    Rm(RmAction),
}

/// Owner of created files: a user and optional group, by id or name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chown {
    /// The group (defaults to the user's primary group, or the same id).
    pub group: Option<UserRef>,
    /// The user.
    pub user: UserRef,
}

/// A user or group, by numeric id or by name (resolved in the destination).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRef {
    /// Numeric id.
    Id(u32),
    /// Name looked up in `/etc/passwd` or `/etc/group` of the destination.
    Name(String),
}

/// A `--chmod` value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chmod {
    /// Octal mode, e.g. `0755`.
    Octal(u32),
    /// Symbolic mode, e.g. `u+x,g-w`.
    Symbolic(String),
}

/// Copy files from an input into the base.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyAction {
    /// A wildcard that matches nothing is not an error.
    pub allow_empty_wildcard: bool,
    /// `src` may contain wildcards.
    pub allow_wildcard: bool,
    /// Unpack local archives (ADD).
    pub attempt_unpack: bool,
    /// Create missing parents of `dest`.
    pub create_dest_path: bool,
    /// Destination path in the base; a trailing `/` means "into this directory".
    pub dest: String,
    /// A source directory copies its contents, not itself.
    pub dir_copy_contents: bool,
    /// Patterns to exclude (`--exclude`).
    pub exclude_patterns: Vec<String>,
    /// Follow a symlink given as `src`.
    pub follow_symlinks: bool,
    /// Patterns to include under a copied directory.
    pub include_patterns: Vec<String>,
    /// Mode override.
    pub mode: Option<Chmod>,
    /// Owner of the copied files (default: keep the source owner for
    /// COPY --from, root for the context).
    pub owner: Option<Chown>,
    /// Keep the parent directories of matched sources (`--parents`).
    pub parents: bool,
    /// The input to copy from.
    pub source: InputIndex,
    /// Path (may contain wildcards) in the source.
    pub src: String,
}

/// Create a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkdirAction {
    /// Create parents as needed.
    pub make_parents: bool,
    /// Mode.
    pub mode: u32,
    /// Owner.
    pub owner: Option<Chown>,
    /// Absolute path.
    pub path: String,
}

/// Create a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkfileAction {
    /// Content.
    pub data: String,
    /// Mode.
    pub mode: u32,
    /// Owner.
    pub owner: Option<Chown>,
    /// Absolute path.
    pub path: String,
}

/// Remove a path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmAction {
    /// A missing path is not an error.
    pub allow_not_found: bool,
    /// `path` may contain wildcards.
    pub allow_wildcard: bool,
    /// Absolute path (may contain wildcards if allowed).
    pub path: String,
}

/// Merge the inputs in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeOp {}
