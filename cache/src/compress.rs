//! Layer compression: parallel single-member gzip, multithreaded zstd, and
//! a reader that detects the compression by its magic bytes.
//!
//! Parallel gzip works like pigz: the input is cut into 1 MiB blocks, each
//! deflated on its own (in parallel with rayon) with the previous block's
//! last 32 KiB as dictionary and ended with a sync flush, so the raw
//! deflate streams concatenate into one; the per-block CRC32s are combined
//! with [`crc32_combine`]. The result is ONE gzip member that every decoder
//! reads, and the bytes do not depend on the number of threads.

use flate2::{Compress, FlushCompress, Status};
use std::io::{self, Cursor, Read, Write};
use std::ops::RangeInclusive;

/// Media type of an uncompressed OCI layer.
pub const MEDIA_TYPE_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Media type of a gzip OCI layer.
pub const MEDIA_TYPE_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of a zstd OCI layer.
pub const MEDIA_TYPE_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Media type of a (gzip) Docker schema 2 layer.
pub const MEDIA_TYPE_DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Media type of an uncompressed Docker schema 2 layer.
pub const MEDIA_TYPE_DOCKER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// A layer compression algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Compression {
    /// Plain tar.
    Uncompressed,
    /// gzip (one member, deflated in parallel).
    Gzip,
    /// zstd (multithreaded).
    Zstd,
}

impl Compression {
    /// Stable lowercase name (`"gzip"`, `"zstd"`, `"uncompressed"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Uncompressed => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The levels `compression-level=` accepts for this algorithm
    /// (BuildKit's ranges: gzip 0–9, zstd 1–22); `None` when the algorithm
    /// has no level (uncompressed).
    pub fn levels(self) -> Option<RangeInclusive<i32>> {
        match self {
            Compression::Uncompressed => None,
            Compression::Gzip => Some(0..=9),
            Compression::Zstd => Some(1..=22),
        }
    }

    /// The level used when none is given (gzip 6, as Go's
    /// `gzip.DefaultCompression` that BuildKit uses; zstd 3).
    pub fn default_level(self) -> Option<i32> {
        match self {
            Compression::Uncompressed => None,
            Compression::Gzip => Some(6),
            Compression::Zstd => Some(3),
        }
    }
}

/// A compression level outside the algorithm's range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "compression-level={level} is out of range for {}: expected {}-{}",
    compression.as_str(), range.start(), range.end()
)]
pub struct LevelError {
    /// The algorithm.
    pub compression: Compression,
    /// The rejected level.
    pub level: i32,
    /// The accepted levels.
    pub range: RangeInclusive<i32>,
}

/// Check `level` against `compression`'s range; a level given for
/// uncompressed layers is accepted and has no effect (as in BuildKit).
pub fn check_level(compression: Compression, level: i32) -> Result<(), LevelError> {
    match compression.levels() {
        Some(range) if !range.contains(&level) => Err(LevelError {
            compression,
            level,
            range,
        }),
        _ => Ok(()),
    }
}

/// Algorithm, level and threads used to compress a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CompressOptions {
    /// The algorithm.
    pub compression: Compression,
    /// Level (gzip 0–9, default 6; zstd 1–22, default 3). `None` is the
    /// default level; [`CompressOptions::with_level`] stores the default as
    /// `None` too, so both name the same cached blobs.
    pub level: Option<i32>,
    /// Worker threads (gzip blocks in parallel, zstdmt workers).
    pub threads: usize,
}

