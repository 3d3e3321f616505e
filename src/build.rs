//! `rbuild build` and `rbuild debug`: wire frontend, solver and exporters.

use crate::checks;
use crate::cli::{BuildArgs, Cli, DebugCommand};
use crate::progress::{Mode, Renderer};
use crate::resolve::{PullPolicy, Resolver};
use crate::state;
use anyhow::{bail, Context, Result};
use rbuild_export::{OutputKind, OutputSpec};
use rbuild_graph::{BuildGraph, Platform};
use rbuild_solver::ops::{Ops, ResultValue};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod remote;

/// The Dockerfile text, its display name, and the context directory.
struct Input {
    dockerfile: String,
    dockerfile_name: String,
    context: Option<PathBuf>,
    /// A context that came as an archive on stdin, unpacked here (removed
    /// when the build ends).
    _unpacked: Option<tempfile::TempDir>,
}

/// What a `-` context brought on stdin.
enum StdinInput {
    /// A Dockerfile, with no context.
    Dockerfile(String),
    /// A context archive (tar, gzip or zstd), unpacked into a directory.
    Context(tempfile::TempDir),
}

/// Read stdin for a `-` context the way docker does: a tar archive (plain,
/// gzip or zstd) is the build context, anything else is the Dockerfile. The
/// archive is unpacked as it streams in, never held in memory.
fn read_stdin_input() -> Result<StdinInput> {
    let mut stdin = std::io::stdin().lock();
    let mut head = Vec::with_capacity(512);
    (&mut stdin)
        .take(512)
        .read_to_end(&mut head)
        .context("read the build input from stdin")?;
    let kind = archive_kind(&head);
    let mut all = std::io::Cursor::new(head).chain(stdin);
    let reader: Box<dyn Read + '_> = match kind {
        None => {
            let mut text = String::new();
            all.read_to_string(&mut text)
                .context("read Dockerfile from stdin")?;
            return Ok(StdinInput::Dockerfile(text));
        }
        Some(ArchiveKind::Tar) => Box::new(all),
        Some(ArchiveKind::Gzip) => Box::new(flate2::read::MultiGzDecoder::new(all)),
        Some(ArchiveKind::Zstd) => Box::new(
            zstd::stream::read::Decoder::new(all).context("read the zstd context from stdin")?,
        ),
        Some(ArchiveKind::Other(name)) => bail!(
            "the build context on stdin is {name}-compressed; rbuild reads plain, gzip or zstd tar archives"
        ),
    };
    let dir = tempfile::Builder::new()
        .prefix("rbuild-context-")
        .tempdir()
        .context("make a directory for the context from stdin")?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    // `unpack` refuses entries that would land outside `dir`.
    archive
        .unpack(dir.path())
        .context("unpack the build context archive from stdin")?;
    Ok(StdinInput::Context(dir))
}

/// The compression or archive format a stream starts with.
#[derive(Debug, PartialEq, Eq)]
enum ArchiveKind {
    Tar,
    Gzip,
    Zstd,
    Other(&'static str),
}

/// Docker's detection: compression magic numbers, else a tar header
/// (`ustar` at offset 257), else not an archive.
fn archive_kind(head: &[u8]) -> Option<ArchiveKind> {
    match head {
        [0x1f, 0x8b, ..] => Some(ArchiveKind::Gzip),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(ArchiveKind::Zstd),
        [b'B', b'Z', b'h', ..] => Some(ArchiveKind::Other("bzip2")),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Some(ArchiveKind::Other("xz")),
        _ if head.get(257..262) == Some(b"ustar") && tar_checksum_ok(head) => {
            Some(ArchiveKind::Tar)
        }
        _ => None,
    }
}

/// Does the first 512-byte block carry a valid tar header checksum?
fn tar_checksum_ok(head: &[u8]) -> bool {
    let Some(block) = head.get(..512) else {
        return false;
    };
    let stored = tar::Header::from_byte_slice(block);
    let mut computed = stored.clone();
    computed.set_cksum();
    matches!((stored.cksum(), computed.cksum()), (Ok(a), Ok(b)) if a == b)
}

fn read_input(context: &str, file: Option<&Path>) -> Result<Input> {
    if context == "-" && file != Some(Path::new("-")) {
        let (text, name, unpacked) = match (read_stdin_input()?, file) {
            (StdinInput::Dockerfile(text), None) => (text, "Dockerfile".to_string(), None),
            // `-f FILE -` with a Dockerfile on stdin: FILE wins; no context.
            (StdinInput::Dockerfile(_), Some(f)) => (read_dockerfile(f)?, display_name(f), None),
            // `-f` names a file inside the archive.
            (StdinInput::Context(dir), f) => {
                let f = f.unwrap_or(Path::new("Dockerfile"));
                let path = dir.path().join(f.strip_prefix("/").unwrap_or(f));
                (read_dockerfile(&path)?, display_name(f), Some(dir))
            }
        };
        return Ok(Input {
            dockerfile: text,
            dockerfile_name: name,
            context: unpacked.as_ref().map(|d| d.path().to_path_buf()),
            _unpacked: unpacked,
        });
    }
    let ctx = if context == "-" {
        None
    } else {
        let p = PathBuf::from(context);
        let meta = fs::metadata(&p)
            .with_context(|| format!("unable to prepare context: path {context:?} not found"))?;
        if !meta.is_dir() {
            bail!("unable to prepare context: {context:?} is not a directory");
        }
        Some(p)
    };
    let (text, name) = match (file, &ctx) {
        (Some(f), _) if f == Path::new("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("read Dockerfile from stdin")?;
            (s, "Dockerfile".to_string())
        }
        // A `-` context without `-f` was read from stdin above.
        (None, None) => bail!("no Dockerfile: give a context directory or -f"),
        (Some(f), c) => {
            let path = if f.is_absolute() || c.is_none() || f.exists() {
                f.to_path_buf()
            } else {
                c.as_ref()
                    .map(|c| c.join(f))
                    .unwrap_or_else(|| f.to_path_buf())
            };
            let text = read_dockerfile(&path)?;
            (text, display_name(&path))
        }
        (None, Some(c)) => {
            let text = read_dockerfile(&c.join("Dockerfile"))?;
            (text, "Dockerfile".to_string())
        }
    };
    Ok(Input {
        dockerfile: text,
        dockerfile_name: name,
        context: ctx,
        _unpacked: None,
    })
}

/// Read a Dockerfile; a missing `Dockerfile` may be spelled `dockerfile`
/// (BuildKit accepts both, moby/moby#10858). Messages keep the name asked
/// for, as BuildKit's do.
fn read_dockerfile(path: &Path) -> Result<String> {
    let first = fs::read_to_string(path);
    let err = match first {
        Ok(text) => return Ok(text),
        Err(e) => e,
    };
    if err.kind() == std::io::ErrorKind::NotFound
        && path.file_name() == Some(std::ffi::OsStr::new("Dockerfile"))
    {
        if let Ok(text) = fs::read_to_string(path.with_file_name("dockerfile")) {
            return Ok(text);
        }
    }
    Err(anyhow::anyhow!(
        "failed to read dockerfile: open {}: {}",
        path.display(),
        io_text(&err)
    ))
}

fn display_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into())
}

fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// `--build-arg K=V` or `--build-arg K` (taken from the environment if
/// set). A name that is not a variable name (`V:x`, `=x`, `A B=1`) is an
/// error: it could never reach an `ARG`, so it would be dropped silently.
pub fn parse_build_args(args: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in args {
        let (k, v) = match a.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (a.as_str(), std::env::var(a).ok()),
        };
        let valid = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            bail!("invalid --build-arg {a:?}: expected NAME=VALUE or NAME, where NAME is a variable name");
        }
        if let Some(v) = v {
            out.insert(k.to_string(), v);
        }
    }
    Ok(out)
}

/// Whether a build arg is set to a true value (Go's `strconv.ParseBool`).
fn build_arg_true(args: &BTreeMap<String, String>, name: &str) -> Result<bool> {
    match args.get(name).map(String::as_str) {
        None | Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some(v) => bail!("invalid --build-arg {name}={v:?}: expected true or false"),
    }
}

/// The `--cache-to` specs of a build: those given, and `type=inline` when
/// the build arg `BUILDKIT_INLINE_CACHE` is true (BuildKit's older
/// spelling of `--cache-to type=inline`).
fn cache_to_specs(args: &BuildArgs) -> Result<Vec<String>> {
    let mut specs = args.cache_to.clone();
    let build_args = parse_build_args(&args.build_args)?;
    if build_arg_true(&build_args, "BUILDKIT_INLINE_CACHE")?
        && !specs.iter().any(|s| {
            crate::cache::parse_to(s)
                .is_ok_and(|c| c.location == crate::cache::CacheLocation::Inline)
        })
    {
        specs.push("type=inline".to_string());
    }
    Ok(specs)
}

/// The keys each cache spec honours; any other key, or a field that is
/// not `key=value`, is refused rather than ignored.
fn check_cache_spec(flag: &str, spec: &str) -> Result<()> {
    const FROM: &[&str] = &["type", "ref", "src", "tag"];
    const TO: &[&str] = &[
        "type",
        "ref",
        "dest",
        "tag",
        "mode",
        "cache-mounts",
        "ignore-error",
    ];
    let known = if flag == "--cache-from" { FROM } else { TO };
    if flag == "--cache-from" && !spec.contains('=') {
        return Ok(());
    }
    for field in spec.split(',') {
        let Some((k, _)) = field.split_once('=') else {
            bail!("invalid {flag} {spec:?}: field {field:?} is not key=value");
        };
        let k = k.trim();
        if !known.contains(&k) {
            bail!(
                "invalid {flag} {spec:?}: rbuild does not support the key {k:?} (known keys: {})",
                known.join(", ")
            );
        }
    }
    Ok(())
}

/// The entitlements `--allow` may grant.
const ENTITLEMENTS: &[&str] = &["network.host", "security.insecure"];

/// `SOURCE_DATE_EPOCH`: the build arg if given (as BuildKit reads it),
/// else the environment variable (as buildx passes it on). A value that
/// is not a whole number of seconds is an error, not a build without it.
fn source_date_epoch(args: &BuildArgs) -> Result<Option<i64>> {
    let build_args = parse_build_args(&args.build_args)?;
    let (what, value) = match build_args.get("SOURCE_DATE_EPOCH") {
        Some(v) => ("--build-arg SOURCE_DATE_EPOCH", v.clone()),
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) => ("SOURCE_DATE_EPOCH", v),
            Err(_) => return Ok(None),
        },
    };
    if value.is_empty() {
        return Ok(None);
    }
    value.parse::<i64>().map(Some).map_err(|_| {
        anyhow::anyhow!("invalid {what}={value:?}: expected seconds since the Unix epoch")
    })
}

fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.is_empty() {
            bail!("invalid --label {l:?}: expected KEY=VALUE");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

struct Env {
    root: PathBuf,
    rt: Arc<tokio::runtime::Runtime>,
    store: rbuild_cache::ContentStore,
    client: Arc<rbuild_registry::Client>,
}

fn open_env(cli: &Cli) -> Result<Env> {
    let root = cli.root.clone().unwrap_or_else(state::default_root);
    state::init_layout(&root)?;
    let store = rbuild_cache::ContentStore::open(&root).context("open the content store")?;
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("start the async runtime")?,
    );
    let config = rbuild_registry::RegistryConfig::load(cli.config.as_deref())
        .context("load registry configuration")?;
    let client =
        Arc::new(rbuild_registry::Client::new(config).context("create the registry client")?);
    Ok(Env {
        root,
        rt,
        store,
        client,
    })
}

fn frontend_options(
    name: &str,
    target: Option<String>,
    build_args: BTreeMap<String, String>,
    platform: Option<&str>,
    labels: BTreeMap<String, String>,
) -> Result<rbuild_frontend::BuildOptions> {
    frontend_options_full(
        name,
        target,
        build_args,
        platform,
        labels,
        BTreeMap::new(),
        Vec::new(),
    )
}

fn frontend_options_full(
    name: &str,
    target: Option<String>,
    build_args: BTreeMap<String, String>,
    platform: Option<&str>,
    labels: BTreeMap<String, String>,
    named_contexts: BTreeMap<String, String>,
    no_cache_filter: Vec<String>,
) -> Result<rbuild_frontend::BuildOptions> {
    let target_platform = match platform {
        Some(p) => parse_target_platform(p)?,
        None => Platform::host(),
    };
    Ok(rbuild_frontend::BuildOptions {
        dockerfile_name: name.to_string(),
        target,
        build_args,
        target_platform,
        build_platform: Platform::host(),
        labels,
        context_name: "context".to_string(),
        named_contexts,
        no_cache_filter,
        all_stages: false,
        extra_hosts: Vec::new(),
        ignored: None,
    })
}

/// `--platform`: one platform, normalized as containerd does (`arm64` is
/// `linux/arm64`, `linux/arm64/v8` is `linux/arm64`). A list is refused:
/// rbuild builds one image, and taking the list for one platform would
/// build for a platform nobody asked for.
pub(crate) fn parse_target_platform(p: &str) -> Result<Platform> {
    if p.contains(',') {
        bail!(
            "--platform {p}: multi-platform builds are not supported yet; build each platform separately"
        );
    }
    Platform::parse(p.trim())
        .with_context(|| format!("invalid --platform {p:?}: expected os/arch[/variant]"))
}

