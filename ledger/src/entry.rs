//! Ledger entries and their canonical binary encoding (format version 1).
//!
//! The byte layout is specified in `docs/ledger-format.md`; this module is
//! its reference implementation. Every value has exactly one encoding, and
//! decoding rejects anything else (unknown flag bits, trailing bytes,
//! out-of-range counts), so `encode(decode(b)) == b` for every accepted `b`.

use std::sync::LazyLock;

use crate::LedgerError;
use crate::codes::{AttrKey, EventKind, Outcome, Purpose, RefKind};

/// A 32-byte hash (blake3 entry hashes, SHA-256 Merkle hashes).
pub type Hash = [u8; 32];

/// A tenant id: the 16 bytes of the tenant's UUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantRef(pub [u8; 16]);

/// Format version byte that opens every entry encoding.
pub const ENTRY_FORMAT_VERSION: u8 = 1;
/// Format version byte that opens every draft encoding.
pub const DRAFT_FORMAT_VERSION: u8 = 1;
/// The BLAKE3 `derive_key` context of entry hashes.
pub const ENTRY_HASH_CONTEXT: &str = "smartchat-ledger 2026-11-26 entry hash v1";
/// Most references one entry may carry.
pub const MAX_REFS: usize = 32;
/// Most attributes one entry may carry.
pub const MAX_ATTRS: usize = 64;
/// Longest reference id, in bytes.
pub const MAX_REF_LEN: usize = 64;
/// Length of the fixed entry header (version, seq, time, prev).
pub const ENTRY_HEADER_LEN: usize = 1 + 8 + 8 + 32;

const FLAG_TENANT: u8 = 1;
const FLAG_SUBJECT: u8 = 2;
const FLAG_POLICY: u8 = 4;

/// Who caused the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Actor {
    /// The platform itself (a job, a timer, a migration).
    System,
    /// A member of the tenant's team, by member UUID.
    Member([u8; 16]),
    /// The data subject (the tenant's customer); see the entry's `subject`.
    DataSubject,
    /// Meta (WhatsApp Business Platform).
    Meta,
    /// An external provider (AI provider, sub-processor), by provider code.
    Provider(u16),
}

impl Actor {
    fn code(self) -> u8 {
        match self {
            Self::System => 0,
            Self::Member(_) => 1,
            Self::DataSubject => 2,
            Self::Meta => 3,
            Self::Provider(_) => 4,
        }
    }
}

/// A pointer to a record this entry covers: a kind code and an id or digest (1 to 64 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// What the bytes identify.
    pub kind: RefKind,
    /// The id (a UUID's 16 bytes) or digest (32 bytes); never personal data in clear.
    pub id: Vec<u8>,
}

impl Reference {
    /// A reference by UUID bytes.
    #[must_use]
    pub fn id(kind: RefKind, id: [u8; 16]) -> Self {
        Self {
            kind,
            id: id.to_vec(),
        }
    }

    /// A reference by digest.
    #[must_use]
    pub fn digest(kind: RefKind, digest: Hash) -> Self {
        Self {
            kind,
            id: digest.to_vec(),
        }
    }
}

/// A typed attribute value. There is deliberately no string type: values are
/// codes, numbers, digests or ids, so free text (and with it personal data)
/// cannot enter the ledger through attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttrValue {
    /// A code from a documented vocabulary (type tag 1).
    Code(u32),
    /// An unsigned number (type tag 2).
    U64(u64),
    /// A signed number (type tag 3).
    I64(i64),
    /// A 32-byte digest (type tag 4).
    Digest(Hash),
    /// A 16-byte id, e.g. a UUID (type tag 5).
    Id([u8; 16]),
    /// A boolean (type tag 6).
    Bool(bool),
}

/// Everything the caller knows about an event; the appender adds `seq`, `time` and `prev`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EntryDraft {
    /// The tenant, or `None` for platform-wide events.
    pub tenant: Option<TenantRef>,
    /// What happened.
    pub kind: EventKind,
    /// Who did it.
    pub actor: Actor,
    /// Pseudonym of the data subject concerned (a keyed digest), if any.
    pub subject: Option<Hash>,
    /// Why.
    pub purpose: Purpose,
    /// Digest of the processing policy version in force, if any.
    pub policy_version: Option<Hash>,
    /// Records this entry covers.
    pub refs: Vec<Reference>,
    /// How it ended.
    pub outcome: Outcome,
    /// Kind-specific details.
    pub attrs: Vec<(AttrKey, AttrValue)>,
}

