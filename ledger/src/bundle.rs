//! The export bundle: one binary file with the public key, the signed
//! checkpoints (with consistency proofs between them) and length-prefixed
//! entries with their hashes. Layout in `docs/ledger-format.md` section 5.

use std::io::{self, Read, Write};

use crate::{Hash, LedgerError};

/// The 8 magic bytes opening a bundle.
pub const BUNDLE_MAGIC: &[u8; 8] = b"SCLEDGER";
/// The bundle format version.
pub const BUNDLE_VERSION: u8 = 1;
/// The 8 magic bytes of the trailer.
pub const TRAILER_MAGIC: &[u8; 8] = b"SCLEDEND";
/// Largest entry accepted (entries are at most a few KiB; this bounds allocations).
pub const MAX_ENTRY_LEN: u32 = 64 * 1024;
const MAX_CHECKPOINTS: u32 = 10_000_000;
const MAX_NOTE_LEN: u32 = 64 * 1024;

/// A checkpoint in a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleCheckpoint {
    /// The signed note.
    pub note: String,
    /// Consistency proof from the previous checkpoint in the bundle (empty for the first one
    /// and for equal sizes).
    pub proof_from_previous: Vec<Hash>,
}

/// Everything before the entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleHeader {
    /// The log's C2SP verifier key.
    pub vkey: String,
    /// First sequence number in the bundle.
    pub from: u64,
    /// Sequence number after the last one in the bundle.
    pub to: u64,
    /// Hashes of the complete subtrees of the first `from` leaves (`merkle::tree_root_ids(from)`).
    pub prefix: Vec<Hash>,
    /// Checkpoints by non-decreasing size.
    pub checkpoints: Vec<BundleCheckpoint>,
}

fn put_len(w: &mut impl Write, n: usize, max: u32) -> Result<(), LedgerError> {
    let n = u32::try_from(n)
        .ok()
        .filter(|&n| n <= max)
        .ok_or_else(|| LedgerError::Invalid(format!("length {n} over {max}")))?;
    w.write_all(&n.to_be_bytes())?;
    Ok(())
}

/// Writes a bundle.
#[derive(Debug)]
pub struct BundleWriter<W: Write> {
    w: io::BufWriter<W>,
    remaining: u64,
    written: u64,
}

impl<W: Write> BundleWriter<W> {
    /// Writes the header.
    ///
    /// # Errors
    /// [`LedgerError::Io`], or [`LedgerError::Invalid`] for a header over the format limits.
    pub fn new(inner: W, h: &BundleHeader) -> Result<Self, LedgerError> {
        let mut w = io::BufWriter::with_capacity(1 << 20, inner);
        if h.from > h.to || h.prefix.len() > 64 {
            return Err(LedgerError::Invalid("bundle range or prefix".into()));
        }
        w.write_all(BUNDLE_MAGIC)?;
        w.write_all(&[BUNDLE_VERSION])?;
        let vkey = h.vkey.as_bytes();
        let vlen =
            u16::try_from(vkey.len()).map_err(|_| LedgerError::Invalid("vkey length".into()))?;
        w.write_all(&vlen.to_be_bytes())?;
        w.write_all(vkey)?;
        w.write_all(&h.from.to_be_bytes())?;
        w.write_all(&h.to.to_be_bytes())?;
        w.write_all(&[u8::try_from(h.prefix.len()).unwrap_or(u8::MAX)])?;
        for p in &h.prefix {
            w.write_all(p)?;
        }
        put_len(&mut w, h.checkpoints.len(), MAX_CHECKPOINTS)?;
        for c in &h.checkpoints {
            put_len(&mut w, c.note.len(), MAX_NOTE_LEN)?;
            w.write_all(c.note.as_bytes())?;
            let n = u8::try_from(c.proof_from_previous.len())
                .ok()
                .filter(|&n| n <= 128)
                .ok_or_else(|| LedgerError::Invalid("proof length".into()))?;
            w.write_all(&[n])?;
            for p in &c.proof_from_previous {
                w.write_all(p)?;
            }
        }
        Ok(Self {
            w,
            remaining: h.to - h.from,
            written: 0,
        })
    }

    /// Writes the next entry (its canonical bytes and its hash).
    ///
    /// # Errors
    /// [`LedgerError::Io`], or [`LedgerError::Invalid`] past the header's range.
    pub fn write_entry(&mut self, bytes: &[u8], hash: &Hash) -> Result<(), LedgerError> {
        if self.remaining == 0 {
            return Err(LedgerError::Invalid(
                "more entries than the header's range".into(),
            ));
        }
        put_len(&mut self.w, bytes.len(), MAX_ENTRY_LEN)?;
        self.w.write_all(bytes)?;
        self.w.write_all(hash)?;
        self.remaining -= 1;
        self.written += 1;
        Ok(())
    }

