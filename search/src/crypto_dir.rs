//! [`EncryptedDirectory`]: a tantivy [`Directory`] whose every file is
//! framed XChaCha20-Poly1305 under a key derived from the tenant key.
//!
//! The format is described precisely in the crate README (section
//! "Encrypted directory format"). Files are decrypted whole when first opened
//! and kept in memory until tantivy deletes them; see the README for why.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use tantivy::directory::error::{DeleteError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    AntiCallToken, Directory, FileHandle, OwnedBytes, TerminatingWrite, WatchCallback, WatchHandle,
    WritePtr,
};

/// Plaintext bytes per chunk.
pub const CHUNK_LEN: usize = 64 * 1024;
/// Magic bytes at the start of every encrypted file (format version 1).
pub const MAGIC: &[u8; 8] = b"SCSIDX01";
/// Random per-file nonce prefix length; the last 4 nonce bytes are the chunk index.
pub const NONCE_PREFIX_LEN: usize = 20;
/// Header: magic then nonce prefix.
pub const HEADER_LEN: usize = MAGIC.len() + NONCE_PREFIX_LEN;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// blake3 `derive_key` context for the file key.
const KEY_CONTEXT: &str = "smartchat-search 2026-11 encrypted directory file key v1";

/// A 32-byte tenant search key. Debug never shows the bytes.
#[derive(Clone)]
pub struct SearchKey([u8; 32]);

impl SearchKey {
    /// Wraps 32 key bytes given by the caller (one key per tenant).
    pub fn new(bytes: [u8; 32]) -> Self {
        SearchKey(bytes)
    }
}

impl fmt::Debug for SearchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SearchKey(<redacted>)")
    }
}

/// Why a file failed to decrypt. Kept inside an `io::Error` so tantivy can carry it.
#[derive(Debug, thiserror::Error)]
#[error("encrypted index file failed authentication or framing")]
pub struct CryptoFailure;

struct Inner {
    root: PathBuf,
    cipher: XChaCha20Poly1305,
    cache: RwLock<HashMap<PathBuf, OwnedBytes>>,
    crypto_failures: AtomicU64,
}

/// A tantivy [`Directory`] rooted at one tenant's index folder that encrypts
/// every file it writes and authenticates every file it reads.
///
/// `watch` returns a no-op handle: readers use `ReloadPolicy::Manual` and the
/// [`crate::IndexManager`] reloads them after each commit. Locks use tantivy's
/// default lock files (created with `create_new`, removed on release); the
/// manager removes stale lock files left by a crash when it opens the index,
/// which is sound because one manager per process owns the index folders.
#[derive(Clone)]
pub struct EncryptedDirectory {
    inner: Arc<Inner>,
}

impl fmt::Debug for EncryptedDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedDirectory")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

fn lock_poisoned() -> io::Error {
    io::Error::other("encrypted directory cache lock poisoned")
}

impl EncryptedDirectory {
    /// Opens (creating if needed) the folder `root` with the tenant key.
    pub fn open(root: &Path, key: &SearchKey) -> io::Result<Self> {
        fs::create_dir_all(root)?;
        let file_key = blake3::derive_key(KEY_CONTEXT, &key.0);
        let cipher = XChaCha20Poly1305::new((&file_key).into());
        Ok(EncryptedDirectory {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                cipher,
                cache: RwLock::new(HashMap::new()),
                crypto_failures: AtomicU64::new(0),
            }),
        })
    }

    /// How many files failed authentication since this directory was opened.
    pub fn crypto_failures(&self) -> u64 {
        self.inner.crypto_failures.load(Ordering::Relaxed)
    }

    /// Reads and decrypts a file without caching it (used by tests and tools).
    pub fn decrypt_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let full = self.resolve(path)?;
        let data = fs::read(full)?;
        self.decrypt(path, &data)
    }

    fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        let mut components = path.components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(_)), None) => Ok(self.inner.root.join(path)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "index file names must be plain names",
            )),
        }
    }

    fn decrypt(&self, path: &Path, data: &[u8]) -> io::Result<Vec<u8>> {
        decrypt_bytes(&self.inner.cipher, file_name(path), data).inspect_err(|_| {
            self.inner.crypto_failures.fetch_add(1, Ordering::Relaxed);
        })
    }

    fn read_decrypted(&self, path: &Path) -> Result<OwnedBytes, OpenReadError> {
        let full = self
            .resolve(path)
            .map_err(|e| OpenReadError::wrap_io_error(e, path.to_path_buf()))?;
        let data = match fs::read(&full) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(OpenReadError::FileDoesNotExist(path.to_path_buf()));
            }
            Err(e) => return Err(OpenReadError::wrap_io_error(e, path.to_path_buf())),
        };
        let plain = self
            .decrypt(path, &data)
            .map_err(|e| OpenReadError::wrap_io_error(e, path.to_path_buf()))?;
        Ok(OwnedBytes::new(plain))
    }
}

