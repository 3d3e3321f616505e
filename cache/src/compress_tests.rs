use super::*;

/// Compressible but not trivial data.
fn sample(len: usize) -> Vec<u8> {
    let mut x: u32 = 12345;
    (0..len)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if i % 7 == 0 {
                (x >> 24) as u8
            } else {
                b"the quick brown fox "[i % 20]
            }
        })
        .collect()
}

fn gzip(data: &[u8], threads: usize) -> Vec<u8> {
    let mut w = ParallelGzWriter::new(Vec::new(), 6, threads).expect("writer");
    for chunk in data.chunks(100_003) {
        w.write_all(chunk).expect("write");
    }
    w.finish().expect("finish")
}

#[test]
fn crc32_combine_matches_crc_of_concatenation() {
    let data = sample(300_000);
    for split in [0, 1, 4095, 150_000, 300_000] {
        let (a, b) = data.split_at(split);
        let combined = crc32_combine(crc32fast::hash(a), crc32fast::hash(b), b.len() as u64);
        assert_eq!(combined, crc32fast::hash(&data), "split at {split}");
    }
}

#[test]
fn parallel_gzip_is_one_member_readable_by_every_decoder() {
    for len in [0, 10, BLOCK, 3 * BLOCK + 12_345, 9 * BLOCK + 5] {
        let data = sample(len);
        let gz = gzip(&data, 2);
        assert_eq!(gz, gzip(&data, 1), "thread count must not change the bytes");
        // A single-member decoder reads all of it.
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .expect("GzDecoder");
        assert_eq!(out, data, "len {len}");
        // ... and so does the system gzip.
        let mut child = std::process::Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip must be installed for this test");
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || stdin.write_all(&gz));
        let out = child.wait_with_output().expect("gzip");
        writer.join().expect("join").expect("write");
        assert!(
            out.status.success(),
            "gzip -d failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, data, "len {len}");
    }
}

#[test]
fn dictionary_priming_keeps_ratio_close_to_serial() {
    let data = sample(4 * BLOCK);
    let par = gzip(&data, 2).len();
    let mut serial = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    serial.write_all(&data).expect("write");
    let serial = serial.finish().expect("finish").len();
    assert!(
        par < serial + serial / 50,
        "parallel {par} vs serial {serial}"
    );
}

#[test]
fn zstd_and_detection_roundtrip() {
    let data = sample(2 * BLOCK);
    for c in [
        Compression::Uncompressed,
        Compression::Gzip,
        Compression::Zstd,
    ] {
        let mut opts = CompressOptions::new(c);
        opts.threads = 2;
        let mut w = compress_writer(Vec::new(), &opts).expect("writer");
        w.write_all(&data).expect("write");
        let blob = w.finish().expect("finish");
        assert_eq!(detect_compression(&blob), c);
        let mut out = Vec::new();
        decompress_reader(&blob[..])
            .expect("reader")
            .read_to_end(&mut out)
            .expect("read");
        assert_eq!(out, data, "{c:?}");
    }
    // Multi-member gzip (as some tools write) is read in full.
    let mut multi = gzip(b"one ", 1);
    multi.extend(gzip(b"two", 1));
    let mut out = String::new();
    decompress_reader(&multi[..])
        .expect("reader")
        .read_to_string(&mut out)
        .expect("read");
    assert_eq!(out, "one two");
    assert_eq!(media_type(Compression::Gzip, true), MEDIA_TYPE_DOCKER_GZIP);
    assert_eq!(media_type(Compression::Zstd, false), MEDIA_TYPE_TAR_ZSTD);
}

fn compressed(data: &[u8], opts: &CompressOptions) -> Vec<u8> {
    let mut w = compress_writer(Vec::new(), opts).expect("writer");
    w.write_all(data).expect("write");
    w.finish().expect("finish")
}

