//! `rbuild du`, `prune`, `login` and `logout`.

use crate::cli::{Cli, LoginArgs, PruneArgs};
use crate::state;
use anyhow::{bail, Context, Result};
use rbuild_cache::{
    ContentStore, Digest, Kind, LayerCache, Lease, Leases, OverlaySnapshotter, Owner, ProcessLease,
    Snapshotter,
};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.2}{}", UNITS[u])
    }
}

/// Parse a size like `10GB`, `512MB`, `1.5G`, `1024` (bytes).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" | "ki" => 1024.0,
        "mib" | "mi" => 1024.0 * 1024.0,
        "gib" | "gi" => 1024.0 * 1024.0 * 1024.0,
        other => bail!("invalid size {s:?}: unknown unit {other:?}"),
    };
    Ok((n * mult) as u64)
}

/// Parse a Go-style duration (`24h`, `90m`, `1h30m`, `45s`).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let n: f64 = num
            .parse()
            .with_context(|| format!("invalid duration {s:?}"))?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "d" => 86400.0,
            _ => bail!("invalid duration {s:?}"),
        };
        any = true;
    }
    if !num.is_empty() || !any {
        bail!("invalid duration {s:?}: expected e.g. 24h, 90m, 1h30m");
    }
    Ok(Duration::from_secs_f64(total))
}

fn open(cli: &Cli) -> Result<(std::path::PathBuf, ContentStore, OverlaySnapshotter)> {
    let root = cli.root.clone().unwrap_or_else(state::default_root);
    state::init_layout(&root)?;
    let store = ContentStore::open(&root).context("open the content store")?;
    let snaps = OverlaySnapshotter::open(root.join("snapshots")).context("open the snapshotter")?;
    Ok((root, store, snaps))
}

/// `rbuild du`.
pub fn du(cli: &Cli) -> Result<()> {
    let (root, store, snaps) = open(cli)?;
    let u = rbuild_cache::du(&store, Some(&snaps))?;
    let records = std::fs::read_dir(root.join("index/keys"))
        .map(|d| d.count())
        .unwrap_or(0);
    println!("{:<16}{:>10}{:>12}", "TYPE", "COUNT", "SIZE");
    println!("{:<16}{:>10}{:>12}", "blobs", u.blobs, human(u.blob_bytes));
    println!(
        "{:<16}{:>10}{:>12}",
        "snapshots",
        u.snapshots,
        human(u.snapshot_bytes)
    );
    println!("{:<16}{:>10}{:>12}", "cache records", records, "-");
    println!("Total: {}", human(u.blob_bytes + u.snapshot_bytes));
    Ok(())
}

/// Blobs referenced by images tagged in the state dir's `index.json`.
fn image_blobs(root: &Path, store: &ContentStore) -> Result<Vec<Digest>> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json"))?)?;
    let mut out = Vec::new();
    let mut todo: Vec<Digest> = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["digest"].as_str()?.parse().ok())
        .collect();
    while let Some(d) = todo.pop() {
        out.push(d.clone());
        let Ok(bytes) = store.read_blob(&d) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        for k in ["manifests", "layers"] {
            for m in v[k].as_array().into_iter().flatten() {
                if let Some(x) = m["digest"].as_str().and_then(|s| s.parse().ok()) {
                    todo.push(x);
                }
            }
        }
        if let Some(x) = v["config"]["digest"].as_str().and_then(|s| s.parse().ok()) {
            out.push(x);
        }
    }
    Ok(out)
}

/// Start a build on state dir `root`: remove secrets left by builds that
/// died, then take the build's lease, which `store` (and its clones) adds
/// every blob to. The lease protects until it is released or the process
/// ends.
pub fn start_build(root: &Path, store: &ContentStore) -> Result<Arc<ProcessLease>> {
    remove_secret_leftovers(root).context("remove secrets of interrupted builds")?;
    let leases = Leases::open(root.join("leases")).context("open leases")?;
    let lease = ProcessLease::acquire(leases, "build").context("take the build's lease")?;
    store.set_lease(lease.clone());
    Ok(lease)
}