fn file_name(path: &Path) -> &[u8] {
    path.as_os_str().as_encoded_bytes()
}

fn nonce(prefix: &[u8; NONCE_PREFIX_LEN], index: u32) -> XNonce {
    let mut n = [0u8; 24];
    n[..NONCE_PREFIX_LEN].copy_from_slice(prefix);
    n[NONCE_PREFIX_LEN..].copy_from_slice(&index.to_be_bytes());
    XNonce::from(n)
}

/// AAD = MAGIC ‖ final flag (1 byte) ‖ chunk index (u32 BE) ‖ name length (u32 BE) ‖ name.
fn aad(name: &[u8], index: u32, last: bool) -> Vec<u8> {
    let mut aad = Vec::with_capacity(MAGIC.len() + 9 + name.len());
    aad.extend_from_slice(MAGIC);
    aad.push(u8::from(last));
    aad.extend_from_slice(&index.to_be_bytes());
    aad.extend_from_slice(&(name.len() as u32).to_be_bytes());
    aad.extend_from_slice(name);
    aad
}

fn crypto_error() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, CryptoFailure)
}

fn encrypt_chunk(
    cipher: &XChaCha20Poly1305,
    prefix: &[u8; NONCE_PREFIX_LEN],
    name: &[u8],
    index: u32,
    last: bool,
    plain: &[u8],
) -> io::Result<Vec<u8>> {
    let aad = aad(name, index, last);
    cipher
        .encrypt(
            &nonce(prefix, index),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .map_err(|_| crypto_error())
}

/// Decrypts a whole file image. Any framing or authentication problem is
/// reported as an `InvalidData` error carrying [`CryptoFailure`].
pub(crate) fn decrypt_bytes(
    cipher: &XChaCha20Poly1305,
    name: &[u8],
    data: &[u8],
) -> io::Result<Vec<u8>> {
    if data.len() < HEADER_LEN + TAG_LEN || &data[..MAGIC.len()] != MAGIC {
        return Err(crypto_error());
    }
    let mut prefix = [0u8; NONCE_PREFIX_LEN];
    prefix.copy_from_slice(&data[MAGIC.len()..HEADER_LEN]);
    let body = &data[HEADER_LEN..];
    let framed = CHUNK_LEN + TAG_LEN;
    let chunks = body.len().div_ceil(framed);
    let mut out = Vec::with_capacity(body.len());
    for (i, chunk) in body.chunks(framed).enumerate() {
        let index = u32::try_from(i).map_err(|_| crypto_error())?;
        let last = i + 1 == chunks;
        if chunk.len() < TAG_LEN || (!last && chunk.len() != framed) {
            return Err(crypto_error());
        }
        let aad = aad(name, index, last);
        let plain = cipher
            .decrypt(
                &nonce(&prefix, index),
                Payload {
                    msg: chunk,
                    aad: &aad,
                },
            )
            .map_err(|_| crypto_error())?;
        out.extend_from_slice(&plain);
    }
    Ok(out)
}

/// Encrypts a whole buffer into the file format (used for atomic writes).
fn encrypt_bytes(cipher: &XChaCha20Poly1305, name: &[u8], plain: &[u8]) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; NONCE_PREFIX_LEN];
    rand::thread_rng().fill_bytes(&mut prefix);
    let mut out =
        Vec::with_capacity(HEADER_LEN + plain.len() + TAG_LEN * (1 + plain.len() / CHUNK_LEN));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&prefix);
    let chunks = plain.len().div_ceil(CHUNK_LEN).max(1);
    for i in 0..chunks {
        let start = i * CHUNK_LEN;
        let end = (start + CHUNK_LEN).min(plain.len());
        let index = u32::try_from(i).map_err(|_| io::Error::other("index file too large"))?;
        out.extend_from_slice(&encrypt_chunk(
            cipher,
            &prefix,
            name,
            index,
            i + 1 == chunks,
            &plain[start..end],
        )?);
    }
    Ok(out)
}

