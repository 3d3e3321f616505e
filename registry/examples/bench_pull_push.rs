//! Push then pull a ~300 MB image (incompressible random layers) against a
//! local registry and print seconds and MB/s.
//!
//! ```text
//! scripts/start-registry.sh
//! cargo run --release -p rbuild-registry --example bench_pull_push -- [REGISTRY] [MB] [LAYERS]
//! ```
//!
//! REGISTRY defaults to `$RBUILD_REGISTRY` or `127.0.0.1:5000`; MB to 300;
//! LAYERS to 6. Compare with
//! `skopeo copy --src-tls-verify=false docker://REGISTRY/bench/rbuild:TAG dir:DIR`
//! (the command is printed at the end).

use rbuild_registry::{
    Client, ContentStore, Descriptor, Digest, Platform, Reference, RegistryConfig,
};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
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

fn rate(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs.max(1e-9)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let registry = args
        .first()
        .cloned()
        .or_else(|| std::env::var("RBUILD_REGISTRY").ok())
        .unwrap_or_else(|| "127.0.0.1:5000".to_string());
    let mb: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(300);
    let nlayers: usize = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(6)
        .max(1);
    let seed = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let tag = format!("b{seed}");

    let src_dir = tempfile::tempdir()?;
    let src = ContentStore::open(src_dir.path())?;
    let layer_size = (mb << 20) / nlayers;
    let mut layers = Vec::new();
    let t = Instant::now();
    for i in 0..nlayers {
        let bytes = pseudo_random(layer_size, seed + i as u64);
        let d = src.put(&bytes)?;
        layers.push(Descriptor::new(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            d,
            layer_size as u64,
        ));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>()},
    }))?;
    let cd = src.put(&config)?;
    let config_desc = Descriptor::new(
        "application/vnd.oci.image.config.v1+json",
        cd,
        config.len() as u64,
    );
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": rbuild_registry::media::OCI_MANIFEST,
        "config": config_desc,
        "layers": layers,
    }))?;
    let total: u64 = layers.iter().map(|l| l.size).sum();
    eprintln!(
        "generated {nlayers} layers, {:.1} MB in {:.2}s",
        total as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );

    let mut cfg = RegistryConfig::load(None)?;
    cfg.proxy = Default::default();
    let client = Client::new(cfg.clone())?;
    let r = Reference::parse(&format!("{registry}/bench/rbuild:{tag}"))?;
    let mut blobs = vec![config_desc.clone()];
    blobs.extend(layers.iter().cloned());

    let t = Instant::now();
    let d: Digest = client
        .push_image(
            &r,
            &src,
            &manifest,
            rbuild_registry::media::OCI_MANIFEST,
            &blobs,
        )
        .await?;
    let push = t.elapsed().as_secs_f64();
    println!(
        "push  {:>7.2} s  {:>7.1} MB/s  ({r}@{d})",
        push,
        rate(total, push)
    );

    let t = Instant::now();
    client
        .push_image(
            &r,
            &src,
            &manifest,
            rbuild_registry::media::OCI_MANIFEST,
            &blobs,
        )
        .await?;
    let repush = t.elapsed().as_secs_f64();
    println!("repush {:>6.2} s  (all blobs present)", repush);

    let dst_dir = tempfile::tempdir()?;
    let dst = ContentStore::open(dst_dir.path())?;
    let fresh = Client::new(cfg)?;
    let t = Instant::now();
    let img = fresh
        .pull(&r, &Platform::parse("linux/amd64").ok_or("platform")?, &dst)
        .await?;
    let pull = t.elapsed().as_secs_f64();
    println!(
        "pull  {:>7.2} s  {:>7.1} MB/s  ({} layers)",
        pull,
        rate(total, pull),
        img.layers.len()
    );

    println!(
        "compare: skopeo copy --src-tls-verify=false docker://{registry}/bench/rbuild:{tag} dir:$(mktemp -d)"
    );
    Ok(())
}