/// `--add-host` values as buildx reads them: `host:ip` or `host=ip`, the
/// host lowercased (as BuildKit stores it), an IPv6 address optionally in
/// brackets.
pub(crate) fn parse_add_hosts(values: &[String]) -> Result<Vec<(String, String)>> {
    values
        .iter()
        .map(|v| {
            let (host, ip) = v
                .split_once('=')
                .or_else(|| v.split_once(':'))
                .filter(|(h, i)| !h.is_empty() && !i.is_empty())
                .with_context(|| format!("invalid --add-host {v:?}: expected HOST:IP"))?;
            if ip == "host-gateway" {
                bail!("invalid --add-host {v:?}: host-gateway needs a daemon that knows its gateway; give the address");
            }
            let ip = ip
                .strip_prefix('[')
                .and_then(|i| i.strip_suffix(']'))
                .unwrap_or(ip);
            let addr: std::net::IpAddr = ip
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid --add-host {v:?}: {ip:?} is not an IP address"))?;
            Ok((host.to_lowercase(), addr.to_string()))
        })
        .collect()
}

/// `rbuild debug …`.
pub fn debug(cli: &Cli, cmd: &DebugCommand) -> Result<()> {
    match cmd {
        DebugCommand::DumpAst { file } => {
            let text = if file == Path::new("-") {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                s
            } else {
                fs::read_to_string(file).map_err(|e| {
                    anyhow::anyhow!(
                        "failed to read dockerfile: open {}: {}",
                        file.display(),
                        io_text(&e)
                    )
                })?
            };
            let dump = rbuild_frontend::dump_ast(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
            print!("{dump}");
            Ok(())
        }
        DebugCommand::Graph(g) => {
            let input = read_input(&g.context.to_string_lossy(), g.file.as_deref())?;
            let env = open_env(cli)?;
            let resolver = Resolver {
                rt: env.rt.clone(),
                client: env.client.clone(),
                store: env.store.clone(),
                refs_dir: env.root.join("refs"),
                policy: PullPolicy::Missing,
            };
            let opts = frontend_options(
                &input.dockerfile_name,
                g.target.clone(),
                parse_build_args(&g.build_args)?,
                None,
                BTreeMap::new(),
            )?;
            let lowered = rbuild_frontend::build(&input.dockerfile, &opts, &resolver)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if g.format == "dot" {
                print!("{}", rbuild_frontend::graph_to_dot(&lowered));
            } else {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rbuild_frontend::graph_to_json(&lowered))?
                );
            }
            Ok(())
        }
    }
}

/// Render a solver error BuildKit-style: the step, its last output lines,
/// the Dockerfile lines around it, and the error.
fn render_solve_error(
    err: &rbuild_solver::Error,
    graph: &BuildGraph,
    dockerfile: &str,
) -> anyhow::Error {
    let mut text = String::new();
    if let Some(v) = err.vertex() {
        let meta = graph.meta.get(v).cloned().unwrap_or_default();
        if let rbuild_solver::Error::RunFailed { output, .. } = err {
            text.push_str("------\n");
            text.push_str(&format!(" > {}:\n", meta.name));
            for l in output {
                text.push_str(&format!("{l}\n"));
            }
            text.push_str("------\n");
        }
        if let Some(loc) = &meta.location {
            text.push_str(&format!("{}:{}\n", loc.file, loc.line));
            text.push_str("--------------------\n");
            let lines: Vec<&str> = dockerfile.lines().collect();
            let first = loc.line.saturating_sub(2).max(1);
            let last = (loc.end_line.max(loc.line) + 2).min(lines.len() as u32);
            for n in first..=last {
                let marker = if n >= loc.line && n <= loc.end_line.max(loc.line) {
                    ">>>"
                } else {
                    "   "
                };
                let l = lines.get(n as usize - 1).copied().unwrap_or("");
                text.push_str(&format!(" {n:>3} | {marker} {l}\n"));
            }
            text.push_str("--------------------\n");
        }
    }
    anyhow::Error::new(crate::Rendered {
        block: text,
        summary: format!("failed to solve: {err}"),
    })
}

/// BuildKit's limit on one secret's size.
const MAX_SECRET_SIZE: u64 = 500 * 1024;

/// `--secret` as buildx reads it: `id=ID` with `src=PATH` (or `source=`),
/// `env=VAR`, or `type=env|file` (`type=env,src=VAR` names a variable);
/// with neither a source nor a variable, the variable named ID if it is
/// set, else the file named ID.
pub(crate) fn parse_secrets(specs: &[String]) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (mut id, mut typ, mut src, mut env) = (None, None, None::<String>, None::<String>);
        for field in spec.split(',') {
            let (k, v) = field.split_once('=').unwrap_or((field, ""));
            match k.trim().to_lowercase().as_str() {
                "id" => id = Some(v.to_string()),
                "type" if v == "env" || v == "file" => typ = Some(v.to_string()),
                "type" => bail!("invalid --secret {spec:?}: unsupported secret type {v:?}"),
                "src" | "source" => src = Some(v.to_string()),
                "env" => env = Some(v.to_string()),
                _ => bail!("invalid --secret {spec:?}: unexpected key {k:?} in {field:?}"),
            }
        }
        let id = id
            .filter(|i| !i.is_empty())
            .with_context(|| format!("invalid --secret {spec:?}: id= is required"))?;
        if typ.as_deref() == Some("env") && env.is_none() {
            env = src.take();
        }
        // An explicit variable wins; then a file; then the ID decides.
        let from_env = match (env, src) {
            (Some(var), _) => Ok(var),
            (None, Some(path)) => Err(path),
            (None, None) if std::env::var_os(&id).is_some() => Ok(id.clone()),
            (None, None) => Err(id.clone()),
        };
        let value = match from_env {
            Ok(var) => std::env::var(&var)
                .with_context(|| format!("--secret {id}: environment variable {var} is not set"))?
                .into_bytes(),
            Err(path) => {
                let meta = fs::metadata(&path)
                    .with_context(|| format!("--secret {id}: failed to stat {path}"))?;
                if meta.len() > MAX_SECRET_SIZE {
                    bail!("--secret {id}: secret too big, max size 500KB");
                }
                fs::read(&path).with_context(|| format!("--secret {id}: read {path}"))?
            }
        };
        out.insert(id, value);
    }
    Ok(out)
}

/// `--ssh default` (the agent at $SSH_AUTH_SOCK) or `--ssh ID=PATH`.
fn parse_ssh(specs: &[String]) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (id, path) = match spec.split_once('=') {
            Some((id, p)) => (id.to_string(), PathBuf::from(p)),
            None => {
                let sock = std::env::var_os("SSH_AUTH_SOCK")
                    .with_context(|| format!("--ssh {spec}: SSH_AUTH_SOCK is not set"))?;
                (spec.clone(), PathBuf::from(sock))
            }
        };
        out.insert(id, path);
    }
    Ok(out)
}