/// Streams plaintext into encrypted chunks; the final chunk is written on terminate.
struct EncryptingWriter {
    file: File,
    cipher: XChaCha20Poly1305,
    name: Vec<u8>,
    prefix: [u8; NONCE_PREFIX_LEN],
    buf: Vec<u8>,
    next_index: u32,
    terminated: bool,
}

impl EncryptingWriter {
    fn emit(&mut self, last: bool) -> io::Result<()> {
        let sealed = encrypt_chunk(
            &self.cipher,
            &self.prefix,
            &self.name,
            self.next_index,
            last,
            &self.buf,
        )?;
        self.file.write_all(&sealed)?;
        self.buf.clear();
        self.next_index = self
            .next_index
            .checked_add(1)
            .ok_or_else(|| io::Error::other("index file too large"))?;
        Ok(())
    }
}

impl Write for EncryptingWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.terminated {
            return Err(io::Error::other("write after terminate"));
        }
        let mut rest = data;
        while !rest.is_empty() {
            if self.buf.len() == CHUNK_LEN {
                // More data follows, so this full chunk is not the last one.
                self.emit(false)?;
            }
            let take = (CHUNK_LEN - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks are sealed only when full or on terminate; flushing the file
        // itself is all that can be done here.
        self.file.flush()
    }
}

impl TerminatingWrite for EncryptingWriter {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        if self.terminated {
            return Ok(());
        }
        self.emit(true)?;
        self.terminated = true;
        self.file.flush()?;
        self.file.sync_data()
    }
}