impl EntryDraft {
    /// A draft with no tenant, subject, policy, references or attributes, purpose `NONE`, outcome `SUCCESS`.
    #[must_use]
    pub fn new(kind: EventKind, actor: Actor) -> Self {
        Self {
            tenant: None,
            kind,
            actor,
            subject: None,
            purpose: Purpose::NONE,
            policy_version: None,
            refs: Vec::new(),
            outcome: Outcome::SUCCESS,
            attrs: Vec::new(),
        }
    }

    /// Sets the tenant (UUID bytes).
    #[must_use]
    pub fn tenant(mut self, tenant: [u8; 16]) -> Self {
        self.tenant = Some(TenantRef(tenant));
        self
    }

    /// Sets the subject pseudonym.
    #[must_use]
    pub fn subject(mut self, pseudonym: Hash) -> Self {
        self.subject = Some(pseudonym);
        self
    }

    /// Sets the purpose.
    #[must_use]
    pub fn purpose(mut self, purpose: Purpose) -> Self {
        self.purpose = purpose;
        self
    }

    /// Sets the policy version digest.
    #[must_use]
    pub fn policy_version(mut self, version: Hash) -> Self {
        self.policy_version = Some(version);
        self
    }

    /// Adds a reference.
    #[must_use]
    pub fn reference(mut self, r: Reference) -> Self {
        self.refs.push(r);
        self
    }

    /// Sets the outcome.
    #[must_use]
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Adds an attribute.
    #[must_use]
    pub fn attr(mut self, key: AttrKey, value: AttrValue) -> Self {
        self.attrs.push((key, value));
        self
    }

    /// Checks the format limits (counts, reference lengths).
    ///
    /// # Errors
    /// [`LedgerError::Invalid`] naming the limit exceeded.
    pub fn validate(&self) -> Result<(), LedgerError> {
        if self.refs.len() > MAX_REFS {
            return Err(LedgerError::Invalid(format!(
                "{} references, at most {MAX_REFS}",
                self.refs.len()
            )));
        }
        if self.attrs.len() > MAX_ATTRS {
            return Err(LedgerError::Invalid(format!(
                "{} attributes, at most {MAX_ATTRS}",
                self.attrs.len()
            )));
        }
        for r in &self.refs {
            if r.id.is_empty() || r.id.len() > MAX_REF_LEN {
                return Err(LedgerError::Invalid(format!(
                    "reference id of {} bytes, 1 to {MAX_REF_LEN} allowed",
                    r.id.len()
                )));
            }
        }
        Ok(())
    }

    /// The draft encoding: version byte 1, then the entry body.
    ///
    /// # Errors
    /// [`LedgerError::Invalid`] if the draft exceeds a format limit.
    pub fn encode(&self) -> Result<Vec<u8>, LedgerError> {
        self.validate()?;
        let mut out = Vec::with_capacity(1 + self.body_len());
        out.push(DRAFT_FORMAT_VERSION);
        self.encode_body(&mut out);
        Ok(out)
    }

    /// Decodes [`EntryDraft::encode`] output.
    ///
    /// # Errors
    /// [`LedgerError::Malformed`] on any deviation from the format.
    pub fn decode(bytes: &[u8]) -> Result<Self, LedgerError> {
        let mut r = Reader::new(bytes, "entry draft");
        let v = r.u8()?;
        if v != DRAFT_FORMAT_VERSION {
            return Err(LedgerError::malformed(
                "entry draft",
                format!("unknown version {v}"),
            ));
        }
        let d = decode_body(&mut r)?;
        r.finish()?;
        Ok(d)
    }

