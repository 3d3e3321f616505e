//! Streaming IO helpers: digest-verifying readers, layer decompression,
//! deterministic tar headers and atomic output files.

use crate::assemble::media_types as mt;
use crate::spec::Destination;
use crate::{Error, IoContext, Result};
use rbuild_cache::{ContentStore, Descriptor};
use rbuild_graph::Digest;
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// A reader that hashes what passes through it and, at end of stream, fails
/// with `InvalidData` unless the bytes had the expected digest and size.
pub(crate) struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    expected: Digest,
    expected_size: Option<u64>,
    what: &'static str,
}

impl<R: Read> VerifyingReader<R> {
    pub(crate) fn new(
        inner: R,
        expected: Digest,
        expected_size: Option<u64>,
        what: &'static str,
    ) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            read: 0,
            expected,
            expected_size,
            what,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let actual = Digest::from_sha256(self.hasher.clone().finalize().into());
            let size_ok = self.expected_size.is_none_or(|s| s == self.read);
            if actual != self.expected || !size_ok {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} {} does not match its content ({} bytes hashing to {actual})",
                        self.what, self.expected, self.read
                    ),
                ));
            }
            return Ok(0);
        }
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Open a blob for streaming, checking its size now and its digest at EOF.
pub(crate) fn open_verified(
    store: &ContentStore,
    desc: &Descriptor,
) -> Result<VerifyingReader<fs::File>> {
    let size = store.size(&desc.digest)?;
    if size != desc.size {
        return Err(Error::CorruptBlob {
            digest: desc.digest.clone(),
            reason: format!("descriptor says {} bytes, store has {size}", desc.size),
        });
    }
    let f = store.open_blob(&desc.digest)?;
    Ok(VerifyingReader::new(
        f,
        desc.digest.clone(),
        Some(desc.size),
        "blob",
    ))
}

/// Open a layer blob as its uncompressed tar stream, verifying the blob's
/// digest and the uncompressed stream's `diff_id` at EOF.
pub(crate) fn open_layer(
    store: &ContentStore,
    desc: &Descriptor,
    diff_id: &Digest,
) -> Result<Box<dyn Read>> {
    let blob = io::BufReader::with_capacity(256 * 1024, open_verified(store, desc)?);
    let plain: Box<dyn Read> = match desc.media_type.as_str() {
        mt::OCI_LAYER | mt::DOCKER_LAYER | mt::OCI_LAYER_ND => Box::new(blob),
        mt::OCI_LAYER_GZIP
        | mt::DOCKER_LAYER_GZIP
        | mt::OCI_LAYER_ND_GZIP
        | mt::DOCKER_LAYER_FOREIGN => Box::new(flate2::bufread::MultiGzDecoder::new(blob)),
        mt::OCI_LAYER_ZSTD => {
            Box::new(
                zstd::Decoder::with_buffer(blob).map_err(|e| Error::CorruptBlob {
                    digest: desc.digest.clone(),
                    reason: format!("zstd: {e}"),
                })?,
            )
        }
        other => {
            return Err(Error::UnsupportedMediaType {
                media_type: other.to_string(),
                reason: "cannot decompress this layer".to_string(),
            })
        }
    };
    Ok(Box::new(VerifyingReader::new(
        plain,
        diff_id.clone(),
        None,
        "layer diff_id",
    )))
}

/// A tar header for a regular file or directory owned by 0:0.
pub(crate) fn header(kind: tar::EntryType, size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h
}

/// The mtime to stamp on archive entries.
pub(crate) fn archive_mtime(source_date_epoch: Option<i64>) -> u64 {
    source_date_epoch
        .and_then(|e| u64::try_from(e).ok())
        .unwrap_or(0)
}

/// Append a small in-memory file.
pub(crate) fn append_bytes<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
    mtime: u64,
) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, bytes.len() as u64, 0o644, mtime);
    b.append_data(&mut h, path, bytes).at(path)
}

/// Append a directory entry.
pub(crate) fn append_dir<W: Write>(b: &mut tar::Builder<W>, path: &str, mtime: u64) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, 0, 0o755, mtime);
    b.append_data(&mut h, path, io::empty()).at(path)
}

/// Append a blob from the store as `path`, streamed from its file.
pub(crate) fn append_blob<W: Write>(
    b: &mut tar::Builder<W>,
    store: &ContentStore,
    desc: &Descriptor,
    path: &str,
    mtime: u64,
) -> Result<()> {
    let r = open_verified(store, desc)?;
    let mut h = header(tar::EntryType::Regular, desc.size, 0o644, mtime);
    b.append_data(&mut h, path, r)
        .at(store.blob_path(&desc.digest))
}

/// A writer that remembers the kind of its first failed write.
struct WriteFailure<W> {
    inner: W,
    failed: Option<io::ErrorKind>,
}

impl<W: Write> Write for WriteFailure<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| {
            self.failed.get_or_insert(e.kind());
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|e| {
            self.failed.get_or_insert(e.kind());
        })
    }
}

/// Run `f` with a writer for `dest`. A path is written through a temporary
/// file beside it and renamed into place only when `f` succeeded.
pub(crate) fn with_output(
    dest: &Destination,
    f: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    match dest {
        Destination::Stdout => {
            let out = WriteFailure {
                inner: io::stdout().lock(),
                failed: None,
            };
            let mut w = BufWriter::with_capacity(256 * 1024, out);
            let result = f(&mut w).and_then(|()| w.flush().at("-"));
            // A failed write to stdout (the reader went away: `| head`) is
            // the cause, whatever path the exporter was copying.
            match (result, w.get_ref().failed) {
                (Err(_), Some(kind)) => Err(Error::Stdout(kind.into())),
                (r, _) => r,
            }
        }
        Destination::Path(p) => {
            let dir = parent_dir(p);
            let tmp = tempfile::Builder::new()
                .prefix(".rbuild-export-")
                .tempfile_in(&dir)
                .at(&dir)?;
            let mut w = BufWriter::with_capacity(256 * 1024, tmp);
            f(&mut w)?;
            let tmp = w.into_inner().map_err(|e| Error::Io {
                path: p.clone(),
                source: e.into_error(),
            })?;
            tmp.as_file().sync_all().at(p)?;
            tmp.persist(p).map_err(|e| Error::Io {
                path: p.clone(),
                source: e.error,
            })?;
            Ok(())
        }
    }
}

/// The directory containing `p` (`.` for a bare file name).
pub(crate) fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Write `bytes` to `path` atomically (temp file in the same directory, then
/// rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    with_output(&Destination::Path(path.to_path_buf()), |w| {
        w.write_all(bytes).at(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_reader_rejects_wrong_content() {
        let good = Digest::sha256_of(b"abc");
        let mut out = Vec::new();
        VerifyingReader::new(&b"abc"[..], good.clone(), Some(3), "blob")
            .read_to_end(&mut out)
            .expect("good");
        assert_eq!(out, b"abc");
        let err = VerifyingReader::new(&b"abd"[..], good, Some(3), "blob")
            .read_to_end(&mut Vec::new())
            .expect_err("bad");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