/// Remove what could hold secrets of builds that died: RUN bundles of dead
/// processes (unmounting their in-memory secrets dir), and plaintext secret
/// files older versions wrote under `tmp/<dir>/secret`. Secrets of this
/// version live only in memory (see `rbuild_exec::ExecMount::Secret`).
fn remove_secret_leftovers(root: &Path) -> Result<usize> {
    let mut removed = rbuild_exec::remove_stale_bundles(&root.join("exec"))?;
    if let Ok(rd) = std::fs::read_dir(root.join("tmp")) {
        for e in rd.flatten() {
            let f = e.path().join("secret");
            if f.symlink_metadata().is_ok_and(|m| m.is_file()) && std::fs::remove_file(&f).is_ok() {
                let _ = std::fs::remove_dir(e.path());
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Remove active snapshots and mounts left by builds that died. The caller
/// holds the exclusive GC lock: no live lease changes meanwhile.
fn remove_leftovers(root: &Path, snaps: &OverlaySnapshotter, leases: &Leases) -> Result<usize> {
    let mut removed = 0;
    let held: BTreeSet<String> = leases
        .live()?
        .into_iter()
        .flat_map(|l| l.snapshots)
        .collect();
    for info in snaps.list()? {
        if info.kind == Kind::Committed || held.contains(&info.key) {
            continue;
        }
        // Work keys are `<prefix>-<pid>-…`; spare those of live processes
        // too (a key is leased before it is made, so this only matters for
        // a build of an older version).
        let pid = info
            .key
            .split('-')
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| Owner::of(p).is_some()) {
            continue;
        }
        let mnt = root.join("mnt").join(&info.key);
        let _ = rbuild_cache::unmount(&mnt);
        let _ = std::fs::remove_dir(&mnt);
        snaps.remove(&info.key)?;
        removed += 1;
    }
    // RUN bundles and secrets of dead builds.
    removed += remove_secret_leftovers(root)?;
    // Leases of builds whose process is gone.
    leases.remove_dead()?;
    // Index records whose snapshot is gone.
    let present: BTreeSet<String> = snaps.list()?.into_iter().map(|i| i.key).collect();
    if let Ok(rd) = std::fs::read_dir(root.join("index/keys")) {
        for e in rd.flatten() {
            let Ok(text) = std::fs::read(e.path()) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text) else {
                let _ = std::fs::remove_file(e.path());
                continue;
            };
            if let Some(s) = v["snapshot"].as_str() {
                if !present.contains(s) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    Ok(removed)
}

/// `rbuild prune`. Safe beside running builds on the same state dir: it
/// holds the exclusive GC lock throughout and spares everything a live
/// lease names (see [`rbuild_cache::Leases`]).
pub fn prune(cli: &Cli, args: &PruneArgs) -> Result<()> {
    let (root, store, snaps) = open(cli)?;
    let mut older_than = None;
    for f in &args.filter {
        match f.split_once('=') {
            Some(("until", d)) => older_than = Some(parse_duration(d)?),
            _ => bail!("invalid --filter {f:?}: expected until=DURATION"),
        }
    }
    let keep = args.keep_storage.as_deref().map(parse_size).transpose()?;
    let leases = Leases::open(root.join("leases"))?;
    let _gc = leases.exclusive_lock().context("take the GC lock")?;
    let leftovers = remove_leftovers(&root, &snaps, &leases)?;
    remove_idle_locks(&root.join("locks"));
    let leftovers = leftovers + store.clean_ingest().unwrap_or(0);
    let mut freed = 0;
    let mut removed_snaps = 0;
    let mut removed_blobs = 0;
    if args.all || keep.is_some() {
        // Images tagged in the store are kept, by a lease of this process
        // (written directly: this process holds the GC lock).
        let owner = Owner::current().context("read /proc/self/stat")?;
        let id = format!("prune-{}images", owner.name_prefix());
        leases.put(&Lease {
            id: id.clone(),
            digests: image_blobs(&root, &store)?.into_iter().collect(),
            owner: Some(owner),
            ..Lease::default()
        })?;
        let cache = LayerCache::open(root.join("layer-cache"))?;
        let report = rbuild_cache::prune(
            &store,
            &snaps,
            &leases,
            Some(&cache),
            &rbuild_cache::PruneOptions {
                keep_bytes: keep.unwrap_or(0),
                older_than,
            },
        );
        leases.release(&id).ok();
        let report = report?;
        freed = report.freed;
        removed_snaps = report.snapshots.len();
        removed_blobs = report.blobs.len();
        remove_leftovers(&root, &snaps, &leases)?;
    }
    println!(
        "Removed {} snapshots, {removed_blobs} blobs, {leftovers} leftovers of interrupted builds",
        removed_snaps
    );
    println!("Total reclaimed space: {}", human(freed));
    Ok(())
}

/// Remove the lock files no running build holds. A build that opened one
/// just before it goes at worst repeats a step another build is running;
/// committing the same result twice is safe.
fn remove_idle_locks(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if let Ok(f) = std::fs::File::open(e.path()) {
            if f.try_lock().is_ok() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// `rbuild login`.
pub fn login(cli: &Cli, args: &LoginArgs) -> Result<()> {
    let server = args.server.clone().unwrap_or_else(|| "docker.io".into());
    let user = match &args.username {
        Some(u) => u.clone(),
        None => bail!("--username is required (rbuild does not prompt)"),
    };
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("read the password from stdin")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = &args.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p.clone()
    } else {
        bail!("give the password with --password-stdin (or --password)");
    };
    let config = rbuild_registry::RegistryConfig::load(cli.config.as_deref())
        .context("load registry configuration")?;
    let client = rbuild_registry::Client::new(config).context("create the registry client")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(client.login(&server, &user, &password, true))
        .with_context(|| format!("login to {server}"))?;
    println!("Login Succeeded");
    Ok(())
}

/// `rbuild logout`.
pub fn logout(cli: &Cli, server: Option<&str>) -> Result<()> {
    let server = server.unwrap_or("docker.io");
    let config = rbuild_registry::RegistryConfig::load(cli.config.as_deref())
        .context("load registry configuration")?;
    let client = rbuild_registry::Client::new(config).context("create the registry client")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if rt
        .block_on(client.logout(server))
        .with_context(|| format!("logout from {server}"))?
    {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("10GB").expect("size"), 10_000_000_000);
        assert_eq!(parse_size("512mb").expect("size"), 512_000_000);
        assert_eq!(parse_size("1KiB").expect("size"), 1024);
        assert!(parse_size("ten").is_err());
        assert_eq!(
            parse_duration("24h").expect("dur"),
            Duration::from_secs(86400)
        );
        assert_eq!(
            parse_duration("1h30m").expect("dur"),
            Duration::from_secs(5400)
        );
        assert!(parse_duration("soon").is_err());
        assert_eq!(human(1500), "1.50kB");
    }
}
