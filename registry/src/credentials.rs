//! Docker's `config.json`: `auths` (base64 `user:password`), `credsStore`
//! and `credHelpers` through `docker-credential-<name>` executables
//! (`get`/`store`/`erase`, server URL or JSON on stdin, JSON out).

use crate::config::Credential;
use crate::reference::{normalize_registry, DOCKER_HUB};
use crate::{Error, Result};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt as _;

/// The key docker uses for Docker Hub in `config.json`.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The `config.json` key to write for a registry.
fn config_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// Docker's config file in `dir`.
fn config_file(dir: &Path) -> PathBuf {
    dir.join("config.json")
}

fn read_config(dir: &Path) -> Result<Value> {
    let path = config_file(dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Config {
            path,
            message: format!("invalid JSON: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(source) => Err(Error::Io { path, source }),
    }
}

fn write_config(dir: &Path, value: &Value) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    let text = serde_json::to_vec_pretty(value).map_err(|e| Error::Config {
        path: config_file(dir),
        message: e.to_string(),
    })?;
    tmp.write_all(&text).map_err(io(tmp.path()))?;
    tmp.write_all(b"\n").map_err(io(tmp.path()))?;
    // NamedTempFile is created 0600, which is what a file of secrets wants.
    let dest = config_file(dir);
    tmp.persist(&dest).map_err(|e| Error::Io {
        path: dest.clone(),
        source: e.error,
    })?;
    Ok(())
}

/// Which helper (if any) holds credentials for `registry`.
fn helper_for(cfg: &Value, registry: &str) -> Option<String> {
    if let Some(helpers) = cfg.get("credHelpers").and_then(Value::as_object) {
        for (k, v) in helpers {
            if normalize_registry(k) == registry {
                return v.as_str().map(str::to_string);
            }
        }
    }
    cfg.get("credsStore")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Look up credentials for `registry` (a normalized registry name or host)
/// in `dir/config.json`. `Ok(None)` when there are none.
pub(crate) async fn lookup(dir: &Path, registry: &str) -> Result<Option<Credential>> {
    let cfg = read_config(dir)?;
    let registry = normalize_registry(registry);
    // Inline auths first when present for this registry, as docker does for
    // entries that are not in a helper.
    if let Some(auths) = cfg.get("auths").and_then(Value::as_object) {
        for (k, v) in auths {
            if normalize_registry(k) != registry {
                continue;
            }
            if let Some(c) = decode_auth(v, &registry)? {
                return Ok(Some(c));
            }
        }
    }
    match helper_for(&cfg, &registry) {
        Some(h) => helper_get(&h, &registry).await,
        None => Ok(None),
    }
}

fn decode_auth(v: &Value, registry: &str) -> Result<Option<Credential>> {
    let bad = |message: String| Error::Credentials {
        registry: registry.to_string(),
        message,
    };
    if let Some(auth) = v
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| bad(format!("config.json auth is not base64: {e}")))?;
        let text =
            String::from_utf8(raw).map_err(|_| bad("config.json auth is not UTF-8".into()))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| bad("config.json auth is not user:password".into()))?;
        return Ok(Some(Credential {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    let user = v.get("username").and_then(Value::as_str);
    let pass = v.get("password").and_then(Value::as_str);
    if let (Some(u), Some(p)) = (user, pass) {
        return Ok(Some(Credential {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    Ok(None)
}

#[cfg(test)]
thread_local! {
    /// Tests put their fake helpers here instead of changing `PATH`.
    static HELPER_DIR: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
}

fn helper_program(helper: &str) -> PathBuf {
    let name = format!("docker-credential-{helper}");
    #[cfg(test)]
    if let Some(d) = HELPER_DIR.with(|d| d.borrow().clone()) {
        return d.join(name);
    }
    PathBuf::from(name)
}

async fn run_helper(
    helper: &str,
    action: &str,
    input: &[u8],
    registry: &str,
) -> Result<(bool, Vec<u8>)> {
    let program = helper_program(helper);
    let bad = |message: String| Error::Credentials {
        registry: registry.to_string(),
        message,
    };
    let mut child = tokio::process::Command::new(&program)
        .arg(action)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| bad(format!("cannot run {}: {e}", program.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .await
            .map_err(|e| bad(format!("{} {action}: {e}", program.display())))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| bad(format!("{} {action}: {e}", program.display())))?;
    let mut text = out.stdout;
    if !out.status.success() {
        text.extend_from_slice(&out.stderr);
    }
    Ok((out.status.success(), text))
}

async fn helper_get(helper: &str, registry: &str) -> Result<Option<Credential>> {
    let server = if registry == DOCKER_HUB {
        DOCKER_HUB_KEY
    } else {
        registry
    };
    let (ok, out) = run_helper(helper, "get", server.as_bytes(), registry).await?;
    let text = String::from_utf8_lossy(&out);
    if !ok {
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(Error::Credentials {
            registry: registry.to_string(),
            message: format!("docker-credential-{helper} get: {}", text.trim()),
        });
    }
    let v: Value = serde_json::from_slice(&out).map_err(|e| Error::Credentials {
        registry: registry.to_string(),
        message: format!("docker-credential-{helper} get: invalid JSON: {e}"),
    })?;
    let user = v
        .get("Username")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or_default();
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential {
        username: user.to_string(),
        password: secret.to_string(),
    }))
}

/// Store credentials for `registry` in `dir/config.json` (or its helper).
pub(crate) async fn store(dir: &Path, registry: &str, cred: &Credential) -> Result<()> {
    let registry = normalize_registry(registry);
    let mut cfg = read_config(dir)?;
    let key = config_key(&registry);
    if let Some(h) = helper_for(&cfg, &registry) {
        let input = json!({"ServerURL": key, "Username": cred.username, "Secret": cred.password});
        let (ok, out) = run_helper(&h, "store", input.to_string().as_bytes(), &registry).await?;
        if !ok {
            return Err(Error::Credentials {
                registry,
                message: format!(
                    "docker-credential-{h} store: {}",
                    String::from_utf8_lossy(&out).trim()
                ),
            });
        }
        // docker leaves an empty entry in auths so the registry is listed.
        set_auth_entry(&mut cfg, &key, json!({}));
    } else {
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", cred.username, cred.password));
        set_auth_entry(&mut cfg, &key, json!({ "auth": auth }));
    }
    write_config(dir, &cfg)
}

fn set_auth_entry(cfg: &mut Value, key: &str, entry: Value) {
    if !cfg.is_object() {
        *cfg = json!({});
    }
    if let Some(obj) = cfg.as_object_mut() {
        let auths = obj
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Some(a) = auths.as_object_mut() {
            a.insert(key.to_string(), entry);
        }
    }
}

/// Remove credentials for `registry`. Returns whether any were present.
pub(crate) async fn erase(dir: &Path, registry: &str) -> Result<bool> {
    let registry = normalize_registry(registry);
    let mut cfg = read_config(dir)?;
    let mut found = false;
    if let Some(auths) = cfg.get_mut("auths").and_then(Value::as_object_mut) {
        let keys: Vec<String> = auths
            .keys()
            .filter(|k| normalize_registry(k) == registry)
            .cloned()
            .collect();
        for k in keys {
            auths.remove(&k);
            found = true;
        }
    }
    if let Some(h) = helper_for(&cfg, &registry) {
        let key = config_key(&registry);
        let (ok, out) = run_helper(&h, "erase", key.as_bytes(), &registry).await?;
        let text = String::from_utf8_lossy(&out);
        if ok {
            found = true;
        } else if !text.contains("not found") {
            return Err(Error::Credentials {
                registry,
                message: format!("docker-credential-{h} erase: {}", text.trim()),
            });
        }
    }
    if found {
        write_config(dir, &cfg)?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn auths_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(lookup(dir.path(), "docker.io").await.expect("lookup"), None);
        let c = Credential {
            username: "u".into(),
            password: "p:w".into(),
        };
        store(dir.path(), "docker.io", &c).await.expect("store");
        store(dir.path(), "127.0.0.1:5000", &c)
            .await
            .expect("store");
        let text = std::fs::read_to_string(dir.path().join("config.json")).expect("read");
        assert!(text.contains("https://index.docker.io/v1/"), "{text}");
        assert_eq!(
            lookup(dir.path(), "index.docker.io").await.expect("lookup"),
            Some(c.clone())
        );
        assert_eq!(
            lookup(dir.path(), "127.0.0.1:5000").await.expect("lookup"),
            Some(c)
        );
        assert!(erase(dir.path(), "docker.io").await.expect("erase"));
        assert!(!erase(dir.path(), "docker.io").await.expect("erase"));
        assert_eq!(lookup(dir.path(), "docker.io").await.expect("lookup"), None);
    }

    #[tokio::test]
    async fn credential_helper() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        let helper = bin.join("docker-credential-rbtest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\n[ \"$1\" = get ] || exit 1\n\
             [ \"$server\" = \"reg.example:5000\" ] || { echo 'credentials not found in native keychain'; exit 1; }\n\
             echo '{\"ServerURL\":\"reg.example:5000\",\"Username\":\"hu\",\"Secret\":\"hs\"}'\n",
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let cfg = json!({"credHelpers": {"reg.example:5000": "rbtest"}, "credsStore": "rbtest"});
        std::fs::write(dir.path().join("config.json"), cfg.to_string()).expect("write");
        assert_eq!(
            helper_for(&cfg, "reg.example:5000").as_deref(),
            Some("rbtest")
        );
        HELPER_DIR.with(|d| *d.borrow_mut() = Some(bin.clone()));
        let got = lookup(dir.path(), "reg.example:5000")
            .await
            .expect("lookup");
        assert_eq!(
            got,
            Some(Credential {
                username: "hu".into(),
                password: "hs".into()
            })
        );
        // credsStore answers "not found" for other registries.
        assert_eq!(
            lookup(dir.path(), "other.example").await.expect("lookup"),
            None
        );
    }
}