/// `RUN --security=insecure` needs `--allow security.insecure`, and
/// `RUN --network=host` needs `--allow network.host`, as in BuildKit.
fn check_entitlements(graph: &BuildGraph, allow: &[String]) -> Result<()> {
    for (d, v) in &graph.vertices {
        if let rbuild_graph::Op::Exec(e) = &v.op {
            let at = graph
                .meta
                .get(d)
                .and_then(|m| m.location.as_ref())
                .map(|l| format!("{}:{}: ", l.file, l.line))
                .unwrap_or_default();
            if e.security == rbuild_graph::SecurityMode::Insecure
                && !allow.iter().any(|a| a == "security.insecure")
            {
                bail!("{at}RUN --security=insecure: entitlement security.insecure is not allowed (pass --allow security.insecure)");
            }
            if e.network == rbuild_graph::NetworkMode::Host
                && !allow.iter().any(|a| a == "network.host")
            {
                bail!("{at}RUN --network=host: entitlement network.host is not allowed (pass --allow network.host)");
            }
        }
    }
    Ok(())
}

/// The context directory with its `.dockerignore` (or
/// `<Dockerfile>.dockerignore` next to the Dockerfile, which wins).
fn load_context(dir: &Path, dockerfile: Option<&Path>) -> Result<rbuild_solver::ops::LocalContext> {
    let path = fs::canonicalize(dir).with_context(|| format!("context {}", dir.display()))?;
    let mut candidates = Vec::new();
    if let Some(f) = dockerfile.filter(|f| *f != Path::new("-")) {
        let f = if f.is_absolute() || f.exists() {
            f.to_path_buf()
        } else {
            path.join(f)
        };
        let mut name = f.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".dockerignore");
        candidates.push(f.with_file_name(name));
    }
    candidates.push(path.join(".dockerignore"));
    let mut patterns = Vec::new();
    for c in candidates {
        if let Ok(text) = fs::read_to_string(&c) {
            patterns = rbuild_solver::ignore::parse_dockerignore(&text);
            break;
        }
    }
    let ignore =
        rbuild_solver::ignore::Matcher::new(&patterns).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(rbuild_solver::ops::LocalContext { path, ignore })
}

/// The context's `.dockerignore` for the `CopyIgnoredFile` check. None
/// without patterns, and (as BuildKit) when a pattern re-includes with `!`:
/// a file below an excluded directory may then still be sent.
fn ignored_paths(
    context: &Arc<rbuild_solver::ops::LocalContext>,
) -> Option<rbuild_frontend::IgnoredPaths> {
    if context.ignore.is_empty() || context.ignore.has_exclusions() {
        return None;
    }
    let context = Arc::clone(context);
    Some(rbuild_frontend::IgnoredPaths(Arc::new(
        move |path: &str| context.ignore.excludes(path),
    )))
}

/// Refuse malformed image names before building, with docker's messages:
/// `-t` tags and `--build-context NAME=docker-image://REF` (cache refs are
/// checked where cache specs are parsed).
fn check_names(args: &BuildArgs) -> Result<()> {
    for t in &args.tags {
        rbuild_registry::parse_normalized(t)
            .map_err(|e| anyhow::anyhow!("invalid tag {t:?}: {e}"))?;
    }
    for c in &args.build_contexts {
        let image = c
            .split_once('=')
            .and_then(|(_, v)| v.strip_prefix("docker-image://"));
        if let Some(r) = image {
            rbuild_registry::parse_normalized(r)
                .map_err(|e| anyhow::anyhow!("invalid --build-context {c:?}: {e}"))?;
        }
    }
    Ok(())
}

