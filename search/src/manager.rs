//! [`IndexManager`]: one per process, one writer per tenant index.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tantivy::collector::{Count, TopDocs};
use tantivy::schema::Value;
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
};

use crate::crypto_dir::{EncryptedDirectory, SearchKey};
use crate::error::SearchError;
use crate::model::{
    Direction, DocMessage, SearchHit, SearchQuery, SearchResults, Snippet, SortOrder,
};
use crate::query::{Deadline, build};
use crate::schema::{Fields, build_schema};
use crate::tokenizer::{TOKENIZER_NAME, analyzer, pairs};

/// Tunables of the manager.
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// Writer heap budget per tenant (bytes, ≥ 15 MB per thread).
    pub writer_memory_bytes: usize,
    /// Indexing threads per writer.
    pub writer_threads: usize,
    /// Time budget per search; past it results are partial (`truncated`).
    pub search_time_budget: Duration,
    /// Characters per snippet.
    pub snippet_chars: usize,
    /// Run first on a thread of its own that then creates each writer, so that the threads
    /// tantivy starts for it inherit what it set (the server lowers them below the webhook,
    /// whichever thread first needs the writer). `None`: created on the calling thread.
    pub writer_setup: Option<fn()>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            writer_memory_bytes: 64_000_000,
            writer_threads: 1,
            search_time_budget: Duration::from_millis(250),
            snippet_chars: 160,
            writer_setup: None,
        }
    }
}

/// What [`IndexManager::open_or_reset`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenOutcome {
    /// An existing index opened; replay from `last_applied_seq + 1`.
    Opened {
        /// The sequence recorded by the last commit, if any.
        last_applied_seq: Option<u64>,
    },
    /// No index existed; an empty one was created. The caller rebuilds.
    Created,
    /// The index was unreadable (wrong key, tampering, missing files) and was
    /// removed; an empty one was created. The caller must rebuild.
    Reset {
        /// What was wrong (no personal data).
        reason: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Payload {
    last_applied_seq: u64,
}

struct TenantIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<Option<IndexWriter>>,
    fields: Fields,
    dir: EncryptedDirectory,
    path: PathBuf,
    writer_setup: Option<fn()>,
}

/// Owns the per-tenant indexes under one root folder.
///
/// Tenants are identified by plain ids (`[A-Za-z0-9_-]{1,64}`), which name
/// their folder under the root; no method accepts a path.
pub struct IndexManager {
    root: PathBuf,
    config: ManagerConfig,
    tenants: RwLock<HashMap<String, Arc<TenantIndex>>>,
}

impl std::fmt::Debug for IndexManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexManager")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn validate_tenant(tenant: &str) -> Result<(), SearchError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SearchError::InvalidTenant)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SearchError> + Send + 'static,
) -> Result<T, SearchError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| SearchError::Task)?
}

const LOCK_FILES: [&str; 2] = [".tantivy-writer.lock", ".tantivy-meta.lock"];
const MAX_ID_BYTES: usize = 256;