impl CompressOptions {
    /// Default level, one thread per CPU.
    pub fn new(compression: Compression) -> Self {
        Self {
            compression,
            level: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// The same options at `level` (`None`: the default level). The level is
    /// checked against the algorithm's range; the default level itself, and
    /// any level of uncompressed layers, are stored as `None`.
    pub fn with_level(mut self, level: Option<i32>) -> Result<Self, LevelError> {
        if let Some(l) = level {
            check_level(self.compression, l)?;
        }
        self.level = level;
        self.level = self.explicit_level();
        Ok(self)
    }

    /// The name of this blob format in cache records: the algorithm, with
    /// `-LEVEL` when the level is not the default (`gzip`, `gzip-1`, `zstd`,
    /// `zstd-19`, `uncompressed`). Blobs made at different levels have
    /// different names; the default level's name is the bare algorithm, as
    /// it was before levels existed.
    pub fn record_name(&self) -> String {
        match self.explicit_level() {
            Some(l) => format!("{}-{l}", self.compression.as_str()),
            None => self.compression.as_str().to_string(),
        }
    }

    /// The level, unless it is the default or the algorithm has none.
    pub fn explicit_level(&self) -> Option<i32> {
        self.level.filter(|&l| {
            self.compression.levels().is_some() && Some(l) != self.compression.default_level()
        })
    }
}

/// The media type of a layer with this compression; `docker` selects the
/// Docker schema 2 names (zstd has none and keeps the OCI one).
pub fn media_type(compression: Compression, docker: bool) -> &'static str {
    match (compression, docker) {
        (Compression::Uncompressed, false) => MEDIA_TYPE_TAR,
        (Compression::Uncompressed, true) => MEDIA_TYPE_DOCKER_TAR,
        (Compression::Gzip, false) => MEDIA_TYPE_TAR_GZIP,
        (Compression::Gzip, true) => MEDIA_TYPE_DOCKER_GZIP,
        (Compression::Zstd, _) => MEDIA_TYPE_TAR_ZSTD,
    }
}

/// The compression a layer media type names (OCI or Docker schema 2);
/// `None` for a media type that is not a known layer type.
pub fn compression_of_media_type(media_type: &str) -> Option<Compression> {
    match media_type {
        MEDIA_TYPE_TAR | MEDIA_TYPE_DOCKER_TAR => Some(Compression::Uncompressed),
        MEDIA_TYPE_TAR_GZIP | MEDIA_TYPE_DOCKER_GZIP => Some(Compression::Gzip),
        MEDIA_TYPE_TAR_ZSTD | "application/vnd.docker.image.rootfs.diff.tar.zstd" => {
            Some(Compression::Zstd)
        }
        _ => None,
    }
}

/// Compression of a stream, from its first bytes.
pub fn detect_compression(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::Uncompressed
    }
}

/// Wrap `r` in the decoder its magic bytes call for (gzip, possibly
/// multi-member; zstd; or none).
pub fn decompress_reader<'a, R: Read + 'a>(mut r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut magic = [0u8; 4];
    let mut n = 0;
    while n < magic.len() {
        match r.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = Cursor::new(magic[..n].to_vec());
    let joined = head.chain(r);
    Ok(match detect_compression(&magic[..n]) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(joined)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(joined)?),
        Compression::Uncompressed => Box::new(joined),
    })
}

/// A compressing writer; call [`CompressWriter::finish`] to end the stream.
pub enum CompressWriter<W: Write> {
    /// No compression.
    Plain(W),
    /// Parallel gzip.
    Gzip(ParallelGzWriter<W>),
    /// zstd.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

/// A writer compressing into `w` as `opts` say. A level outside the
/// algorithm's range is an `InvalidInput` error.
pub fn compress_writer<W: Write>(w: W, opts: &CompressOptions) -> io::Result<CompressWriter<W>> {
    let level = match (opts.level, opts.compression.default_level()) {
        (Some(l), _) => {
            check_level(opts.compression, l)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            l
        }
        (None, Some(d)) => d,
        (None, None) => 0,
    };
    Ok(match opts.compression {
        Compression::Uncompressed => CompressWriter::Plain(w),
        Compression::Gzip => {
            // check_level kept it in 0..=9.
            CompressWriter::Gzip(ParallelGzWriter::new(
                w,
                level.unsigned_abs(),
                opts.threads,
            )?)
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(w, level)?;
            // Workers >= 1 give the same bytes whatever their number.
            enc.multithread(opts.threads.max(1) as u32)?;
            CompressWriter::Zstd(enc)
        }
    })
}

impl<W: Write> Write for CompressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            CompressWriter::Plain(w) => w.write(buf),
            CompressWriter::Gzip(w) => w.write(buf),
            CompressWriter::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            CompressWriter::Plain(w) => w.flush(),
            // Flushing mid-stream would change the output; data is written
            // at block boundaries and on finish.
            CompressWriter::Gzip(_) => Ok(()),
            CompressWriter::Zstd(w) => w.flush(),
        }
    }
}