/// `rbuild build`.
pub fn run(cli: &Cli, args: &BuildArgs) -> Result<()> {
    let mode = {
        use std::io::IsTerminal;
        Mode::parse(&args.progress, args.quiet, std::io::stderr().is_terminal())
            .map_err(anyhow::Error::msg)?
    };
    let policy = PullPolicy::parse(&args.pull)?;
    check_names(args)?;
    let (input, commit_time) = remote::read_build_input(args)?;
    let with_epoch = remote::with_context_epoch(args, commit_time);
    let args = with_epoch.as_ref().unwrap_or(args);

    // Outputs: explicit ones, --push, or rbuild's own image store.
    let mut outputs: Vec<OutputSpec> = Vec::new();
    for o in &args.outputs {
        outputs.push(
            rbuild_export::parse_output_spec(o)
                .map_err(|e| anyhow::anyhow!("invalid --output {o:?}: {e}"))?,
        );
    }
    let tags: Vec<String> = args.tags.iter().map(|t| state::normalize_tag(t)).collect();
    for (flag, kind) in [(args.load, "image"), (args.push, "registry")] {
        if !flag {
            continue;
        }
        if tags.is_empty() {
            bail!(
                "--{} needs a name: add -t NAME",
                if kind == "image" { "load" } else { "push" }
            );
        }
        for t in &tags {
            outputs.push(
                rbuild_export::parse_output_spec(&format!("type={kind},name={t}"))
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            );
        }
    }

    let cache_from = args
        .cache_from
        .iter()
        .map(|c| crate::cache::parse_from(c))
        .collect::<Result<Vec<_>>>()?;
    for c in &args.cache_from {
        check_cache_spec("--cache-from", c)?;
    }
    for c in &args.cache_to {
        check_cache_spec("--cache-to", c)?;
    }
    for c in cache_to_specs(args)? {
        crate::cache::parse_to(&c)?;
    }
    layer_compression(&outputs)?;
    for a in &args.allow {
        if !ENTITLEMENTS.contains(&a.as_str()) {
            bail!(
                "invalid --allow {a:?}: expected {}",
                ENTITLEMENTS.join(" or ")
            );
        }
    }
    source_date_epoch(args)?;

    let env = open_env(cli)?;
    // Everything this build writes or reuses is leased from here on.
    let lease = crate::admin::start_build(&env.root, &env.store)?;
    let resolver = Resolver {
        rt: env.rt.clone(),
        client: env.client.clone(),
        store: env.store.clone(),
        refs_dir: env.root.join("refs"),
        policy,
    };
    let mut named = BTreeMap::new();
    for c in &args.build_contexts {
        let (k, v) = c.split_once('=').with_context(|| {
            format!("invalid --build-context {c:?}: expected NAME=PATH, NAME=docker-image://REF or NAME=GIT-URL")
        })?;
        named.insert(k.to_string(), v.to_string());
    }
    let no_cache_filter = if args.no_cache {
        Vec::new()
    } else {
        args.no_cache_filter.clone()
    };
    let mut opts = frontend_options_full(
        &input.dockerfile_name,
        args.target.clone(),
        parse_build_args(&args.build_args)?,
        args.platform.as_deref(),
        parse_labels(&args.labels)?,
        named.clone(),
        no_cache_filter,
    )?;
    // Like `docker build --check`: without --target, check every stage.
    opts.all_stages = args.check && args.target.is_none();
    opts.extra_hosts = parse_add_hosts(&args.add_hosts)?;
    let main_context = match &input.context {
        Some(c) => Some(Arc::new(load_context(c, args.file.as_deref())?)),
        None => None,
    };
    opts.ignored = main_context.as_ref().and_then(ignored_paths);
    let mut renderer = Renderer::new(mode);
    let lowered = match rbuild_frontend::build(&input.dockerfile, &opts, &resolver) {
        Ok(l) => l,
        Err(e) => {
            if args.check {
                checks::print_report(&e.checks, &input.dockerfile_name, &input.dockerfile);
            } else {
                for c in &e.checks {
                    renderer.line(&format!("WARNING: {c}"));
                }
            }
            bail!("{e}");
        }
    };
    if args.check {
        checks::print_report(&lowered.checks, &input.dockerfile_name, &input.dockerfile);
        if !lowered.checks.is_empty() {
            bail!("build checks found {}", checks::count(lowered.checks.len()));
        }
        return Ok(());
    }
    check_entitlements(&lowered.graph, &args.allow)?;
    renderer.set_total(reported_steps(&lowered.graph, &lowered.root));
    for w in &lowered.warnings {
        renderer.line(&format!("WARNING: {w}"));
    }
    let remote = {
        let platform = opts.target_platform.clone();
        let mut warnings = Vec::new();
        let r = crate::cache::import(&env.rt, &env.client, &platform, &cache_from, &mut |w| {
            warnings.push(w)
        });
        for w in warnings {
            // A cache that cannot be read never fails the build.
            eprintln!("WARNING: {w}");
        }
        r
    };
    for c in &lowered.checks {
        renderer.line(&format!("WARNING: {c}"));
    }

    let runtime = match args.runtime.as_deref() {
        None | Some("embedded") => rbuild_exec::Runtime::Embedded,
        Some("runc") => rbuild_exec::Runtime::External(PathBuf::from("runc")),
        Some("crun") => rbuild_exec::Runtime::External(PathBuf::from("crun")),
        Some(p) => rbuild_exec::Runtime::External(PathBuf::from(p)),
    };
    let executor = rbuild_exec::Executor::new(runtime, env.root.join("exec"))
        .context("set up the RUN sandbox")?;
    let mut contexts = BTreeMap::new();
    if let Some(c) = main_context {
        contexts.insert("context".to_string(), c);
    }
    for (k, v) in &named {
        let dir = Path::new(v);
        if !v.contains("://") && dir.is_dir() {
            contexts.insert(format!("context:{k}"), Arc::new(load_context(dir, None)?));
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = rbuild_exec::CancelToken::new();
    let ops = Arc::new(Ops {
        store: env.store.clone(),
        snaps: rbuild_solver::snap::Snaps::open(&env.root)
            .context("open the snapshotter")?
            .with_lease(lease.clone()),
        index: rbuild_solver::index::CacheIndex::open(&env.root.join("index"))
            .context("open the cache index")?,
        registry: env.client.clone(),
        executor: Arc::new(executor),
        contexts,
        secrets: parse_secrets(&args.secrets)?,
        ssh: parse_ssh(&args.ssh)?,
        network: match args.network.as_str() {
            "none" => rbuild_exec::Network::None,
            _ => rbuild_exec::Network::Host,
        },
        shm_size: args.shm_size,
        ulimits: args.ulimits.clone(),
        cancel: cancel.clone(),
        lease: Some(lease.clone()),
        cache_mounts: env.root.join("cache-mounts"),
        tmp: env.root.join("tmp"),
        no_cache: args.no_cache,
        events: tx,
        hasher: Arc::new(rbuild_solver::checksum::ContextHasher::load(
            &env.root.join("index/file-digests"),
        )),
        emptied_cache_mounts: Default::default(),
        remote,
        locks: env.root.join("locks"),
        state: Default::default(),
    });
    fs::create_dir_all(env.root.join("tmp"))?;
    let graph = Arc::new(lowered.graph.clone());
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });

    // Ctrl-C or SIGTERM cancels the running steps; the solve then ends and
    // everything it mounted is released before rbuild exits. The signal
    // streams live for the whole build: a signal that arrives while the loop
    // handles an event is kept, not lost.
    let mut interrupted: Option<crate::Interrupted> = None;
    let result = env.rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigint = signal(SignalKind::interrupt()).context("handle SIGINT")?;
        let mut sigterm = signal(SignalKind::terminate()).context("handle SIGTERM")?;
        let solve =
            rbuild_solver::scheduler::solve(graph.clone(), &lowered.root, ops.clone(), jobs);
        tokio::pin!(solve);
        let result = loop {
            tokio::select! {
                r = &mut solve => {
                    while let Ok(ev) = rx.try_recv() { renderer.event(&ev); }
                    break r;
                }
                Some(ev) = rx.recv() => renderer.event(&ev),
                Some(()) = sigint.recv(), if interrupted.is_none() => {
                    interrupted = Some(crate::Interrupted::Sigint);
                    cancel.cancel();
                    eprintln!("interrupted: cancelling the build");
                }
                Some(()) = sigterm.recv(), if interrupted.is_none() => {
                    interrupted = Some(crate::Interrupted::Sigterm);
                    cancel.cancel();
                    eprintln!("terminated: cancelling the build");
                }
            }
        };
        // Past the solve nothing runs in a sandbox: exporting only writes
        // blobs under temporary names, so a signal now ends rbuild at once.
        if interrupted.is_none() {
            tokio::spawn(async move {
                let why = tokio::select! {
                    _ = sigint.recv() => crate::Interrupted::Sigint,
                    _ = sigterm.recv() => crate::Interrupted::Sigterm,
                };
                eprintln!("ERROR: {why}");
                std::process::exit(why.exit_code().into());
            });
        }
        anyhow::Ok(result)
    })?;
    if let Some(why) = interrupted {
        let _ = lease.release();
        return Err(why.into());
    }
    let top = match result {
        Ok(r) => r,
        Err(rbuild_solver::scheduler::SolveError::Vertex { error, .. }) => {
            return Err(render_solve_error(&error, &graph, &input.dockerfile));
        }
        Err(e) => bail!("failed to solve: {e}"),
    };
    let top = match top.value {
        ResultValue::Snapshot(s) => s,
        ResultValue::Local(_) => {
            bail!("the build result is a local directory, not a root filesystem")
        }
    };

    let _ = ops
        .hasher
        .save(&env.root.join("index/file-digests"), 2_000_000);
    let result = export(
        &env,
        &ops,
        top.as_deref(),
        &lowered,
        &outputs,
        &tags,
        args,
        &mut renderer,
    );
    let _ = lease.release();
    result
}

