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