    /// Writes the trailer, flushes and returns the inner writer.
    ///
    /// # Errors
    /// [`LedgerError::Io`], or [`LedgerError::Invalid`] if entries are missing.
    pub fn finish(mut self) -> Result<W, LedgerError> {
        if self.remaining != 0 {
            return Err(LedgerError::Invalid(format!(
                "{} entries missing",
                self.remaining
            )));
        }
        self.w.write_all(TRAILER_MAGIC)?;
        self.w.write_all(&self.written.to_be_bytes())?;
        self.w
            .into_inner()
            .map_err(|e| LedgerError::Io(e.into_error()))
    }
}

/// A batch of raw entries read from a bundle or a database.
#[derive(Debug, Default)]
pub struct EntryBatch {
    /// Concatenated entry bytes.
    pub data: Vec<u8>,
    /// One item per entry, in order.
    pub items: Vec<BatchItem>,
    /// Set when the entry after the last item could not be read (named by position).
    pub error: Option<String>,
}

/// One entry of an [`EntryBatch`].
#[derive(Clone, Copy, Debug)]
pub struct BatchItem {
    /// Offset into `data`.
    pub off: usize,
    /// Length in `data`.
    pub len: usize,
    /// The stored hash.
    pub hash: Hash,
    /// Database columns stored beside the entry, to compare with its contents.
    pub cols: Option<DbColumns>,
}

/// The columns of `ledger_entries` that duplicate entry fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbColumns {
    /// Column `seq`.
    pub seq: u64,
    /// Column `tenant_id`.
    pub tenant: Option<[u8; 16]>,
    /// Column `kind`.
    pub kind: u16,
    /// Column `time_micros`.
    pub time_micros: i64,
}

impl EntryBatch {
    /// Empties the batch, keeping allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.items.clear();
        self.error = None;
    }

    /// The bytes of item `i`.
    #[must_use]
    pub fn bytes(&self, item: &BatchItem) -> &[u8] {
        &self.data[item.off..item.off + item.len]
    }
}

/// Reads a bundle: first the header, then entries in batches.
#[derive(Debug)]
pub struct BundleReader<R: Read> {
    r: io::BufReader<R>,
    header: BundleHeader,
    remaining: u64,
    read: u64,
    failed: bool,
}

fn read_array<const N: usize>(r: &mut impl Read) -> io::Result<[u8; N]> {
    let mut a = [0u8; N];
    r.read_exact(&mut a)?;
    Ok(a)
}

fn io_or_malformed(e: io::Error) -> LedgerError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        LedgerError::malformed("bundle", "truncated header")
    } else {
        LedgerError::Io(e)
    }
}

impl<R: Read> BundleReader<R> {
    /// Reads and parses the header.
    ///
    /// # Errors
    /// [`LedgerError::Malformed`] for a malformed header, [`LedgerError::Io`].
    pub fn new(inner: R) -> Result<Self, LedgerError> {
        let mut r = io::BufReader::with_capacity(1 << 20, inner);
        let header = Self::read_header(&mut r).map_err(io_or_malformed)??;
        Ok(Self {
            r,
            remaining: header.to - header.from,
            header,
            read: 0,
            failed: false,
        })
    }