/// How layers are compressed: `compression=` and `compression-level=` of
/// the outputs that set either (gzip at its default level if none does).
/// One build makes one set of layers, so outputs that ask for different
/// compressions, or disagree on `force-compression`, are refused rather
/// than all given the first one's. Levels were range-checked when the
/// output was parsed.
fn layer_compression(outputs: &[OutputSpec]) -> Result<rbuild_cache::CompressOptions> {
    use rbuild_export::Compression as C;
    let setting: Vec<&OutputSpec> = outputs
        .iter()
        .filter(|o| o.compression.is_some() || o.compression_level.is_some())
        .collect();
    let chosen = setting.first().copied();
    let describe = |o: &OutputSpec| {
        format!(
            "type={} compression={:?} compression-level={:?}",
            o.kind.name(),
            o.compression,
            o.compression_level
        )
    };
    if let Some(other) = setting.iter().find(|o| {
        chosen.is_some_and(|c| {
            (c.compression, c.compression_level) != (o.compression, o.compression_level)
        })
    }) {
        bail!(
            "outputs ask for different layer compressions ({} and {}): rbuild makes one set of layers per build; build once per compression",
            chosen.map(describe).unwrap_or_default(),
            describe(other)
        );
    }
    let images: Vec<&OutputSpec> = outputs.iter().filter(|o| o.kind.is_image()).collect();
    if images.iter().any(|o| o.force_compression) && images.iter().any(|o| !o.force_compression) {
        bail!("force-compression=true is set on some image outputs and not on others: rbuild makes one set of layers per build; set it on every image output or none");
    }
    let compression = match chosen.and_then(|o| o.compression) {
        None | Some(C::Gzip) => rbuild_cache::Compression::Gzip,
        Some(C::Zstd) => rbuild_cache::Compression::Zstd,
        Some(C::Uncompressed) => rbuild_cache::Compression::Uncompressed,
        Some(C::Estargz) => {
            bail!("compression=estargz is not supported; use gzip, zstd or uncompressed")
        }
    };
    Ok(rbuild_cache::CompressOptions::new(compression)
        .with_level(chosen.and_then(|o| o.compression_level))?)
}

#[allow(clippy::too_many_arguments)]
fn export(
    env: &Env,
    ops: &Ops,
    top: Option<&str>,
    lowered: &rbuild_frontend::LoweredBuild,
    outputs: &[OutputSpec],
    tags: &[String],
    args: &BuildArgs,
    renderer: &mut Renderer,
) -> Result<()> {
    // Lazily imported layers are fetched through the async registry client.
    let _rt = env.rt.enter();
    renderer.begin_export();
    let epoch = source_date_epoch(args)?;
    let compression = layer_compression(outputs)?;
    let records = ops
        .layers(
            top,
            &compression,
            epoch,
            outputs.iter().any(|o| o.force_compression),
        )
        .context("export layers")?;
    let cache_to = cache_to_specs(args)?
        .iter()
        .map(|c| crate::cache::parse_to(c))
        .collect::<Result<Vec<_>>>()?;
    let mut extra_config = BTreeMap::new();
    if cache_to
        .iter()
        .any(|c| c.location == crate::cache::CacheLocation::Inline)
    {
        extra_config.insert(
            rbuild_solver::remote::INLINE_CACHE_KEY.to_string(),
            crate::cache::inline_records(ops, top, &records, &compression, epoch)?,
        );
    }
    // As BuildKit: an entry that added a layer is dated by when that
    // step's result was made (kept in its cache record, so a cached step
    // keeps its date), the others by their neighbours, and the image by
    // its last entry; SOURCE_DATE_EPOCH, when set, overrides all of them
    // at assembly.
    let times = ops.layer_times(top).context("export layers")?;
    let (mut config, layers) = normalize_history(lowered.config.clone(), records, &times);
    date_history(&mut config);
    // One output's image: its media types and its annotations (parsing
    // refused the annotations an output cannot hold).
    let assemble = |o: Option<&OutputSpec>| {
        rbuild_export::assemble_image(
            &env.store,
            &config,
            &layers,
            &rbuild_export::AssembleOptions {
                oci_mediatypes: o.is_none_or(|o| o.oci_mediatypes()),
                source_date_epoch: epoch,
                annotations: o.map(|o| o.annotations.clone()).unwrap_or_default(),
                manifest_descriptor_annotations: o
                    .map(|o| o.manifest_descriptor_annotations.clone())
                    .unwrap_or_default(),
                index_annotations: o.map(|o| o.index_annotations.clone()).unwrap_or_default(),
                extra_config: extra_config.clone(),
                allow_remote_layers: true,
            },
        )
        .context("assemble the image")
    };
    let image = assemble(None)?;
    // What --metadata-file describes: the first image output's manifest.
    let mut described: Option<rbuild_export::AssembledImage> = None;
    let image_id = image.config.digest.clone();
    renderer.result(&format!("writing image {image_id}"));

    // Only a push can do without the bytes of lazily imported layers.
    if outputs.is_empty() || outputs.iter().any(|o| !o.push) {
        ops.fetch_blobs(&image.layers).context("fetch layers")?;
    }
    if outputs.is_empty() {
        state::tag_image(&env.root, &image.manifest, tags)?;
        for t in tags {
            renderer.result(&format!("naming to {t}"));
        }
        renderer.finish();
        if !args.quiet {
            if let Some(t) = tags.first() {
                eprintln!(
                    "image {t} is in rbuild's store {root} (an OCI layout)\n  run it:    podman run --rm oci:{root}:{t}\n  save it:   rbuild build -t {t} -o type=oci,dest=image.tar <context>",
                    root = env.root.display()
                );
            } else {
                eprintln!("image {image_id} built (no -t given, so it was not named)");
            }
        }
    }
    for o in outputs {
        let names: Vec<String> = if o.names.is_empty() {
            tags.to_vec()
        } else {
            o.names.clone()
        };
        let image = if o.oci_mediatypes() && !o.has_annotations() {
            image.clone()
        } else {
            assemble(Some(o))?
        };
        if o.kind.is_image() && described.is_none() {
            described = Some(image.clone());
        }
        if o.push {
            if names.is_empty() {
                bail!("--push needs a name: add -t NAME or --output type=registry,name=NAME");
            }
            for n in &names {
                let r = rbuild_registry::Reference::parse(n)
                    .with_context(|| format!("invalid image name {n:?}"))?;
                let mut blobs = vec![image.config.clone()];
                blobs.extend(image.layers.iter().cloned());
                let mut mount_from = mount_hints(&env.store, &lowered.graph, &r);
                mount_from.extend(crate::cache::prepare_push(ops, &r, &image.layers)?);
                let options = rbuild_registry::PushOptions { mount_from };
                let d = env
                    .rt
                    .block_on(env.client.push_image_with(
                        &r,
                        &env.store,
                        &image.manifest_json,
                        &image.manifest.media_type,
                        &blobs,
                        &options,
                    ))
                    .with_context(|| format!("push {r}"))?;
                renderer.result(&format!("pushing {r}@{d}"));
            }
            continue;
        }
        if o.kind == OutputKind::Image {
            state::tag_image(&env.root, &image.manifest, &names)?;
            continue;
        }
        let spec = OutputSpec {
            names: names.clone(),
            ..o.clone()
        };
        let exporter = rbuild_export::exporter_for(&spec).map_err(|e| anyhow::anyhow!("{e}"))?;
        let scratch = env.root.join("tmp");
        exporter
            .export(&rbuild_export::ExportContext {
                store: &env.store,
                image: &image,
                source_date_epoch: epoch,
                scratch_dir: Some(&scratch),
            })
            .with_context(|| format!("export type={}", o.kind.name()))?;
        match &o.dest {
            Some(rbuild_export::Destination::Path(p)) => {
                renderer.result(&format!("exporting to {}", p.display()))
            }
            Some(rbuild_export::Destination::Stdout) | None => {}
        }
    }
    for to in cache_to
        .iter()
        .filter(|c| c.location != crate::cache::CacheLocation::Inline)
    {
        let done = crate::cache::config_for(ops, top, to, &compression, epoch).and_then(|config| {
            crate::cache::export(&env.rt, &env.client, ops, to, &config).map(|()| config)
        });
        let name = crate::cache::describe(&to.location);
        match done {
            Ok(c) => renderer.result(&format!(
                "exporting cache to {name} ({} records)",
                c.records.len()
            )),
            Err(e) if to.ignore_error => {
                eprintln!(
                    "WARNING: cache export to {name} failed: {}",
                    crate::error_text(&e)
                )
            }
            Err(e) => return Err(e.context(format!("export cache to {name}"))),
        }
    }
    renderer.finish();
    if let Some(f) = &args.iidfile {
        fs::write(f, image_id.to_string()).with_context(|| format!("write {}", f.display()))?;
    }
    if let Some(f) = &args.metadata_file {
        let image = described.as_ref().unwrap_or(&image);
        // buildx's keys; `image.name` only when the image was named.
        let mut meta = serde_json::json!({
            "containerimage.config.digest": image_id.to_string(),
            "containerimage.descriptor": {
                "mediaType": image.manifest.media_type,
                "digest": image.manifest.digest.to_string(),
                "size": image.manifest.size,
            },
            "containerimage.digest": image.manifest.digest.to_string(),
        });
        if !tags.is_empty() {
            // Fully qualified, as buildx writes it (docker.io/library/app:latest).
            let full: Vec<String> = tags
                .iter()
                .map(|t| {
                    rbuild_registry::Reference::parse(t)
                        .map(|r| r.to_string())
                        .unwrap_or_else(|_| t.clone())
                })
                .collect();
            meta["image.name"] = serde_json::Value::String(full.join(","));
        }
        fs::write(f, serde_json::to_vec_pretty(&meta)?)
            .with_context(|| format!("write {}", f.display()))?;
    }
    let stdout_taken = outputs
        .iter()
        .any(|o| matches!(o.dest, Some(rbuild_export::Destination::Stdout)));
    if args.quiet {
        // The image ID goes to stdout, as docker's -q does, unless an
        // output (`-o -`) is streaming there.
        if stdout_taken {
            eprintln!("{image_id}");
        } else {
            println!("{image_id}");
        }
    }
    Ok(())
}

