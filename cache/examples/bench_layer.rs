//! Layer export benchmark: exports a 300 MB / 20,000-file tree as a layer
//! (plain tar; gzip at levels 1, 6 and 9 with 1 and 2 threads; zstd) and
//! prints throughput (MB of uncompressed tar per second of wall time and per
//! CPU-second) and peak RSS (VmHWM).
//!
//! The tree is the one `bench/export.sh` generates when `BENCH_TREE=DIR` is
//! set; otherwise one is made in a temp dir.
//!
//! Run: `cargo run --release -p rbuild-cache --example bench_layer`

use rbuild_cache::{
    apply_layer, export_layer, ApplyTarget, CompressOptions, Compression, ContentStore,
    DiffOptions, DiffSource, WhiteoutMode,
};
use std::io::Write;
use std::time::Instant;

const FILES: usize = 20_000;
const TOTAL: usize = 300 << 20;

/// Text-like, moderately compressible bytes (like binaries and sources).
fn fill(buf: &mut [u8], seed: &mut u64) {
    const WORDS: [&[u8]; 8] = [
        b"layer ",
        b"snapshot ",
        b"digest ",
        b"\x00\x00\x01",
        b"overlay ",
        b"blob ",
        b"\n",
        b"0x7f45 ",
    ];
    let mut i = 0;
    while i < buf.len() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        if *seed & 3 == 0 {
            buf[i] = (*seed >> 32) as u8;
            i += 1;
        } else {
            let w = WORDS[(*seed >> 8) as usize % WORDS.len()];
            let n = w.len().min(buf.len() - i);
            buf[i..i + n].copy_from_slice(&w[..n]);
            i += n;
        }
    }
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) used by this process so far.
fn cpu_secs() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete rusage into the pointed-to,
    // properly sized and aligned buffer; zeroed memory is a valid rusage.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let tree = match std::env::var_os("BENCH_TREE") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => make_tree(&tmp.path().join("tree"), &mut seed)?,
    };
    run(&tree, tmp.path(), &mut seed)
}

/// A tree of FILES files, TOTAL bytes: 10 big files carry a third of the
/// bytes, the rest is spread evenly.
fn make_tree(
    tree: &std::path::Path,
    seed: &mut u64,
) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let big = 10;
    let big_size = TOTAL / 3 / big;
    let small_size = (TOTAL - big * big_size) / (FILES - big);
    let mut buf = vec![0u8; big_size];
    let t = Instant::now();
    for i in 0..FILES {
        let dir = tree.join(format!("d{:03}/e{:02}", i % 500, i % 7));
        std::fs::create_dir_all(&dir)?;
        let size = if i < big { big_size } else { small_size };
        fill(&mut buf[..size], seed);
        std::fs::File::create(dir.join(format!("f{i:05}")))?.write_all(&buf[..size])?;
    }
    drop(buf);
    println!(
        "tree: {FILES} files, {} MB, built in {:.1}s",
        TOTAL >> 20,
        t.elapsed().as_secs_f64()
    );
    Ok(tree.to_path_buf())
}