impl IndexManager {
    /// A manager for index folders under `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>, config: ManagerConfig) -> Result<Self, SearchError> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(IndexManager {
            root,
            config,
            tenants: RwLock::new(HashMap::new()),
        })
    }

    fn tenant_path(&self, tenant: &str) -> Result<PathBuf, SearchError> {
        validate_tenant(tenant)?;
        Ok(self.root.join(tenant))
    }

    fn get(&self, tenant: &str) -> Result<Arc<TenantIndex>, SearchError> {
        validate_tenant(tenant)?;
        self.tenants
            .read()
            .map_err(|_| SearchError::Task)?
            .get(tenant)
            .cloned()
            .ok_or(SearchError::TenantNotOpen)
    }

    /// Opens the tenant's index with its key, creating an empty one if none
    /// exists. Fails with [`SearchError::Crypto`] (wrong key or tampering) or
    /// [`SearchError::CorruptIndex`] and leaves the files alone.
    pub async fn open(&self, tenant: &str, key: SearchKey) -> Result<OpenOutcome, SearchError> {
        let path = self.tenant_path(tenant)?;
        let config = self.config.clone();
        let (ti, outcome) = blocking(move || open_index(&path, &key, &config)).await?;
        self.tenants
            .write()
            .map_err(|_| SearchError::Task)?
            .insert(tenant.to_string(), Arc::new(ti));
        tracing::info!(tenant.id = tenant, outcome = ?outcome, "search index opened");
        Ok(outcome)
    }

    /// Like [`IndexManager::open`], but an unreadable index is removed and
    /// replaced by an empty one ([`OpenOutcome::Reset`]); the caller then runs
    /// [`IndexManager::rebuild`] from the database. The index is derived data,
    /// so removing it loses nothing; keeping a broken copy aside would escape
    /// later erasure, so it is deleted, not moved.
    pub async fn open_or_reset(
        &self,
        tenant: &str,
        key: SearchKey,
    ) -> Result<OpenOutcome, SearchError> {
        match self.open(tenant, key.clone()).await {
            Ok(outcome) => Ok(outcome),
            Err(e @ (SearchError::Crypto | SearchError::CorruptIndex(_))) => {
                let reason = e.to_string();
                tracing::warn!(tenant.id = tenant, error = %reason, "search index unreadable, resetting");
                let path = self.tenant_path(tenant)?;
                blocking(move || remove_dir_if_exists(&path)).await?;
                self.open(tenant, key).await?;
                Ok(OpenOutcome::Reset { reason })
            }
            Err(e) => Err(e),
        }
    }

    /// Closes the tenant's index: waits for background merges, then drops
    /// the writer (releasing its lock) and the reader.
    pub async fn close(&self, tenant: &str) -> Result<(), SearchError> {
        validate_tenant(tenant)?;
        let removed = self
            .tenants
            .write()
            .map_err(|_| SearchError::Task)?
            .remove(tenant);
        if let Some(ti) = removed {
            blocking(move || {
                let mut guard = ti.writer.lock().map_err(|_| SearchError::Task)?;
                if let Some(w) = guard.take() {
                    w.wait_merging_threads()?;
                }
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Indexes a batch and commits once, recording `last_applied_seq` in the
    /// commit. A message id already present is replaced.
    pub async fn add_messages(
        &self,
        tenant: &str,
        docs: &[DocMessage],
        last_applied_seq: u64,
    ) -> Result<(), SearchError> {
        let ti = self.get(tenant)?;
        let docs = docs.to_vec();
        blocking(move || ti.add_and_commit(&docs, last_applied_seq)).await
    }

    /// The sequence number recorded by the last commit.
    pub async fn last_applied_seq(&self, tenant: &str) -> Result<Option<u64>, SearchError> {
        let ti = self.get(tenant)?;
        blocking(move || read_payload(&ti.index)).await
    }

    /// Deletes one message and commits.
    pub async fn delete_message(
        &self,
        tenant: &str,
        message_id: &str,
        last_applied_seq: u64,
    ) -> Result<(), SearchError> {
        let ti = self.get(tenant)?;
        let id = message_id.to_string();
        blocking(move || {
            ti.change_and_commit(Some(last_applied_seq), |w, f| {
                w.delete_term(Term::from_field_text(f.message_id, &id));
                Ok(())
            })
        })
        .await
    }

    /// Replaces a corrected message (delete by id + add) and commits.
    pub async fn update_message(
        &self,
        tenant: &str,
        doc: &DocMessage,
        last_applied_seq: u64,
    ) -> Result<(), SearchError> {
        self.add_messages(tenant, std::slice::from_ref(doc), last_applied_seq)
            .await
    }

    /// Deletes every document of a subject, then merges all segments into one
    /// and collects garbage, so the subject's words leave the files on disk
    /// (term dictionary and stored text included). Returns how many files were
    /// removed.
    pub async fn delete_subject(
        &self,
        tenant: &str,
        subject: &str,
        last_applied_seq: u64,
    ) -> Result<usize, SearchError> {
        let ti = self.get(tenant)?;
        let subject = subject.to_string();
        let config = self.config.clone();
        blocking(move || {
            ti.change_and_commit(Some(last_applied_seq), |w, f| {
                w.delete_term(Term::from_field_text(f.subject, &subject));
                Ok(())
            })?;
            ti.purge(&config)
        })
        .await
    }

    /// Waits until background segment merges of the tenant's index finish,
    /// then reloads the reader (before a shutdown, a benchmark or a backup).
    pub async fn wait_for_merges(&self, tenant: &str) -> Result<(), SearchError> {
        let ti = self.get(tenant)?;
        let config = self.config.clone();
        blocking(move || {
            let mut guard = ti.writer.lock().map_err(|_| SearchError::Task)?;
            if let Some(w) = guard.take() {
                w.wait_merging_threads()?;
            }
            *guard = Some(new_writer(
                &ti.index,
                config.writer_threads.max(1),
                config.writer_memory_bytes,
                config.writer_setup,
            )??);
            drop(guard);
            ti.reload()
        })
        .await
    }

    /// Closes and removes the tenant's whole index folder (crypto-shredding:
    /// the caller also destroys the key).
    pub async fn drop_tenant(&self, tenant: &str) -> Result<(), SearchError> {
        let path = self.tenant_path(tenant)?;
        let removed = self
            .tenants
            .write()
            .map_err(|_| SearchError::Task)?
            .remove(tenant);
        blocking(move || {
            if let Some(ti) = removed {
                // Join background merges so no thread writes into the folder.
                if let Ok(mut guard) = ti.writer.lock() {
                    if let Some(w) = guard.take() {
                        w.wait_merging_threads()?;
                    }
                }
            }
            remove_dir_if_exists(&path)
        })
        .await
    }

    /// Replaces the tenant's index content with `docs` (from the database),
    /// committing every `batch` documents, calling `progress(indexed_so_far)`
    /// after each commit, and recording `last_applied_seq` in the final commit.
    /// Old segments are merged away and garbage-collected at the end.
    pub async fn rebuild<I, P>(
        &self,
        tenant: &str,
        docs: I,
        last_applied_seq: u64,
        batch: usize,
        mut progress: P,
    ) -> Result<u64, SearchError>
    where
        I: IntoIterator<Item = DocMessage> + Send + 'static,
        I::IntoIter: Send,
        P: FnMut(u64) + Send + 'static,
    {
        let ti = self.get(tenant)?;
        let batch = batch.max(1);
        let config = self.config.clone();
        blocking(move || {
            let previous = read_payload(&ti.index)?;
            // The writer stays locked for the whole rebuild so no other change
            // slips in between its batches.
            let mut guard = ti.writer.lock().map_err(|_| SearchError::Task)?;
            let w = guard.as_mut().ok_or(SearchError::TenantNotOpen)?;
            let mut analyzer = analyzer();
            let result = (|| {
                w.delete_all_documents()?;
                let mut count: u64 = 0;
                let mut pending = 0usize;
                for doc in docs {
                    w.add_document(to_document(ti.fields, &mut analyzer, &doc)?)?;
                    count += 1;
                    pending += 1;
                    if pending == batch {
                        // Intermediate commits keep the previous watermark: a
                        // crash mid-rebuild must not claim the rebuild finished.
                        commit_writer(w, previous)?;
                        ti.reload()?;
                        pending = 0;
                        progress(count);
                    }
                }
                commit_writer(w, Some(last_applied_seq))?;
                Ok::<u64, SearchError>(count)
            })();
            if result.is_err() {
                let _ = w.rollback();
            }
            drop(guard);
            let count = result?;
            ti.reload()?;
            progress(count);
            ti.purge(&config)?;
            Ok(count)
        })
        .await
    }

    /// Runs a search on the tenant's index.
    pub async fn search(
        &self,
        tenant: &str,
        query: &SearchQuery,
    ) -> Result<SearchResults, SearchError> {
        let ti = self.get(tenant)?;
        let query = query.clone();
        let config = self.config.clone();
        blocking(move || ti.search(&query, &config)).await
    }

    /// Synchronous search for callers already off the async runtime (benches, tools).
    pub fn search_blocking(
        &self,
        tenant: &str,
        query: &SearchQuery,
    ) -> Result<SearchResults, SearchError> {
        self.get(tenant)?.search(query, &self.config)
    }

    /// Synchronous batch add (same semantics as [`IndexManager::add_messages`]).
    pub fn add_messages_blocking(
        &self,
        tenant: &str,
        docs: &[DocMessage],
        last_applied_seq: u64,
    ) -> Result<(), SearchError> {
        self.get(tenant)?.add_and_commit(docs, last_applied_seq)
    }

    /// Path of the tenant's folder (for tests and operators; never from callers).
    pub fn index_path(&self, tenant: &str) -> Result<PathBuf, SearchError> {
        self.tenant_path(tenant)
    }

    /// Size on disk of the tenant's folder in bytes.
    pub fn disk_usage(&self, tenant: &str) -> Result<u64, SearchError> {
        let ti = self.get(tenant)?;
        let mut total = 0;
        for entry in fs::read_dir(&ti.path)? {
            total += entry?.metadata()?.len();
        }
        Ok(total)
    }
}

fn remove_dir_if_exists(path: &Path) -> Result<(), SearchError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn read_payload(index: &Index) -> Result<Option<u64>, SearchError> {
    let metas = index.load_metas()?;
    Ok(metas
        .payload
        .as_deref()
        .and_then(|p| serde_json::from_str::<Payload>(p).ok())
        .map(|p| p.last_applied_seq))
}

fn classify(dir: &EncryptedDirectory, before: u64, error: tantivy::TantivyError) -> SearchError {
    if dir.crypto_failures() > before {
        SearchError::Crypto
    } else {
        SearchError::CorruptIndex(error.to_string())
    }
}

/// A writer for `index`, created on a thread of its own after `setup` when there is one
/// ([`ManagerConfig::writer_setup`]). The outer error: that thread could not run.
fn new_writer(
    index: &Index,
    threads: usize,
    memory: usize,
    setup: Option<fn()>,
) -> Result<tantivy::Result<IndexWriter>, SearchError> {
    let Some(setup) = setup else {
        return Ok(index.writer_with_num_threads(threads, memory));
    };
    let index = index.clone();
    std::thread::Builder::new()
        .name("smartchat-ixw".into())
        .spawn(move || {
            setup();
            index.writer_with_num_threads(threads, memory)
        })
        .map_err(|_| SearchError::Task)?
        .join()
        .map_err(|_| SearchError::Task)
}

fn open_index(
    path: &Path,
    key: &SearchKey,
    config: &ManagerConfig,
) -> Result<(TenantIndex, OpenOutcome), SearchError> {
    let existed = path.join("meta.json").exists();
    fs::create_dir_all(path)?;
    // A crash can leave lock files behind; this process owns the folder.
    for name in LOCK_FILES {
        let _ = fs::remove_file(path.join(name));
    }
    let dir = EncryptedDirectory::open(path, key)?;
    let before = dir.crypto_failures();
    let index = if existed {
        Index::open(dir.clone()).map_err(|e| classify(&dir, before, e))?
    } else {
        Index::create(
            dir.clone(),
            build_schema(),
            tantivy::IndexSettings::default(),
        )
        .map_err(|e| classify(&dir, before, e))?
    };
    index.tokenizers().register(TOKENIZER_NAME, analyzer());
    let fields = Fields::from_schema(&index.schema())
        .map_err(|e| SearchError::CorruptIndex(e.to_string()))?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(|e| classify(&dir, before, e))?;
    let writer = new_writer(
        &index,
        config.writer_threads.max(1),
        config.writer_memory_bytes,
        config.writer_setup,
    )?
    .map_err(|e| classify(&dir, before, e))?;
    let outcome = if existed {
        OpenOutcome::Opened {
            last_applied_seq: read_payload(&index).map_err(|_| SearchError::Crypto)?,
        }
    } else {
        OpenOutcome::Created
    };
    Ok((
        TenantIndex {
            index,
            reader,
            writer: Mutex::new(Some(writer)),
            fields,
            dir,
            path: path.to_path_buf(),
            writer_setup: config.writer_setup,
        },
        outcome,
    ))
}

fn commit_writer(w: &mut IndexWriter, seq: Option<u64>) -> Result<(), SearchError> {
    let mut prepared = w.prepare_commit()?;
    if let Some(seq) = seq {
        let payload = serde_json::to_string(&Payload {
            last_applied_seq: seq,
        })
        .map_err(|e| SearchError::Engine(e.to_string()))?;
        prepared.set_payload(&payload);
    }
    prepared.commit()?;
    Ok(())
}

fn check_id(s: &str, what: &'static str) -> Result<(), SearchError> {
    if s.is_empty() || s.len() > MAX_ID_BYTES {
        return Err(SearchError::InvalidDocument(what));
    }
    Ok(())
}

fn to_document(
    f: Fields,
    analyzer: &mut TextAnalyzer,
    d: &DocMessage,
) -> Result<TantivyDocument, SearchError> {
    check_id(&d.message_id, "message id must be 1..=256 bytes")?;
    check_id(&d.conversation_id, "conversation id must be 1..=256 bytes")?;
    check_id(&d.subject, "subject must be 1..=256 bytes")?;
    check_id(&d.kind, "kind must be 1..=256 bytes")?;
    let mut doc = TantivyDocument::default();
    doc.add_text(f.text, &d.text);
    doc.add_pre_tokenized_text(f.pairs, pairs(analyzer, &d.text));
    doc.add_text(f.subject, &d.subject);
    doc.add_text(f.conversation, &d.conversation_id);
    doc.add_text(f.message_id, &d.message_id);
    doc.add_text(f.direction, d.direction.as_str());
    doc.add_text(f.kind, &d.kind);
    doc.add_i64(f.time, d.time_micros);
    Ok(doc)
}

impl TenantIndex {
    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut IndexWriter, Fields) -> Result<T, SearchError>,
    ) -> Result<T, SearchError> {
        let mut guard = self.writer.lock().map_err(|_| SearchError::Task)?;
        if guard.is_none() {
            *guard = Some(new_writer(&self.index, 1, 64_000_000, self.writer_setup)??);
        }
        match guard.as_mut() {
            Some(w) => f(w, self.fields),
            None => Err(SearchError::TenantNotOpen),
        }
    }

    /// Applies `change` and commits under one writer lock, then reloads the reader.
    fn change_and_commit(
        &self,
        seq: Option<u64>,
        change: impl FnOnce(&mut IndexWriter, Fields) -> Result<(), SearchError>,
    ) -> Result<(), SearchError> {
        self.with_writer(|w, f| {
            if let Err(e) = change(w, f) {
                // Nothing of a failed batch may reach a later commit.
                let _ = w.rollback();
                return Err(e);
            }
            commit_writer(w, seq)
        })?;
        self.reload()
    }

    fn add_and_commit(&self, docs: &[DocMessage], seq: u64) -> Result<(), SearchError> {
        self.change_and_commit(Some(seq), |w, f| {
            let mut analyzer = analyzer();
            for d in docs {
                w.delete_term(Term::from_field_text(f.message_id, &d.message_id));
                w.add_document(to_document(f, &mut analyzer, d)?)?;
            }
            Ok(())
        })
    }

    fn reload(&self) -> Result<(), SearchError> {
        let before = self.dir.crypto_failures();
        self.reader
            .reload()
            .map_err(|e| classify(&self.dir, before, e))
    }

    /// Merges every segment into one and deletes unreferenced files.
    fn purge(&self, config: &ManagerConfig) -> Result<usize, SearchError> {
        let mut guard = self.writer.lock().map_err(|_| SearchError::Task)?;
        // Join background merges first so every segment can take part.
        if let Some(w) = guard.take() {
            w.wait_merging_threads()?;
        }
        let mut writer = new_writer(
            &self.index,
            config.writer_threads.max(1),
            config.writer_memory_bytes,
            config.writer_setup,
        )??;
        let ids = self.index.searchable_segment_ids()?;
        if !ids.is_empty() {
            writer.merge(&ids).wait()?;
        }
        self.reader.reload()?;
        let gc = writer.garbage_collect_files().wait()?;
        *guard = Some(writer);
        Ok(gc.deleted_files.len())
    }

    fn search(
        &self,
        q: &SearchQuery,
        config: &ManagerConfig,
    ) -> Result<SearchResults, SearchError> {
        let started = Instant::now();
        let searcher = self.reader.searcher();
        let built = build(q, self.fields, &searcher, &analyzer())?;
        let query = built.query;
        let top = TopDocs::with_limit(q.limit).and_offset(q.offset);
        let deadline = started + config.search_time_budget;
        let (hits, total, truncated): (Vec<(Option<f32>, DocAddress)>, usize, bool) = match q.sort {
            SortOrder::BestFirst => {
                let c = Deadline {
                    inner: (top.order_by_score(), Count),
                    deadline,
                    truncated: AtomicBool::new(false),
                };
                let (docs, total) = searcher.search(&*query, &c)?;
                let docs = docs.into_iter().map(|(s, a)| (Some(s), a)).collect();
                (docs, total, c.truncated.into_inner())
            }
            SortOrder::NewestFirst => {
                let c = Deadline {
                    inner: (top.order_by_fast_field::<i64>("time", Order::Desc), Count),
                    deadline,
                    truncated: AtomicBool::new(false),
                };
                let (docs, total) = searcher.search(&*query, &c)?;
                let docs = docs.into_iter().map(|(_, a)| (None, a)).collect();
                (docs, total, c.truncated.into_inner())
            }
        };
        let highlight = built.highlight.as_deref().unwrap_or(&*query);
        let mut snippets = SnippetGenerator::create(&searcher, highlight, self.fields.text)?;
        snippets.set_max_num_chars(config.snippet_chars);
        let mut out = Vec::with_capacity(hits.len());
        for (score, addr) in hits {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let text_of = |field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let snippet = snippets.snippet_from_doc(&doc);
            out.push(SearchHit {
                message_id: text_of(self.fields.message_id),
                conversation_id: text_of(self.fields.conversation),
                subject: text_of(self.fields.subject),
                direction: Direction::parse(&text_of(self.fields.direction))
                    .unwrap_or(Direction::In),
                kind: text_of(self.fields.kind),
                time_micros: doc
                    .get_first(self.fields.time)
                    .and_then(|v| v.as_i64())
                    .unwrap_or_default(),
                score,
                snippet: Snippet {
                    fragment: snippet.fragment().to_string(),
                    highlighted: snippet
                        .highlighted()
                        .iter()
                        .map(|r| (r.start, r.end))
                        .collect(),
                    html: snippet.to_html(),
                },
            });
        }
        tracing::debug!(
            hits = out.len(),
            total,
            truncated,
            duration_us = started.elapsed().as_micros() as u64,
            "search"
        );
        Ok(SearchResults {
            total,
            hits: out,
            truncated,
        })
    }
}