    fn body_len(&self) -> usize {
        let mut n = 2 + 1 + 1 + 2 + 1 + 1 + 1;
        n += match self.actor {
            Actor::Member(_) => 16,
            Actor::Provider(_) => 2,
            _ => 0,
        };
        n += self.tenant.map_or(0, |_| 16);
        n += self.subject.map_or(0, |_| 32);
        n += self.policy_version.map_or(0, |_| 32);
        n += self.refs.iter().map(|r| 3 + r.id.len()).sum::<usize>();
        n += self
            .attrs
            .iter()
            .map(|(_, v)| {
                3 + match v {
                    AttrValue::Code(_) => 4,
                    AttrValue::U64(_) | AttrValue::I64(_) => 8,
                    AttrValue::Digest(_) => 32,
                    AttrValue::Id(_) => 16,
                    AttrValue::Bool(_) => 1,
                }
            })
            .sum::<usize>();
        n
    }

    /// Appends the body (everything after the entry header). Limits must have been validated.
    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.kind.0.to_be_bytes());
        out.push(self.actor.code());
        match self.actor {
            Actor::Member(id) => out.extend_from_slice(&id),
            Actor::Provider(p) => out.extend_from_slice(&p.to_be_bytes()),
            Actor::System | Actor::DataSubject | Actor::Meta => {}
        }
        let mut flags = 0u8;
        if self.tenant.is_some() {
            flags |= FLAG_TENANT;
        }
        if self.subject.is_some() {
            flags |= FLAG_SUBJECT;
        }
        if self.policy_version.is_some() {
            flags |= FLAG_POLICY;
        }
        out.push(flags);
        if let Some(t) = self.tenant {
            out.extend_from_slice(&t.0);
        }
        if let Some(s) = self.subject {
            out.extend_from_slice(&s);
        }
        out.extend_from_slice(&self.purpose.0.to_be_bytes());
        if let Some(p) = self.policy_version {
            out.extend_from_slice(&p);
        }
        out.push(self.outcome.0);
        // Counts fit in a byte: validate() bounds them by 32 and 64.
        out.push(u8::try_from(self.refs.len()).unwrap_or(u8::MAX));
        for r in &self.refs {
            out.extend_from_slice(&r.kind.0.to_be_bytes());
            out.push(u8::try_from(r.id.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(&r.id);
        }
        out.push(u8::try_from(self.attrs.len()).unwrap_or(u8::MAX));
        for (k, v) in &self.attrs {
            out.extend_from_slice(&k.0.to_be_bytes());
            match v {
                AttrValue::Code(c) => {
                    out.push(1);
                    out.extend_from_slice(&c.to_be_bytes());
                }
                AttrValue::U64(n) => {
                    out.push(2);
                    out.extend_from_slice(&n.to_be_bytes());
                }
                AttrValue::I64(n) => {
                    out.push(3);
                    out.extend_from_slice(&n.to_be_bytes());
                }
                AttrValue::Digest(d) => {
                    out.push(4);
                    out.extend_from_slice(d);
                }
                AttrValue::Id(i) => {
                    out.push(5);
                    out.extend_from_slice(i);
                }
                AttrValue::Bool(b) => {
                    out.push(6);
                    out.push(u8::from(*b));
                }
            }
        }
    }
}

/// A sequenced ledger entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Position in the log, from 0, without gaps.
    pub seq: u64,
    /// Sequencing time, microseconds since the Unix epoch (UTC); never decreases along the log.
    pub time_micros: i64,
    /// Hash of entry `seq - 1` (all zero for entry 0).
    pub prev: Hash,
    /// The event.
    pub draft: EntryDraft,
}

impl Entry {
    /// The canonical encoding (format version 1).
    ///
    /// # Errors
    /// [`LedgerError::Invalid`] if the draft exceeds a format limit.
    pub fn encode(&self) -> Result<Vec<u8>, LedgerError> {
        self.draft.validate()?;
        let mut out = Vec::with_capacity(ENTRY_HEADER_LEN + self.draft.body_len());
        out.push(ENTRY_FORMAT_VERSION);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time_micros.to_be_bytes());
        out.extend_from_slice(&self.prev);
        self.draft.encode_body(&mut out);
        Ok(out)
    }

    /// Decodes a canonical encoding.
    ///
    /// # Errors
    /// [`LedgerError::Malformed`] on any deviation from the format.
    pub fn decode(bytes: &[u8]) -> Result<Self, LedgerError> {
        let mut r = Reader::new(bytes, "entry");
        let (seq, time_micros, prev) = read_header(&mut r)?;
        let draft = decode_body(&mut r)?;
        r.finish()?;
        Ok(Self {
            seq,
            time_micros,
            prev,
            draft,
        })
    }

    /// The entry hash: BLAKE3 in `derive_key` mode with context [`ENTRY_HASH_CONTEXT`] over the encoding.
    ///
    /// # Errors
    /// [`LedgerError::Invalid`] if the draft exceeds a format limit.
    pub fn hash(&self) -> Result<Hash, LedgerError> {
        Ok(entry_hash(&self.encode()?))
    }
}