fn run(
    tree: &std::path::Path,
    tmp: &std::path::Path,
    seed: &mut u64,
) -> Result<(), Box<dyn std::error::Error>> {
    // Compression alone, in memory (no file IO), for reference: the mixed
    // sample of `fill`, and incompressible bytes.
    let mut sample = vec![0u8; 32 << 20];
    fill(&mut sample, seed);
    let mut random = vec![0u8; 32 << 20];
    for chunk in random.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
    }
    for (name, data, compression, level, threads) in [
        ("mem gzip -1, 1 thread", &sample, Compression::Gzip, 1, 1),
        ("mem gzip -6, 1 thread", &sample, Compression::Gzip, 6, 1),
        ("mem gzip -6, 2 threads", &sample, Compression::Gzip, 6, 2),
        ("mem zstd -3, 1 thread", &sample, Compression::Zstd, 3, 1),
        ("mem zstd -3, 2 threads", &sample, Compression::Zstd, 3, 2),
        ("random gzip -1, 1 thread", &random, Compression::Gzip, 1, 1),
        ("random gzip -6, 1 thread", &random, Compression::Gzip, 6, 1),
        (
            "random gzip -6, 2 threads",
            &random,
            Compression::Gzip,
            6,
            2,
        ),
    ] {
        let copts = CompressOptions {
            compression,
            level: Some(level),
            threads,
        };
        let (t, cpu) = (Instant::now(), cpu_secs());
        let mut w = rbuild_cache::compress_writer(std::io::sink(), &copts)?;
        w.write_all(data)?;
        w.finish()?;
        println!(
            "{name:<26} {:7.1} MB/s wall, {:6.1} MB per CPU-second",
            32.0 / t.elapsed().as_secs_f64(),
            32.0 / (cpu_secs() - cpu)
        );
    }
    drop(random);
    drop(sample);
    // Reset the peak-RSS counter so it reflects the layer exports only.
    let _ = std::fs::write("/proc/self/clear_refs", "5");

    let store = ContentStore::open(tmp.join("content"))?;
    let source = DiffSource::Compare {
        lower: None,
        upper: tree.to_path_buf(),
    };
    let opts = DiffOptions {
        source_date_epoch: Some(0),
    };
    let runs = [
        ("plain tar", Compression::Uncompressed, 0, 1),
        ("gzip -1, 1 thread", Compression::Gzip, 1, 1),
        ("gzip -1, 2 threads", Compression::Gzip, 1, 2),
        ("gzip -6, 1 thread", Compression::Gzip, 6, 1),
        ("gzip -6, 2 threads", Compression::Gzip, 6, 2),
        ("gzip -9, 2 threads", Compression::Gzip, 9, 2),
        ("zstd -3, 1 thread", Compression::Zstd, 3, 1),
        ("zstd -3, 2 threads", Compression::Zstd, 3, 2),
    ];
    let mut gzip_digests = Vec::new();
    for (name, compression, level, threads) in runs {
        let copts = CompressOptions {
            compression,
            level: (compression != Compression::Uncompressed).then_some(level),
            threads,
        };
        let (t, cpu) = (Instant::now(), cpu_secs());
        let layer = export_layer(&store, &source, &opts, &copts)?;
        let secs = t.elapsed().as_secs_f64();
        let cpu = cpu_secs() - cpu;
        let mb = layer.uncompressed_size as f64 / (1 << 20) as f64;
        println!(
            "{name:<26} {:7.1} MB/s wall, {:6.1} MB per CPU-second ({mb:.0} MB -> {:.0} MB in {secs:.2}s)",
            mb / secs,
            mb / cpu,
            layer.descriptor.size as f64 / (1 << 20) as f64
        );
        if compression == Compression::Gzip && level == 6 {
            gzip_digests.push(layer.descriptor.digest.clone());
        }
        if compression == Compression::Gzip && level == 6 && threads == 2 {
            // Apply it back (gunzip + untar + sha256) into a fresh dir.
            let dest = tmp.join("applied");
            std::fs::create_dir(&dest)?;
            let target = ApplyTarget {
                dir: dest.clone(),
                mode: WhiteoutMode::Delete,
                lowers: vec![],
            };
            let (t, cpu) = (Instant::now(), cpu_secs());
            let blob = std::io::BufReader::new(store.open_blob(&layer.descriptor.digest)?);
            let stats = apply_layer(blob, &target)?;
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{:<26} {:7.1} MB/s wall, {:6.1} MB per CPU-second (diff_id matches: {})",
                "apply gzip layer",
                mb / secs,
                mb / (cpu_secs() - cpu),
                stats.diff_id == layer.diff_id
            );
            std::fs::remove_dir_all(&dest)?;
        }
        store.delete(&layer.descriptor.digest)?;
    }
    let same = gzip_digests.windows(2).all(|w| w[0] == w[1]);
    println!("gzip output identical for 1 and 2 threads: {same}");
    let hwm = vm_hwm_kb();
    println!("peak RSS (VmHWM): {:.1} MB", hwm as f64 / 1024.0);
    if hwm > 100 * 1024 {
        return Err(format!("peak RSS {hwm} kB is over the 100 MB budget").into());
    }
    Ok(())
}