/// How many vertices under `root` report progress: every one but the
/// empty and local-directory sources, which run silently.
fn reported_steps(graph: &BuildGraph, root: &rbuild_graph::Digest) -> usize {
    graph
        .topo_order(root)
        .iter()
        .filter_map(|d| graph.get(d))
        .filter(|v| {
            !matches!(
                v.op,
                rbuild_graph::Op::Source(
                    rbuild_graph::SourceOp::Scratch | rbuild_graph::SourceOp::Local(_)
                )
            )
        })
        .count()
}

/// Base-image layers that already live in another repository of the
/// registry we push to: the registry can mount them instead of an upload.
fn mount_hints(
    store: &rbuild_cache::ContentStore,
    graph: &BuildGraph,
    target: &rbuild_registry::Reference,
) -> BTreeMap<rbuild_graph::Digest, String> {
    let mut out = BTreeMap::new();
    for v in graph.vertices.values() {
        let rbuild_graph::Op::Source(rbuild_graph::SourceOp::Image(img)) = &v.op else {
            continue;
        };
        let Ok(r) = rbuild_registry::Reference::parse(&img.reference) else {
            continue;
        };
        if r.registry != target.registry || r.repository == target.repository {
            continue;
        }
        let Some(d) = &r.digest else { continue };
        let Ok(bytes) = store.read_blob(d) else {
            continue;
        };
        let Ok(m) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        for l in m["layers"].as_array().into_iter().flatten() {
            if let Some(ld) = l["digest"].as_str().and_then(|x| x.parse().ok()) {
                out.insert(ld, r.repository.clone());
            }
        }
    }
    out
}

/// Match history entries to layers as BuildKit's exporter does: empty layers
/// are dropped and their history entries marked `empty_layer`; history is
/// padded at the start when a base image has more layers than entries.
/// An entry without a date that is matched to a layer gets the creation
/// time of that layer's result (`times`, parallel to `records`).
fn normalize_history(
    mut config: rbuild_graph::ImageConfig,
    records: Vec<rbuild_solver::index::LayerRecord>,
    times: &[Option<i64>],
) -> (rbuild_graph::ImageConfig, Vec<rbuild_export::Layer>) {
    let non_empty = config.history.iter().filter(|h| !h.empty_layer).count();
    if non_empty < records.len() {
        let pad = records.len() - non_empty;
        let mut h: Vec<_> = (0..pad)
            .map(|_| rbuild_graph::HistoryEntry {
                created: None,
                created_by: None,
                comment: None,
                empty_layer: false,
            })
            .collect();
        h.append(&mut config.history);
        config.history = h;
    } else if non_empty > records.len() {
        // More entries than layers: the oldest entries lost their layers.
        let mut extra = non_empty - records.len();
        for h in config.history.iter_mut() {
            if extra == 0 {
                break;
            }
            if !h.empty_layer {
                h.empty_layer = true;
                extra -= 1;
            }
        }
    }
    let mut layers = Vec::new();
    let mut it = records
        .into_iter()
        .zip(times.iter().copied().chain(std::iter::repeat(None)));
    for h in config.history.iter_mut() {
        if h.empty_layer {
            continue;
        }
        let Some((r, t)) = it.next() else { break };
        if h.created.is_none() {
            h.created = t.map(rbuild_export::format_rfc3339);
        }
        if r.empty {
            h.empty_layer = true;
        } else {
            layers.push(rbuild_export::Layer {
                diff_id: r.diff_id,
                descriptor: r.descriptor,
            });
        }
    }
    (config, layers)
}