static ENTRY_HASHER: LazyLock<blake3::Hasher> =
    LazyLock::new(|| blake3::Hasher::new_derive_key(ENTRY_HASH_CONTEXT));

/// The entry hash of an encoded entry (see [`Entry::hash`]).
#[must_use]
pub fn entry_hash(encoding: &[u8]) -> Hash {
    let mut h = ENTRY_HASHER.clone();
    h.update(encoding);
    *h.finalize().as_bytes()
}

/// The header fields of an entry, read without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    /// Sequence number.
    pub seq: u64,
    /// Time in microseconds.
    pub time_micros: i64,
    /// Previous entry hash.
    pub prev: Hash,
    /// Tenant, if any.
    pub tenant: Option<TenantRef>,
    /// Event kind.
    pub kind: EventKind,
}

/// Checks that `bytes` is a canonical entry encoding, without allocating, and returns its header.
///
/// Accepts exactly the byte strings [`Entry::decode`] accepts.
///
/// # Errors
/// [`LedgerError::Malformed`] on any deviation from the format.
pub fn check_entry(bytes: &[u8]) -> Result<EntryHeader, LedgerError> {
    let mut r = Reader::new(bytes, "entry");
    let (seq, time_micros, prev) = read_header(&mut r)?;
    let kind = EventKind(r.u16()?);
    match r.u8()? {
        0 | 2 | 3 => {}
        1 => {
            r.take(16)?;
        }
        4 => {
            r.take(2)?;
        }
        a => {
            return Err(LedgerError::malformed(
                "entry",
                format!("unknown actor {a}"),
            ));
        }
    }
    let flags = r.u8()?;
    if flags & !(FLAG_TENANT | FLAG_SUBJECT | FLAG_POLICY) != 0 {
        return Err(LedgerError::malformed("entry", "unknown flag bits"));
    }
    let tenant = if flags & FLAG_TENANT != 0 {
        Some(TenantRef(r.array()?))
    } else {
        None
    };
    if flags & FLAG_SUBJECT != 0 {
        r.take(32)?;
    }
    r.take(2)?;
    if flags & FLAG_POLICY != 0 {
        r.take(32)?;
    }
    r.take(1)?;
    let nrefs = r.count(MAX_REFS, "references")?;
    for _ in 0..nrefs {
        r.take(2)?;
        let len = usize::from(r.u8()?);
        if len == 0 || len > MAX_REF_LEN {
            return Err(LedgerError::malformed("entry", "reference length"));
        }
        r.take(len)?;
    }
    let nattrs = r.count(MAX_ATTRS, "attributes")?;
    for _ in 0..nattrs {
        r.take(2)?;
        read_attr_value(&mut r)?;
    }
    r.finish()?;
    Ok(EntryHeader {
        seq,
        time_micros,
        prev,
        tenant,
        kind,
    })
}

fn read_header(r: &mut Reader<'_>) -> Result<(u64, i64, Hash), LedgerError> {
    let v = r.u8()?;
    if v != ENTRY_FORMAT_VERSION {
        return Err(LedgerError::malformed(
            "entry",
            format!("unknown version {v}"),
        ));
    }
    let seq = r.u64()?;
    let time = i64::from_be_bytes(r.array()?);
    let prev = r.array()?;
    Ok((seq, time, prev))
}

