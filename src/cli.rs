//! Command-line definition (clap). Docker-compatible flags for `build`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// rbuild builds OCI images from Dockerfiles without a daemon.
#[derive(Parser, Debug)]
#[command(
    name = "rbuild",
    version,
    about = "Build OCI images from Dockerfiles, without a daemon",
    long_about = "Build OCI images from Dockerfiles, without a daemon.\n\n\
        `rbuild -t app .` is short for `rbuild build -t app .`.",
    after_help = "Exit codes: 0 success, 1 build failed, 2 invalid command line."
)]
pub struct Cli {
    /// State directory (default /var/lib/rbuild for root, $XDG_DATA_HOME/rbuild otherwise).
    #[arg(long, global = true, env = "RBUILD_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Registry configuration file (default ~/.config/rbuild/config.toml).
    #[arg(long, global = true, env = "RBUILD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log verbosity for diagnostics (error, warn, info, debug, trace).
    #[arg(long, global = true, env = "RBUILD_LOG", default_value = "warn")]
    pub log_level: String,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an image from a Dockerfile.
    Build(Box<BuildArgs>),
    /// Inspect what a Dockerfile lowers to.
    #[command(subcommand)]
    Debug(DebugCommand),
    /// Show the disk space used by blobs and snapshots.
    Du,
    /// Remove build cache.
    Prune(PruneArgs),
    /// Log in to a registry (writes $DOCKER_CONFIG/config.json like docker).
    Login(LoginArgs),
    /// Log out from a registry.
    Logout {
        /// The registry (default docker.io).
        server: Option<String>,
    },
    /// Print a shell completion script.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Options of `rbuild prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all build cache, not only leftovers of interrupted builds
    /// (images tagged in rbuild's store are always kept).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Keep this much (e.g. 10GB, 512MB); implies --all.
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// Only remove what is older than a duration: until=24h.
    #[arg(long, value_name = "until=DURATION")]
    pub filter: Vec<String>,
}

/// Options of `rbuild login`.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The registry (default docker.io).
    pub server: Option<String>,
    /// Username.
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin).
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `rbuild debug …`.
#[derive(Subcommand, Debug)]
pub enum DebugCommand {
    /// Print the lowered build graph with digests.
    Graph(GraphArgs),
    /// Print the parsed Dockerfile in BuildKit's dump format.
    DumpAst {
        /// The Dockerfile (- for stdin).
        file: PathBuf,
    },
}

/// Options of `rbuild debug graph`.
#[derive(Args, Debug)]
pub struct GraphArgs {
    /// Context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// Name of the Dockerfile (default: PATH/Dockerfile).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Target stage.
    #[arg(long)]
    pub target: Option<String>,
    /// Build-time variables (KEY=VALUE, or KEY to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Output format.
    #[arg(long, default_value = "json", value_parser = ["json", "dot"])]
    pub format: String,
}