impl Directory for EncryptedDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        {
            let cache =
                self.inner.cache.read().map_err(|_| {
                    OpenReadError::wrap_io_error(lock_poisoned(), path.to_path_buf())
                })?;
            if let Some(bytes) = cache.get(path) {
                return Ok(Arc::new(bytes.clone()));
            }
        }
        let bytes = self.read_decrypted(path)?;
        let mut cache = self
            .inner
            .cache
            .write()
            .map_err(|_| OpenReadError::wrap_io_error(lock_poisoned(), path.to_path_buf()))?;
        let bytes = cache.entry(path.to_path_buf()).or_insert(bytes).clone();
        Ok(Arc::new(bytes))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        let full = self.resolve(path).map_err(|e| DeleteError::IoError {
            io_error: Arc::new(e),
            filepath: path.to_path_buf(),
        })?;
        if let Ok(mut cache) = self.inner.cache.write() {
            cache.remove(path);
        }
        match fs::remove_file(full) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(DeleteError::FileDoesNotExist(path.to_path_buf()))
            }
            Err(e) => Err(DeleteError::IoError {
                io_error: Arc::new(e),
                filepath: path.to_path_buf(),
            }),
        }
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        let full = self
            .resolve(path)
            .map_err(|e| OpenReadError::wrap_io_error(e, path.to_path_buf()))?;
        full.try_exists()
            .map_err(|e| OpenReadError::wrap_io_error(e, path.to_path_buf()))
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        let wrap = |e: io::Error| OpenWriteError::wrap_io_error(e, path.to_path_buf());
        let full = self.resolve(path).map_err(wrap)?;
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&full) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(OpenWriteError::FileAlreadyExists(path.to_path_buf()));
            }
            Err(e) => return Err(wrap(e)),
        };
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        rand::thread_rng().fill_bytes(&mut prefix);
        file.write_all(MAGIC).map_err(wrap)?;
        file.write_all(&prefix).map_err(wrap)?;
        let writer = EncryptingWriter {
            file,
            cipher: self.inner.cipher.clone(),
            name: file_name(path).to_vec(),
            prefix,
            buf: Vec::with_capacity(CHUNK_LEN),
            next_index: 0,
            terminated: false,
        };
        Ok(BufWriter::new(Box::new(writer)))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let full = self
            .resolve(path)
            .map_err(|e| OpenReadError::wrap_io_error(e, path.to_path_buf()))?;
        let mut data = Vec::new();
        match File::open(&full).and_then(|mut f| f.read_to_end(&mut data)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(OpenReadError::FileDoesNotExist(path.to_path_buf()));
            }
            Err(e) => return Err(OpenReadError::wrap_io_error(e, path.to_path_buf())),
        }
        self.decrypt(path, &data)
            .map_err(|e| OpenReadError::wrap_io_error(e, path.to_path_buf()))
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let full = self.resolve(path)?;
        let sealed = encrypt_bytes(&self.inner.cipher, file_name(path), data)?;
        let mut suffix = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut suffix);
        let tmp_name = format!(".tmp-{}", u64::from_be_bytes(suffix));
        let tmp = self.inner.root.join(tmp_name);
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            file.write_all(&sealed)?;
            file.sync_all()?;
            fs::rename(&tmp, &full)?;
            self.sync_directory()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn sync_directory(&self) -> io::Result<()> {
        File::open(&self.inner.root)?.sync_all()
    }

    fn watch(&self, _watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        Ok(WatchHandle::empty())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn dir() -> (tempfile::TempDir, EncryptedDirectory) {
        let tmp = tempfile::tempdir().unwrap();
        let d = EncryptedDirectory::open(tmp.path(), &SearchKey::new([7; 32])).unwrap();
        (tmp, d)
    }

    fn write(d: &EncryptedDirectory, name: &str, data: &[u8]) {
        let mut w = d.open_write(Path::new(name)).unwrap();
        w.write_all(data).unwrap();
        w.terminate().unwrap();
    }

    #[test]
    fn round_trips_sizes_around_chunk_boundaries() {
        let (_t, d) = dir();
        for len in [
            0,
            1,
            CHUNK_LEN - 1,
            CHUNK_LEN,
            CHUNK_LEN + 1,
            3 * CHUNK_LEN + 17,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let name = format!("f{len}");
            write(&d, &name, &data);
            let handle = d.get_file_handle(Path::new(&name)).unwrap();
            assert_eq!(handle.len(), len);
            assert_eq!(handle.read_bytes(0..len).unwrap().as_slice(), &data[..]);
            d.atomic_write(Path::new(&format!("a{len}")), &data)
                .unwrap();
            assert_eq!(d.atomic_read(Path::new(&format!("a{len}"))).unwrap(), data);
        }
    }

    #[test]
    fn write_once_and_delete_semantics() {
        let (_t, d) = dir();
        write(&d, "x", b"hello");
        assert!(matches!(
            d.open_write(Path::new("x")),
            Err(OpenWriteError::FileAlreadyExists(_))
        ));
        assert!(d.exists(Path::new("x")).unwrap());
        d.delete(Path::new("x")).unwrap();
        assert!(!d.exists(Path::new("x")).unwrap());
        assert!(matches!(
            d.delete(Path::new("x")),
            Err(DeleteError::FileDoesNotExist(_))
        ));
        assert!(matches!(
            d.get_file_handle(Path::new("x")),
            Err(OpenReadError::FileDoesNotExist(_))
        ));
        assert!(d.open_write(Path::new("../escape")).is_err());
    }

    #[test]
    fn wrong_key_tamper_truncation_and_renaming_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let d = EncryptedDirectory::open(tmp.path(), &SearchKey::new([1; 32])).unwrap();
        let data = vec![42u8; 2 * CHUNK_LEN + 5];
        write(&d, "seg", &data);
        let raw = fs::read(tmp.path().join("seg")).unwrap();

        let other = EncryptedDirectory::open(tmp.path(), &SearchKey::new([2; 32])).unwrap();
        assert!(other.get_file_handle(Path::new("seg")).is_err());
        assert_eq!(other.crypto_failures(), 1);

        // Drop the last chunk: the new last chunk was sealed as non-final.
        let truncated = &raw[..HEADER_LEN + 2 * (CHUNK_LEN + TAG_LEN)];
        assert!(decrypt_bytes(&d.inner.cipher, b"seg", truncated).is_err());
        // Any flipped byte is refused.
        for pos in [0, HEADER_LEN - 1, HEADER_LEN + 3, raw.len() - 1] {
            let mut bad = raw.clone();
            bad[pos] ^= 1;
            assert!(decrypt_bytes(&d.inner.cipher, b"seg", &bad).is_err());
        }
        // The file name is bound: the same bytes under another name fail.
        assert!(decrypt_bytes(&d.inner.cipher, b"other", &raw).is_err());
        assert!(decrypt_bytes(&d.inner.cipher, b"seg", &raw).is_ok());
    }

    #[test]
    fn no_plaintext_on_disk() {
        let (t, d) = dir();
        write(&d, "f", b"secretmarker secretmarker");
        d.atomic_write(Path::new("meta.json"), b"secretmarker")
            .unwrap();
        for entry in fs::read_dir(t.path()).unwrap() {
            let bytes = fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(12).any(|w| w == b"secretmarker"));
        }
    }
}