fn read_attr_value(r: &mut Reader<'_>) -> Result<AttrValue, LedgerError> {
    Ok(match r.u8()? {
        1 => AttrValue::Code(u32::from_be_bytes(r.array()?)),
        2 => AttrValue::U64(r.u64()?),
        3 => AttrValue::I64(i64::from_be_bytes(r.array()?)),
        4 => AttrValue::Digest(r.array()?),
        5 => AttrValue::Id(r.array()?),
        6 => match r.u8()? {
            0 => AttrValue::Bool(false),
            1 => AttrValue::Bool(true),
            _ => return Err(LedgerError::malformed(r.what, "boolean not 0 or 1")),
        },
        t => {
            return Err(LedgerError::malformed(
                r.what,
                format!("unknown attribute type {t}"),
            ));
        }
    })
}

fn decode_body(r: &mut Reader<'_>) -> Result<EntryDraft, LedgerError> {
    let kind = EventKind(r.u16()?);
    let actor = match r.u8()? {
        0 => Actor::System,
        1 => Actor::Member(r.array()?),
        2 => Actor::DataSubject,
        3 => Actor::Meta,
        4 => Actor::Provider(r.u16()?),
        a => return Err(LedgerError::malformed(r.what, format!("unknown actor {a}"))),
    };
    let flags = r.u8()?;
    if flags & !(FLAG_TENANT | FLAG_SUBJECT | FLAG_POLICY) != 0 {
        return Err(LedgerError::malformed(r.what, "unknown flag bits"));
    }
    let tenant = if flags & FLAG_TENANT != 0 {
        Some(TenantRef(r.array()?))
    } else {
        None
    };
    let subject = if flags & FLAG_SUBJECT != 0 {
        Some(r.array()?)
    } else {
        None
    };
    let purpose = Purpose(r.u16()?);
    let policy_version = if flags & FLAG_POLICY != 0 {
        Some(r.array()?)
    } else {
        None
    };
    let outcome = Outcome(r.u8()?);
    let nrefs = r.count(MAX_REFS, "references")?;
    let mut refs = Vec::with_capacity(nrefs);
    for _ in 0..nrefs {
        let kind = RefKind(r.u16()?);
        let len = usize::from(r.u8()?);
        if len == 0 || len > MAX_REF_LEN {
            return Err(LedgerError::malformed(r.what, "reference length"));
        }
        refs.push(Reference {
            kind,
            id: r.take(len)?.to_vec(),
        });
    }
    let nattrs = r.count(MAX_ATTRS, "attributes")?;
    let mut attrs = Vec::with_capacity(nattrs);
    for _ in 0..nattrs {
        let key = AttrKey(r.u16()?);
        attrs.push((key, read_attr_value(r)?));
    }
    Ok(EntryDraft {
        tenant,
        kind,
        actor,
        subject,
        purpose,
        policy_version,
        refs,
        outcome,
        attrs,
    })
}

