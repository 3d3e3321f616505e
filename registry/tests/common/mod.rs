//! Test helpers: a real `docker-registry` on a free 127.0.0.1 port, a
//! programmable HTTP front (token auth, failures, corruption, counting)
//! that proxies to it, a forward/CONNECT proxy, and test images.
#![allow(dead_code, clippy::unwrap_used)]

mod front;
pub use front::*;

use rbuild_registry::{ContentStore, Descriptor, Digest, ProxyConfig, RegistryConfig};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `docker-registry serve` process with its own storage; killed on drop.
pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    child: Child,
    dir: tempfile::TempDir,
}

fn require(binary: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(binary).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{binary}` is not installed: run `apt-get install {package}` (or scripts/install-deps.sh)"
    );
}

impl Registry {
    /// Start an anonymous registry.
    pub async fn start() -> Self {
        Self::start_inner(None, None).await
    }

    /// Start a registry with htpasswd basic auth for one user.
    pub async fn start_with_htpasswd(user: &str, pass: &str) -> Self {
        Self::start_inner(Some((user, pass)), None).await
    }

    /// Start an https registry with this certificate and key.
    pub async fn start_tls(tls: &TestTls) -> Self {
        Self::start_inner(None, Some(tls)).await
    }

    async fn start_inner(auth: Option<(&str, &str)>, tls: Option<&TestTls>) -> Self {
        require("docker-registry", "docker-registry");
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let mut auth_block = String::new();
            if let Some((user, pass)) = auth {
                require("htpasswd", "apache2-utils");
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, pass])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "htpasswd failed");
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, &out.stdout).unwrap();
                auth_block = format!(
                    "auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n",
                    file.display()
                );
            }
            let tls_block = match tls {
                Some(t) => format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    t.cert.display(),
                    t.key.display()
                ),
                None => String::new(),
            };
            let config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{tls_block}{auth_block}",
                dir.path().join("storage").display()
            );
            let cfg_path = dir.path().join("config.yml");
            std::fs::write(&cfg_path, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&cfg_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut reg = Registry { addr, child, dir };
            if reg
                .wait_ready(if tls.is_some() { "https" } else { "http" })
                .await
            {
                return reg;
            }
            last_log =
                std::fs::read_to_string(reg.dir.path().join("registry.log")).unwrap_or_default();
        }
        panic!("docker-registry did not start; log:\n{last_log}");
    }

    /// Poll `/v2/` until it answers (true) or the process exits (false).
    async fn wait_ready(&mut self, scheme: &str) -> bool {
        let http = reqwest::Client::builder()
            .no_proxy()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let url = format!("{scheme}://{}/v2/", self.addr);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(r) = http.get(&url).send().await {
                if r.status() == 200 || r.status() == 401 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a server certificate it signed.
pub struct TestTls {
    _dir: tempfile::TempDir,
    /// The CA certificate (PEM).
    pub ca: std::path::PathBuf,
    /// The server certificate (PEM).
    pub cert: std::path::PathBuf,
    /// The server key (PEM).
    pub key: std::path::PathBuf,
}

impl TestTls {
    /// Make a CA and a certificate for `dns_name` with `openssl`.
    pub fn generate(dns_name: &str) -> Self {
        require("openssl", "openssl");
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut a = vec![
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=rbuild-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ];
        a.extend(ec);
        run(&a);
        let subj = format!("/CN={dns_name}");
        let mut a = vec![
            "req", "-subj", &subj, "-keyout", "key.pem", "-out", "leaf.csr",
        ];
        a.extend(ec);
        run(&a);
        std::fs::write(
            p("ext.cnf"),
            format!("subjectAltName=DNS:{dns_name}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ]);
        TestTls {
            ca: p("ca.pem"),
            cert: p("cert.pem"),
            key: p("key.pem"),
            _dir: dir,
        }
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A client config for tests: no proxies or docker config from the
/// environment, fast backoff, small chunks.
pub fn test_config() -> RegistryConfig {
    RegistryConfig {
        proxy: ProxyConfig::default(),
        docker_config_dir: None,
        backoff: Duration::from_millis(5),
        chunk_threshold: 1 << 20,
        chunk_size: 384 << 10,
        ..RegistryConfig::default()
    }
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An image whose blobs are in a content store.
pub struct TestImage {
    /// Manifest bytes.
    pub manifest: Vec<u8>,
    /// Its media type.
    pub media_type: String,
    /// Config descriptor.
    pub config: Descriptor,
    /// Layer descriptors.
    pub layers: Vec<Descriptor>,
}

impl TestImage {
    /// Config and layers, as `push_image` wants them.
    pub fn blobs(&self) -> Vec<Descriptor> {
        std::iter::once(self.config.clone())
            .chain(self.layers.iter().cloned())
            .collect()
    }
    /// The manifest's digest.
    pub fn digest(&self) -> Digest {
        Digest::sha256_of(&self.manifest)
    }
}

/// Make an OCI image with layers of the given sizes (random content) and
/// store its blobs in `store`.
pub fn make_image(store: &ContentStore, arch: &str, layer_sizes: &[usize], seed: u64) -> TestImage {
    let mut layers = Vec::new();
    for (i, size) in layer_sizes.iter().enumerate() {
        let bytes = pseudo_random(*size, seed * 1000 + i as u64);
        let d = store.put(&bytes).unwrap();
        layers.push(Descriptor::new(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            d,
            *size as u64,
        ));
    }
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Env": [format!("SEED={seed}")]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>()},
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let cd = store.put(&config_bytes).unwrap();
    let config = Descriptor::new(
        "application/vnd.oci.image.config.v1+json",
        cd,
        config_bytes.len() as u64,
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": layers,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    store.put(&manifest).unwrap();
    TestImage {
        manifest,
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        config,
        layers,
    }
}

/// Assert that `store` holds exactly the blob bytes `src` holds for `descs`.
pub fn assert_same_blobs(src: &ContentStore, dst: &ContentStore, descs: &[Descriptor]) {
    for d in descs {
        assert_eq!(
            src.read_blob(&d.digest).unwrap(),
            dst.read_blob(&d.digest).unwrap(),
            "blob {}",
            d.digest
        );
    }
}

/// Files left in the store's ingest directory.
pub fn ingest_leftovers(store: &ContentStore) -> usize {
    std::fs::read_dir(store.root().join("ingest"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Open a fresh content store in a temp dir.
pub fn temp_store() -> (tempfile::TempDir, ContentStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    (dir, store)
}

/// A socket address that refuses connections.
pub fn dead_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}