/// Date the entries left without a time as BuildKit's exporter does: an
/// entry takes the time of the nearest dated entry before it, except that
/// entries before the first entry this build dated (after undated ones)
/// take that one's time; then the image's `created` is the last entry's.
fn date_history(config: &mut rbuild_graph::ImageConfig) {
    let mut created: Option<String> = None;
    let mut undated_seen = false;
    for h in &config.history {
        match &h.created {
            Some(t) => {
                created = Some(t.clone());
                if undated_seen {
                    break;
                }
            }
            None => undated_seen = true,
        }
    }
    undated_seen = false;
    for h in config.history.iter_mut() {
        match &h.created {
            Some(t) if undated_seen => created = Some(t.clone()),
            Some(_) => {}
            None => {
                undated_seen = true;
                h.created = created.clone();
            }
        }
    }
    if let Some(last) = config.history.iter().rev().find_map(|h| h.created.clone()) {
        config.created = Some(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_dated_by_layer_times_as_buildkit_does() {
        let h = |by: &str, created: Option<&str>, empty: bool| rbuild_graph::HistoryEntry {
            created: created.map(String::from),
            created_by: Some(by.into()),
            comment: None,
            empty_layer: empty,
        };
        let rec = |n: u8| rbuild_solver::index::LayerRecord {
            diff_id: rbuild_graph::Digest::sha256_of(&[n]),
            descriptor: rbuild_cache::Descriptor::new(
                "application/vnd.oci.image.layer.v1.tar+gzip",
                rbuild_graph::Digest::sha256_of(&[n, n]),
                1,
            ),
            empty: false,
        };
        let config = rbuild_graph::ImageConfig {
            history: vec![
                h("base", Some("2020-01-01T00:00:00Z"), false),
                h("ENV a", None, true),
                h("RUN one", None, false),
                h("ENV b", None, true),
                h("RUN two", None, false),
                h("LABEL c", None, true),
            ],
            ..Default::default()
        };
        let (mut config, layers) = normalize_history(
            config,
            vec![rec(0), rec(1), rec(2)],
            &[None, Some(1_000), Some(2_000)],
        );
        assert_eq!(layers.len(), 3);
        date_history(&mut config);
        let dates: Vec<&str> = config
            .history
            .iter()
            .map(|h| h.created.as_deref().unwrap_or("-"))
            .collect();
        let t1 = "1970-01-01T00:16:40Z";
        let t2 = "1970-01-01T00:33:20Z";
        assert_eq!(dates, ["2020-01-01T00:00:00Z", t1, t1, t1, t2, t2]);
        assert_eq!(config.created.as_deref(), Some(t2));
    }

    #[test]
    fn secrets_are_read_the_way_buildx_reads_them() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("tok");
        fs::write(&file, "from-file").expect("write");
        let f = file.display().to_string();
        std::env::set_var("RBUILD_TEST_SECRET_VAR", "from-env");
        let got = parse_secrets(&[
            format!("id=a,src={f}"),
            format!("id=b,source={f}"),
            "id=c,env=RBUILD_TEST_SECRET_VAR".into(),
            "id=d,type=env,src=RBUILD_TEST_SECRET_VAR".into(),
            "id=RBUILD_TEST_SECRET_VAR".into(),
            format!("id={f}"),
        ])
        .expect("parse");
        let text = |k: &str| String::from_utf8(got[k].clone()).expect("utf8");
        assert_eq!(text("a"), "from-file");
        assert_eq!(text("b"), "from-file");
        assert_eq!(text("c"), "from-env");
        assert_eq!(text("d"), "from-env");
        assert_eq!(text("RBUILD_TEST_SECRET_VAR"), "from-env");
        assert_eq!(text(&f), "from-file");

        let err = |spec: &str| format!("{:#}", parse_secrets(&[spec.to_string()]).expect_err(spec));
        assert!(err("src=x").contains("id= is required"));
        assert!(err("id=a,foo=bar").contains("unexpected key \"foo\""));
        assert!(err("id=a,type=ssh").contains("unsupported secret type"));
        assert!(err("id=rbuild-no-such-secret").contains("failed to stat rbuild-no-such-secret"));
    }

    #[test]
    fn stdin_archives_are_told_from_dockerfiles_as_docker_does() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path("Dockerfile").expect("path");
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &b""[..]).expect("append");
        let tar_head = b.into_inner().expect("tar");
        assert_eq!(archive_kind(&tar_head), Some(ArchiveKind::Tar));
        let mut broken = tar_head.clone();
        broken[0] ^= 1;
        assert_eq!(archive_kind(&broken), None, "a bad checksum is no tar");
        assert_eq!(archive_kind(&[0x1f, 0x8b, 8]), Some(ArchiveKind::Gzip));
        assert_eq!(
            archive_kind(&[0x28, 0xb5, 0x2f, 0xfd]),
            Some(ArchiveKind::Zstd)
        );
        assert_eq!(archive_kind(b"BZh91AY"), Some(ArchiveKind::Other("bzip2")));
        assert_eq!(
            archive_kind(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Some(ArchiveKind::Other("xz"))
        );
        // A Dockerfile, short or long, is not an archive.
        assert_eq!(archive_kind(b"FROM scratch\n"), None);
        assert_eq!(
            archive_kind("# ustar\nFROM x\n".repeat(40).as_bytes()),
            None
        );
    }

    #[test]
    fn add_hosts_accept_colon_equals_and_bracketed_ipv6() {
        let got = parse_add_hosts(&[
            "Reg.Local:10.0.0.1".into(),
            "a=192.168.1.1".into(),
            "v6:[fd00::1]".into(),
            "v6b:fd00::2".into(),
        ])
        .expect("parse");
        assert_eq!(
            got,
            [
                ("reg.local".to_string(), "10.0.0.1".to_string()),
                ("a".into(), "192.168.1.1".into()),
                ("v6".into(), "fd00::1".into()),
                ("v6b".into(), "fd00::2".into()),
            ]
        );
        for bad in ["nohost", ":1.2.3.4", "h:", "h:300.1.1.1", "h:host-gateway"] {
            assert!(parse_add_hosts(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