/// A bounds-checked cursor over a byte slice.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    pub(crate) what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], LedgerError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| LedgerError::malformed(self.what, "truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], LedgerError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, LedgerError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, LedgerError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, LedgerError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn count(&mut self, max: usize, what: &str) -> Result<usize, LedgerError> {
        let n = usize::from(self.u8()?);
        if n > max {
            return Err(LedgerError::malformed(
                self.what,
                format!("{n} {what}, at most {max}"),
            ));
        }
        Ok(n)
    }

    pub(crate) fn finish(&self) -> Result<(), LedgerError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(LedgerError::malformed(self.what, "trailing bytes"))
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::codes::{DataCategory, ProviderCode};

    pub(crate) fn sample() -> EntryDraft {
        EntryDraft::new(
            EventKind::AI_PROVIDER_CALL,
            Actor::Provider(ProviderCode::OPENAI.0),
        )
        .tenant([7; 16])
        .subject([9; 32])
        .purpose(Purpose::SERVICE_DELIVERY)
        .policy_version([3; 32])
        .reference(Reference::id(RefKind::MESSAGE, [1; 16]))
        .reference(Reference::digest(RefKind::RECORD_DIGEST, [2; 32]))
        .attr(AttrKey::PROVIDER, AttrValue::Code(1))
        .attr(
            AttrKey::DATA_CATEGORY,
            AttrValue::Code(u32::from(DataCategory::MESSAGE_TEXT.0)),
        )
        .attr(AttrKey::TOKENS_IN, AttrValue::U64(1234))
        .attr(AttrKey::SCHEDULED_FOR_MICROS, AttrValue::I64(-5))
        .attr(AttrKey::REQUEST_DIGEST, AttrValue::Digest([4; 32]))
        .attr(AttrKey::KEY_ID, AttrValue::Id([5; 16]))
        .attr(AttrKey::RECORD_COUNT, AttrValue::Bool(true))
    }

    #[test]
    fn draft_and_entry_round_trip() {
        let d = sample();
        let bytes = d.encode().unwrap();
        assert_eq!(EntryDraft::decode(&bytes).unwrap(), d);
        let e = Entry {
            seq: 42,
            time_micros: 1_700_000_000_000_000,
            prev: [8; 32],
            draft: d,
        };
        let enc = e.encode().unwrap();
        assert_eq!(Entry::decode(&enc).unwrap(), e);
        let h = check_entry(&enc).unwrap();
        assert_eq!(h.seq, 42);
        assert_eq!(h.tenant, Some(TenantRef([7; 16])));
        assert_eq!(h.kind, EventKind::AI_PROVIDER_CALL);
        assert_eq!(e.hash().unwrap(), entry_hash(&enc));
        // The hash is domain separated: not plain blake3 of the bytes.
        assert_ne!(entry_hash(&enc), *blake3::hash(&enc).as_bytes());
    }

    #[test]
    fn every_single_byte_change_is_rejected_or_changes_the_value() {
        let e = Entry {
            seq: 1,
            time_micros: 2,
            prev: [0; 32],
            draft: sample(),
        };
        let enc = e.encode().unwrap();
        for i in 0..enc.len() {
            for bit in 0..8 {
                let mut m = enc.clone();
                m[i] ^= 1 << bit;
                let a = Entry::decode(&m);
                let b = check_entry(&m);
                assert_eq!(
                    a.is_ok(),
                    b.is_ok(),
                    "decode and check disagree at byte {i}"
                );
                if let Ok(d) = a {
                    assert_ne!(d, e);
                    assert_eq!(d.encode().unwrap(), m, "non-canonical encoding accepted");
                }
            }
        }
        for cut in 0..enc.len() {
            assert!(Entry::decode(&enc[..cut]).is_err());
            assert!(check_entry(&enc[..cut]).is_err());
        }
        let mut long = enc.clone();
        long.push(0);
        assert!(Entry::decode(&long).is_err());
    }

    /// Known-answer vector, computed independently with
    /// `b3sum --derive-key "smartchat-ledger 2026-11-26 entry hash v1"` (also in the format doc).
    #[test]
    fn entry_hash_known_answer() {
        let e = Entry {
            seq: 0,
            time_micros: 5,
            prev: [0; 32],
            draft: EntryDraft::new(EventKind::MESSAGE_RECEIVED, Actor::System),
        };
        let enc = e.encode().unwrap();
        assert_eq!(
            hex::encode(&enc),
            "0100000000000000000000000000000005\
             0000000000000000000000000000000000000000000000000000000000000000\
             006400000000000000"
        );
        assert_eq!(
            hex::encode(e.hash().unwrap()),
            "00cd0cbf05731d0de18d5a62eedd2f345f7456c0675739165fe3327c1a4cd7ef"
        );
    }

    #[test]
    fn limits_are_enforced() {
        let mut d = EntryDraft::new(EventKind::LEAD_CAPTURED, Actor::System);
        d.refs = vec![
            Reference {
                kind: RefKind::LEAD,
                id: vec![]
            };
            1
        ];
        assert!(d.encode().is_err());
        d.refs = vec![
            Reference {
                kind: RefKind::LEAD,
                id: vec![1; 65]
            };
            1
        ];
        assert!(d.encode().is_err());
        d.refs = vec![Reference::id(RefKind::LEAD, [1; 16]); 33];
        assert!(d.encode().is_err());
        d.refs.clear();
        d.attrs = vec![(AttrKey::BYTES, AttrValue::U64(1)); 65];
        assert!(d.encode().is_err());
    }

    #[test]
    fn codes_have_unique_values_and_names() {
        let mut seen = std::collections::HashSet::new();
        for k in EventKind::ALL {
            assert!(seen.insert(k.0));
            assert!(k.name().is_some());
        }
        assert!(EventKind(9999).name().is_none());
        assert_eq!(EventKind::MESSAGE_RECEIVED.to_string(), "message_received");
    }
}