    fn read_header(r: &mut impl Read) -> io::Result<Result<BundleHeader, LedgerError>> {
        let bad = |d: &str| Ok(Err(LedgerError::malformed("bundle", d)));
        if &read_array::<8>(r)? != BUNDLE_MAGIC {
            return bad("not a ledger bundle");
        }
        if read_array::<1>(r)?[0] != BUNDLE_VERSION {
            return bad("unknown bundle version");
        }
        let vlen = u16::from_be_bytes(read_array(r)?);
        let mut vkey = vec![0u8; usize::from(vlen)];
        r.read_exact(&mut vkey)?;
        let Ok(vkey) = String::from_utf8(vkey) else {
            return bad("vkey not UTF-8");
        };
        let from = u64::from_be_bytes(read_array(r)?);
        let to = u64::from_be_bytes(read_array(r)?);
        if from > to {
            return bad("range");
        }
        let np = read_array::<1>(r)?[0];
        if np > 64 {
            return bad("prefix length");
        }
        let mut prefix = Vec::with_capacity(usize::from(np));
        for _ in 0..np {
            prefix.push(read_array::<32>(r)?);
        }
        let nc = u32::from_be_bytes(read_array(r)?);
        if nc > MAX_CHECKPOINTS {
            return bad("checkpoint count");
        }
        let mut checkpoints = Vec::new();
        for _ in 0..nc {
            let len = u32::from_be_bytes(read_array(r)?);
            if len > MAX_NOTE_LEN {
                return bad("note length");
            }
            let mut note = vec![0u8; len as usize];
            r.read_exact(&mut note)?;
            let Ok(note) = String::from_utf8(note) else {
                return bad("note not UTF-8");
            };
            let n = read_array::<1>(r)?[0];
            if n > 128 {
                return bad("proof length");
            }
            let mut proof = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                proof.push(read_array::<32>(r)?);
            }
            checkpoints.push(BundleCheckpoint {
                note,
                proof_from_previous: proof,
            });
        }
        Ok(Ok(BundleHeader {
            vkey,
            from,
            to,
            prefix,
            checkpoints,
        }))
    }

    /// The header.
    #[must_use]
    pub fn header(&self) -> &BundleHeader {
        &self.header
    }

    /// Reads up to `max` entries into `batch` (cleared first). Returns `false` once all entries
    /// and the trailer have been read or reading failed; a read failure is reported in
    /// `batch.error`, for the entry at position `from + entries read so far`.
    ///
    /// # Errors
    /// [`LedgerError::Io`] for I/O errors other than an unexpected end of file.
    pub fn read_batch(&mut self, max: usize, batch: &mut EntryBatch) -> Result<bool, LedgerError> {
        batch.clear();
        if self.failed {
            return Ok(false);
        }
        while batch.items.len() < max && self.remaining > 0 {
            match self.read_one(batch) {
                Ok(Ok(())) => {
                    self.remaining -= 1;
                    self.read += 1;
                }
                Ok(Err(what)) => {
                    batch.error = Some(what);
                    self.failed = true;
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    batch.error = Some("bundle ends in the middle of this entry".into());
                    self.failed = true;
                    return Ok(false);
                }
                Err(e) => return Err(LedgerError::Io(e)),
            }
        }
        if self.remaining == 0 {
            // Trailer: magic and entry count, then end of file.
            let mut t = [0u8; 16];
            let ok = match self.r.read_exact(&mut t) {
                Ok(()) => {
                    let mut extra = [0u8; 1];
                    t[..8] == TRAILER_MAGIC[..]
                        && u64::from_be_bytes([
                            t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15],
                        ]) == self.read
                        && matches!(self.r.read(&mut extra), Ok(0))
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => false,
                Err(e) => return Err(LedgerError::Io(e)),
            };
            self.failed = true;
            if !ok {
                batch.error =
                    Some("bad trailer: entries missing, extra or bundle truncated".into());
            }
            return Ok(false);
        }
        Ok(true)
    }

    fn read_one(&mut self, batch: &mut EntryBatch) -> io::Result<Result<(), String>> {
        let len = u32::from_be_bytes(read_array(&mut self.r)?);
        if len > MAX_ENTRY_LEN || len == 0 {
            return Ok(Err(format!("entry length {len} out of range")));
        }
        let off = batch.data.len();
        batch.data.resize(off + len as usize, 0);
        self.r.read_exact(&mut batch.data[off..])?;
        let hash = read_array::<32>(&mut self.r)?;
        batch.items.push(BatchItem {
            off,
            len: len as usize,
            hash,
            cols: None,
        });
        Ok(Ok(()))
    }
}

/// An entry's bytes and stored hash.
pub type RawEntry = (Vec<u8>, Hash);

/// Parses a whole bundle held in memory (for tests and tools): header and `(bytes, hash)` pairs.
///
/// # Errors
/// [`LedgerError::Malformed`] for any deviation.
pub fn parse_bundle(bytes: &[u8]) -> Result<(BundleHeader, Vec<RawEntry>), LedgerError> {
    let mut rd = BundleReader::new(bytes)?;
    let header = rd.header().clone();
    let mut out = Vec::new();
    let mut batch = EntryBatch::default();
    loop {
        let more = rd.read_batch(4096, &mut batch)?;
        for it in &batch.items {
            out.push((batch.bytes(it).to_vec(), it.hash));
        }
        if let Some(e) = batch.error.take() {
            return Err(LedgerError::malformed("bundle", e));
        }
        if !more {
            break;
        }
    }
    Ok((header, out))
}

/// Re-serialises a parsed bundle (for tests and tools that build bundles by hand).
///
/// # Errors
/// [`LedgerError::Invalid`] if the entries do not match the header's range.
pub fn write_bundle(
    header: &BundleHeader,
    entries: &[(Vec<u8>, Hash)],
) -> Result<Vec<u8>, LedgerError> {
    let mut w = BundleWriter::new(Vec::new(), header)?;
    for (b, h) in entries {
        w.write_entry(b, h)?;
    }
    w.finish()
}