impl<W: Write> CompressWriter<W> {
    /// End the compressed stream and return the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            CompressWriter::Plain(mut w) => {
                w.flush()?;
                Ok(w)
            }
            CompressWriter::Gzip(w) => w.finish(),
            CompressWriter::Zstd(w) => w.finish(),
        }
    }
}

const BLOCK: usize = 1 << 20;
const DICT: usize = 32 * 1024;

/// Single-member gzip, deflated in parallel blocks (see the module docs).
pub struct ParallelGzWriter<W: Write> {
    inner: W,
    level: u32,
    pool: Option<rayon::ThreadPool>,
    batch_len: usize,
    /// Full blocks waiting to be compressed.
    batch: Vec<Vec<u8>>,
    /// The block being filled.
    cur: Vec<u8>,
    /// Tail of the last block handed out, the next block's dictionary.
    dict: Vec<u8>,
    /// The batch being compressed in the background, if any.
    pending: Option<std::sync::mpsc::Receiver<io::Result<Vec<Compressed>>>>,
    crc: u32,
    total: u64,
}

impl<W: Write> ParallelGzWriter<W> {
    /// Compress into `inner` at `level` (0–9) with `threads` workers.
    pub fn new(mut inner: W, level: u32, threads: usize) -> io::Result<Self> {
        // Fixed header: no name, no mtime, unknown OS, so output is stable.
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
        let pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("rbuild-gzip-{i}"))
                    // A panicking job drops its sender; `wait` reports it.
                    .panic_handler(|_| {})
                    .build()
                    .map_err(io::Error::other)?,
            )
        } else {
            None
        };
        Ok(Self {
            inner,
            level,
            pool,
            batch_len: threads.max(1) * 2,
            batch: Vec::new(),
            cur: Vec::with_capacity(BLOCK),
            dict: Vec::new(),
            pending: None,
            crc: 0,
            total: 0,
        })
    }

    /// Hand the full blocks to the workers. With a pool, the batch is
    /// compressed in the background while the caller fills the next one;
    /// the previous batch's output is written (in order) before returning.
    fn flush_batch(&mut self, last: bool) -> io::Result<()> {
        let blocks = std::mem::take(&mut self.batch);
        if blocks.is_empty() {
            return Ok(());
        }
        let prev = std::mem::take(&mut self.dict);
        self.dict = blocks.last().map(|b| tail(b).to_vec()).unwrap_or_default();
        let level = self.level;
        match &self.pool {
            Some(pool) => {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                pool.spawn(move || {
                    let _ = tx.send(compress_batch(&prev, &blocks, last, level, true));
                });
                // Write the batch before this one while this one runs.
                if let Some(before) = self.pending.replace(rx) {
                    self.write_results(wait(before)?)?;
                }
                Ok(())
            }
            None => {
                let results = compress_batch(&prev, &blocks, last, level, false)?;
                self.write_results(results)
            }
        }
    }

    fn write_results(&mut self, results: Vec<Compressed>) -> io::Result<()> {
        for c in results {
            self.inner.write_all(&c.data)?;
            self.crc = crc32_combine(self.crc, c.crc, c.len);
            self.total += c.len;
        }
        Ok(())
    }

    /// End the gzip member (last block, CRC32, ISIZE); returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let cur = std::mem::take(&mut self.cur);
        self.batch.push(cur);
        self.flush_batch(true)?;
        if let Some(rx) = self.pending.take() {
            let results = wait(rx)?;
            self.write_results(results)?;
        }
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.to_le_bytes());
        trailer[4..].copy_from_slice(&(self.total as u32).to_le_bytes());
        self.inner.write_all(&trailer)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// One compressed block: raw deflate bytes, CRC32 and length of the input.
struct Compressed {
    data: Vec<u8>,
    crc: u32,
    len: u64,
}