#[test]
fn levels_change_the_bytes_but_not_the_content() {
    let data = sample(3 * BLOCK);
    for (c, low, high) in [(Compression::Gzip, 1, 9), (Compression::Zstd, 1, 19)] {
        let at = |level| {
            compressed(
                &data,
                &CompressOptions::new(c)
                    .with_level(Some(level))
                    .expect("level"),
            )
        };
        let (fast, best) = (at(low), at(high));
        assert_ne!(
            fast, best,
            "{c:?}: level {low} and {high} gave the same bytes"
        );
        if c == Compression::Gzip {
            // (zstd -19 is not smaller than -1 on this synthetic sample;
            // the zstd tool agrees.)
            assert!(best.len() < fast.len(), "{} vs {}", best.len(), fast.len());
        }
        for blob in [fast, best] {
            let mut out = Vec::new();
            decompress_reader(&blob[..])
                .expect("reader")
                .read_to_end(&mut out)
                .expect("read");
            assert_eq!(out, data, "{c:?}");
        }
        // The default level, given explicitly, is the default.
        let default = c.default_level().expect("default");
        assert_eq!(
            at(default),
            compressed(&data, &CompressOptions::new(c)),
            "{c:?}"
        );
    }
    // gzip level 0 stores: bigger than the input, still one valid member.
    let stored = compressed(
        &data,
        &CompressOptions::new(Compression::Gzip)
            .with_level(Some(0))
            .expect("level"),
    );
    assert!(stored.len() > data.len());
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&stored[..])
        .read_to_end(&mut out)
        .expect("GzDecoder");
    assert_eq!(out, data);
}

#[test]
fn levels_outside_the_range_are_rejected() {
    let gz = CompressOptions::new(Compression::Gzip);
    let zst = CompressOptions::new(Compression::Zstd);
    assert_eq!(
        gz.with_level(Some(10)).expect_err("10").to_string(),
        "compression-level=10 is out of range for gzip: expected 0-9"
    );
    assert!(gz.with_level(Some(-1)).is_err());
    assert_eq!(
        zst.with_level(Some(0)).expect_err("0").to_string(),
        "compression-level=0 is out of range for zstd: expected 1-22"
    );
    assert!(zst.with_level(Some(23)).is_err());
    // A writer given an out-of-range level directly refuses it too.
    let mut raw = gz;
    raw.level = Some(12);
    let e = compress_writer(Vec::new(), &raw).err().expect("level 12");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("out of range for gzip"), "{e}");
    // Uncompressed layers have no level; one given is ignored (BuildKit).
    let plain = CompressOptions::new(Compression::Uncompressed)
        .with_level(Some(99))
        .expect("ignored");
    assert_eq!(plain.level, None);
}

#[test]
fn record_names_carry_only_non_default_levels() {
    let name = |c, level| {
        CompressOptions::new(c)
            .with_level(level)
            .expect("level")
            .record_name()
    };
    assert_eq!(name(Compression::Gzip, None), "gzip");
    assert_eq!(name(Compression::Gzip, Some(6)), "gzip");
    assert_eq!(name(Compression::Gzip, Some(1)), "gzip-1");
    assert_eq!(name(Compression::Gzip, Some(0)), "gzip-0");
    assert_eq!(name(Compression::Zstd, None), "zstd");
    assert_eq!(name(Compression::Zstd, Some(3)), "zstd");
    assert_eq!(name(Compression::Zstd, Some(19)), "zstd-19");
    assert_eq!(name(Compression::Uncompressed, Some(5)), "uncompressed");
}

#[test]
fn media_types_name_their_algorithm() {
    for c in [
        Compression::Uncompressed,
        Compression::Gzip,
        Compression::Zstd,
    ] {
        for docker in [false, true] {
            assert_eq!(compression_of_media_type(media_type(c, docker)), Some(c));
        }
    }
    assert_eq!(
        compression_of_media_type("application/vnd.oci.image.config.v1+json"),
        None
    );
}