/// Options of `rbuild build`, named as `docker build` names them.
#[derive(Args, Debug, Clone)]
pub struct BuildArgs {
    /// Context directory, or - to read a Dockerfile from stdin with no context.
    pub context: String,
    /// Name and optionally a tag (name:tag); repeatable.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: PATH/Dockerfile; - for stdin).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Build-time variables (KEY=VALUE, or KEY to take it from the
    /// environment). `BUILDKIT_INLINE_CACHE=1` means `--cache-to
    /// type=inline`, `SOURCE_DATE_EPOCH=S` dates the image, `BUILDKIT_SYNTAX`
    /// is reported and not used (rbuild has its builtin frontend only).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Target stage to build.
    #[arg(long)]
    pub target: Option<String>,
    /// Target platform: one os/arch[/variant] (or an arch or an OS alone),
    /// normalized as containerd does; a comma list is refused (no
    /// multi-platform builds yet).
    #[arg(long)]
    pub platform: Option<String>,
    /// Output destination (type=oci|docker|local|tar|registry,dest=…); repeatable.
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// Shorthand for --output=type=registry.
    #[arg(long)]
    pub push: bool,
    /// Tag the result into rbuild's own image store (what happens anyway
    /// when no --output is given; rbuild has no daemon to load into).
    #[arg(long)]
    pub load: bool,
    /// Do not use the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Set metadata (KEY=VALUE) on the image; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// When to pull base images: always, missing, never (true means always).
    #[arg(long, default_value = "missing", num_args = 0..=1, default_missing_value = "always")]
    pub pull: String,
    /// Progress output: auto (tty on a terminal, else plain), tty, plain, rawjson, quiet.
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// Suppress the build output and print the image ID on success.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write build result metadata (JSON) to this file.
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Number of steps to run at once (default: number of cores; at least 1).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub jobs: Option<usize>,
    /// RUN runtime: embedded (default), runc, crun or a path to an OCI runtime.
    #[arg(long, env = "RBUILD_RUNTIME")]
    pub runtime: Option<String>,
    /// Secret for RUN --mount=type=secret: id=ID,src=PATH or id=ID,env=VAR
    /// (id=ID alone: the variable ID if set, else the file ID).
    #[arg(long = "secret", value_name = "id=ID,src=PATH|env=VAR")]
    pub secrets: Vec<String>,
    /// SSH agent socket for RUN --mount=type=ssh: default or ID=PATH.
    #[arg(long = "ssh", value_name = "default|ID=PATH")]
    pub ssh: Vec<String>,
    /// Network for RUN steps: default, none or host.
    #[arg(long, default_value = "default", value_parser = ["default", "none", "host"])]
    pub network: String,
    /// Size of /dev/shm in RUN steps (bytes, or with a k, m or g suffix).
    #[arg(long = "shm-size", value_name = "SIZE", value_parser = parse_shm_size)]
    pub shm_size: Option<u64>,
    /// Resource limit of RUN steps, as Docker takes it: NAME=SOFT[:HARD]
    /// (e.g. nofile=1024:2048); repeatable.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]", value_parser = parse_ulimit)]
    pub ulimits: Vec<rbuild_exec::Rlimit>,
    /// Add a host-to-IP mapping to /etc/hosts of RUN steps (HOST:IP or
    /// HOST=IP; an IPv6 address may be in brackets).
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_hosts: Vec<String>,
    /// Extra privileges: security.insecure, network.host.
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// Do not use the cache for these stages.
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,
    /// Extra build contexts: name=path, name=docker-image://ref or name=<git url>.
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
    /// Import build cache, tried in order: type=registry,ref=REF |
    /// type=local,src=DIR[,tag=T] | REF. A missing source is a warning.
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// Export build cache: type=registry,ref=REF | type=local,dest=DIR |
    /// type=inline; options mode=max|min (default max), cache-mounts=true,
    /// ignore-error=true.
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,
    /// Run the build checks (BuildKit's Dockerfile lint rules) without
    /// building; exit 1 if any warning is found.
    #[arg(long)]
    pub check: bool,
}

/// Turn docker's habit `rbuild -t app .` into `rbuild build -t app .`: when
/// the first argument is not a subcommand or a top-level flag, insert `build`.
pub fn normalize_args(mut args: Vec<String>) -> Vec<String> {
    const SUBCOMMANDS: &[&str] = &[
        "build",
        "debug",
        "du",
        "prune",
        "login",
        "logout",
        "completion",
        "help",
    ];
    const TOP_FLAGS: &[&str] = &["-h", "--help", "-V", "--version"];
    // Skip global options (with their values) to find the first real word.
    let mut i = 1;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--root" || a == "--config" || a == "--log-level" {
            i += 2;
            continue;
        }
        if a.starts_with("--root=") || a.starts_with("--config=") || a.starts_with("--log-level=") {
            i += 1;
            continue;
        }
        break;
    }
    match args.get(i) {
        Some(a) if SUBCOMMANDS.contains(&a.as_str()) || TOP_FLAGS.contains(&a.as_str()) => {}
        None => {}
        Some(_) => args.insert(i, "build".to_string()),
    }
    args
}

/// `--shm-size`.
fn parse_shm_size(s: &str) -> Result<u64, String> {
    rbuild_exec::parse_size(s)
}

/// `--ulimit`.
fn parse_ulimit(s: &str) -> Result<rbuild_exec::Rlimit, String> {
    rbuild_exec::Rlimit::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn shorthand_inserts_build() {
        assert_eq!(
            normalize_args(v("rbuild -t app .")),
            v("rbuild build -t app .")
        );
        assert_eq!(normalize_args(v("rbuild .")), v("rbuild build ."));
        assert_eq!(
            normalize_args(v("rbuild --root /x -t a .")),
            v("rbuild --root /x build -t a .")
        );
        assert_eq!(normalize_args(v("rbuild build .")), v("rbuild build ."));
        assert_eq!(normalize_args(v("rbuild --help")), v("rbuild --help"));
        assert_eq!(
            normalize_args(v("rbuild debug graph")),
            v("rbuild debug graph")
        );
    }

    #[test]
    fn cli_parses_docker_flags() {
        let cli = Cli::try_parse_from(normalize_args(v(
            "rbuild -t a:1 -t b --build-arg X=1 -f D --target t -o type=oci,dest=x.tar ctx",
        )))
        .expect("parse");
        let Command::Build(b) = cli.command else {
            panic!("not build")
        };
        assert_eq!(b.tags, ["a:1", "b"]);
        assert_eq!(b.build_args, ["X=1"]);
        assert_eq!(b.context, "ctx");
        assert_eq!(b.outputs, ["type=oci,dest=x.tar"]);
    }
}