/// Compress `blocks` (block 0 primed with `prev`, each next one with the
/// tail of the one before), in parallel on the current rayon pool if
/// `parallel`.
fn compress_batch(
    prev: &[u8],
    blocks: &[Vec<u8>],
    last: bool,
    level: u32,
    parallel: bool,
) -> io::Result<Vec<Compressed>> {
    use rayon::prelude::*;
    let n = blocks.len();
    let one = |i: usize| -> io::Result<Compressed> {
        let dict: &[u8] = if i == 0 { prev } else { tail(&blocks[i - 1]) };
        let block = &blocks[i];
        let mut h = crc32fast::Hasher::new();
        h.update(block);
        Ok(Compressed {
            data: deflate_block(dict, block, last && i + 1 == n, level)?,
            crc: h.finalize(),
            len: block.len() as u64,
        })
    };
    if parallel {
        (0..n).into_par_iter().map(one).collect()
    } else {
        (0..n).map(one).collect()
    }
}

fn wait(rx: std::sync::mpsc::Receiver<io::Result<Vec<Compressed>>>) -> io::Result<Vec<Compressed>> {
    rx.recv()
        .map_err(|_| io::Error::other("gzip worker panicked"))?
}

fn tail(b: &[u8]) -> &[u8] {
    &b[b.len().saturating_sub(DICT)..]
}

impl<W: Write> Write for ParallelGzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.cur.len();
        let n = room.min(buf.len());
        self.cur.extend_from_slice(&buf[..n]);
        if self.cur.len() == BLOCK {
            let full = std::mem::replace(&mut self.cur, Vec::with_capacity(BLOCK));
            self.batch.push(full);
            if self.batch.len() >= self.batch_len {
                self.flush_batch(false)?;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Raw-deflate `input` primed with `dict`, ending with a sync flush (or the
/// final block if `last`).
fn deflate_block(dict: &[u8], input: &[u8], last: bool, level: u32) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(input.len() / 2 + 4096);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let done_input = c.total_in() as usize == input.len();
        match status {
            Status::StreamEnd => break,
            _ if !last && done_input && out.len() < out.capacity() => break,
            _ => out.reserve(out.capacity().max(4096)),
        }
    }
    Ok(out)
}

const GF2_DIM: usize = 32;

fn gf2_matrix_times(mat: &[u32; GF2_DIM], mut vec: u32) -> u32 {
    let mut sum = 0;
    let mut i = 0;
    while vec != 0 {
        if vec & 1 != 0 {
            sum ^= mat[i];
        }
        vec >>= 1;
        i += 1;
    }
    sum
}

fn gf2_matrix_square(square: &mut [u32; GF2_DIM], mat: &[u32; GF2_DIM]) {
    for n in 0..GF2_DIM {
        square[n] = gf2_matrix_times(mat, mat[n]);
    }
}

/// The CRC32 of `A ‖ B` from `crc1 = crc32(A)`, `crc2 = crc32(B)` and
/// `len2 = |B|` (zlib's `crc32_combine`, by GF(2) matrix powers).
pub fn crc32_combine(mut crc1: u32, crc2: u32, mut len2: u64) -> u32 {
    if len2 == 0 {
        return crc1;
    }
    let mut even = [0u32; GF2_DIM];
    let mut odd = [0u32; GF2_DIM];
    // The operator for one zero bit.
    odd[0] = 0xedb8_8320;
    let mut row = 1u32;
    for item in odd.iter_mut().skip(1) {
        *item = row;
        row <<= 1;
    }
    gf2_matrix_square(&mut even, &odd); // two zero bits
    gf2_matrix_square(&mut odd, &even); // four zero bits
    loop {
        gf2_matrix_square(&mut even, &odd);
        if len2 & 1 != 0 {
            crc1 = gf2_matrix_times(&even, crc1);
        }
        len2 >>= 1;
        if len2 == 0 {
            break;
        }
        gf2_matrix_square(&mut odd, &even);
        if len2 & 1 != 0 {
            crc1 = gf2_matrix_times(&odd, crc1);
        }
        len2 >>= 1;
        if len2 == 0 {
            break;
        }
    }
    crc1 ^ crc2
}

#[cfg(test)]
#[path = "compress_tests.rs"]
mod tests;
