//! From [`SearchQuery`] to a bounded tantivy query and collector.

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, FuzzyTermQuery, Occur, PhraseQuery, Query, RangeQuery,
    TermQuery, Weight,
};
use tantivy::query_grammar::{self, Delimiter, UserInputAst, UserInputLeaf, UserInputLiteral};
use tantivy::schema::IndexRecordOption;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DocId, DocSet, Score, Searcher, SegmentOrdinal, SegmentReader, TERMINATED, Term};

use crate::error::SearchError;
use crate::model::{MAX_LIMIT, MAX_OFFSET, SearchQuery};
use crate::schema::Fields;

/// Most terms a `prefix*` expands to (over all segments).
pub const MAX_PREFIX_TERMS: usize = 64;
/// Largest fuzzy distance accepted (`term~2`).
pub const MAX_FUZZY_DISTANCE: u32 = 2;
/// Longest accepted query text, in bytes.
pub const MAX_QUERY_BYTES: usize = 1024;
/// Most words/phrases in one query.
pub const MAX_QUERY_LEAVES: usize = 32;

fn syntax(position: Option<usize>, hint: impl Into<String>) -> SearchError {
    SearchError::QuerySyntax {
        position,
        hint: hint.into(),
    }
}

pub(crate) fn validate(q: &SearchQuery) -> Result<(), SearchError> {
    if q.limit == 0 || q.limit > MAX_LIMIT {
        return Err(SearchError::InvalidRequest(format!(
            "limit must be 1..={MAX_LIMIT}"
        )));
    }
    if q.offset > MAX_OFFSET {
        return Err(SearchError::InvalidRequest(format!(
            "offset must be at most {MAX_OFFSET}"
        )));
    }
    if let (Some(from), Some(to)) = (q.from_micros, q.to_micros) {
        if from > to {
            return Err(SearchError::InvalidRequest(
                "date range ends before it starts".into(),
            ));
        }
    }
    if q.text.len() > MAX_QUERY_BYTES {
        return Err(syntax(
            None,
            format!("query longer than {MAX_QUERY_BYTES} bytes"),
        ));
    }
    Ok(())
}

struct Builder<'a> {
    fields: Fields,
    searcher: &'a Searcher,
    analyzer: TextAnalyzer,
    leaves: usize,
}

/// Builds the full query: the user's text AND the filters (filters do not score).
pub(crate) fn build_query(
    q: &SearchQuery,
    fields: Fields,
    searcher: &Searcher,
    analyzer: TextAnalyzer,
) -> Result<Box<dyn Query>, SearchError> {
    validate(q)?;
    let mut b = Builder {
        fields,
        searcher,
        analyzer,
        leaves: 0,
    };
    let text_query: Box<dyn Query> = if q.text.trim().is_empty() {
        Box::new(AllQuery)
    } else {
        let ast = match query_grammar::parse_query(&q.text) {
            Ok(ast) => ast,
            Err(_) => {
                let (_, errors) = query_grammar::parse_query_lenient(&q.text);
                let (position, hint) = errors
                    .first()
                    .map(|e| (Some(e.pos), e.message.clone()))
                    .unwrap_or((None, "unbalanced quotes or parentheses".to_string()));
                return Err(syntax(position, hint));
            }
        };
        b.convert(&ast)?
            .unwrap_or_else(|| Box::new(BooleanQuery::new(Vec::new())))
    };
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, text_query)];
    let mut filter = |field, value: &str| {
        let term = Term::from_field_text(field, value);
        let q = TermQuery::new(term, IndexRecordOption::Basic);
        clauses.push((
            Occur::Must,
            Box::new(ConstScoreQuery::new(Box::new(q), 0.0)),
        ));
    };
    if let Some(s) = &q.subject {
        filter(fields.subject, s);
    }
    if let Some(c) = &q.conversation_id {
        filter(fields.conversation, c);
    }
    if let Some(d) = q.direction {
        filter(fields.direction, d.as_str());
    }
    if q.from_micros.is_some() || q.to_micros.is_some() {
        let lower = q.from_micros.map_or(Bound::Unbounded, |t| {
            Bound::Included(Term::from_field_i64(fields.time, t))
        });
        let upper = q.to_micros.map_or(Bound::Unbounded, |t| {
            Bound::Excluded(Term::from_field_i64(fields.time, t))
        });
        let range = RangeQuery::new(lower, upper);
        clauses.push((
            Occur::Must,
            Box::new(ConstScoreQuery::new(Box::new(range), 0.0)),
        ));
    }
    Ok(Box::new(BooleanQuery::new(clauses)))
}

impl Builder<'_> {
    fn convert(&mut self, ast: &UserInputAst) -> Result<Option<Box<dyn Query>>, SearchError> {
        match ast {
            UserInputAst::Clause(children) => {
                let mut clauses = Vec::with_capacity(children.len());
                for (occur, child) in children {
                    let occur = match occur {
                        None | Some(query_grammar::Occur::Must) => Occur::Must,
                        Some(query_grammar::Occur::Should) => Occur::Should,
                        Some(query_grammar::Occur::MustNot) => Occur::MustNot,
                    };
                    if let Some(q) = self.convert(child)? {
                        clauses.push((occur, q));
                    }
                }
                if !clauses.is_empty() && clauses.iter().all(|(o, _)| *o == Occur::MustNot) {
                    return Err(syntax(None, "a query cannot only exclude words"));
                }
                Ok((!clauses.is_empty())
                    .then(|| Box::new(BooleanQuery::new(clauses)) as Box<dyn Query>))
            }
            UserInputAst::Boost(inner, _) => self.convert(inner),
            UserInputAst::Leaf(leaf) => match leaf.as_ref() {
                UserInputLeaf::Literal(lit) => self.literal(lit),
                UserInputLeaf::All => Ok(Some(Box::new(AllQuery))),
                _ => Err(syntax(
                    None,
                    "ranges, sets and field queries are not supported; use the filters",
                )),
            },
        }
    }

    fn literal(&mut self, lit: &UserInputLiteral) -> Result<Option<Box<dyn Query>>, SearchError> {
        if lit.field_name.is_some() {
            return Err(syntax(
                None,
                "field-qualified words are not supported; use the filters",
            ));
        }
        self.leaves += 1;
        if self.leaves > MAX_QUERY_LEAVES {
            return Err(syntax(
                None,
                format!("at most {MAX_QUERY_LEAVES} words per query"),
            ));
        }
        let quoted = lit.delimiter != Delimiter::None;
        // Unquoted `word*` and `word~2` reach us inside the word itself.
        let (phrase, prefix, fuzzy) = if quoted {
            (lit.phrase.as_str(), lit.prefix, 0)
        } else if let Some(stem) = lit.phrase.strip_suffix('*') {
            (stem, true, 0)
        } else if let Some((word, n)) = lit
            .phrase
            .rsplit_once('~')
            .and_then(|(w, n)| n.parse::<u32>().ok().map(|n| (w, n)))
        {
            (word, false, n)
        } else {
            (lit.phrase.as_str(), lit.prefix, lit.slop)
        };
        if !quoted && phrase.contains('*') {
            return Err(syntax(None, "* is only allowed at the end of a word"));
        }
        let terms = self.terms(phrase);
        let field = self.fields.text;
        match terms.as_slice() {
            [] if prefix => Err(syntax(None, "a prefix (*) needs at least 2 letters")),
            [] => Ok(None),
            [(_, text)] if prefix => self.prefix(text).map(Some),
            [(_, text)] if fuzzy > 0 => {
                let distance = fuzzy.min(MAX_FUZZY_DISTANCE) as u8;
                let term = Term::from_field_text(field, text);
                if text.chars().count() < 3 {
                    return Ok(Some(Box::new(TermQuery::new(
                        term,
                        IndexRecordOption::WithFreqs,
                    ))));
                }
                Ok(Some(Box::new(FuzzyTermQuery::new(term, distance, true))))
            }
            [(_, text)] => Ok(Some(Box::new(TermQuery::new(
                Term::from_field_text(field, text),
                IndexRecordOption::WithFreqs,
            )))),
            _ => {
                if prefix {
                    return Err(syntax(None, "prefix search (*) works on single words"));
                }
                let base = terms.first().map_or(0, |(p, _)| *p);
                let with_offsets = terms
                    .iter()
                    .map(|(p, t)| (p - base, Term::from_field_text(field, t)))
                    .collect();
                let slop = if quoted { lit.slop.min(4) } else { 0 };
                Ok(Some(Box::new(PhraseQuery::new_with_offset_and_slop(
                    with_offsets,
                    slop,
                ))))
            }
        }
    }

    /// Tokenizes a query literal like the indexed text, keeping compound tokens
    /// (booking codes, phone numbers) and dropping the parts they cover.
    fn terms(&mut self, text: &str) -> Vec<(usize, String)> {
        let mut stream = self.analyzer.token_stream(text);
        let mut tokens = Vec::new();
        while let Some(tok) = {
            if stream.advance() {
                Some(stream.token().clone())
            } else {
                None
            }
        } {
            tokens.push(tok);
        }
        let compounds: Vec<(usize, usize)> = tokens
            .iter()
            .filter(|t| t.position_length > 1)
            .map(|t| (t.offset_from, t.offset_to))
            .collect();
        tokens
            .into_iter()
            .filter(|t| {
                t.position_length > 1
                    || !compounds
                        .iter()
                        .any(|(f, to)| *f <= t.offset_from && t.offset_to <= *to)
            })
            .map(|t| (t.position, t.text))
            .collect()
    }

    fn prefix(&self, prefix: &str) -> Result<Box<dyn Query>, SearchError> {
        if prefix.chars().count() < 2 {
            return Err(syntax(None, "a prefix (*) needs at least 2 letters"));
        }
        let mut found: Vec<Vec<u8>> = Vec::new();
        for segment in self.searcher.segment_readers() {
            let inverted = segment.inverted_index(self.fields.text)?;
            let mut stream = inverted
                .terms()
                .range()
                .ge(prefix.as_bytes())
                .into_stream()
                .map_err(|e| SearchError::Engine(e.to_string()))?;
            while stream.advance() {
                let key = stream.key();
                if !key.starts_with(prefix.as_bytes()) {
                    break;
                }
                if !found.iter().any(|k| k == key) {
                    found.push(key.to_vec());
                    if found.len() >= MAX_PREFIX_TERMS {
                        break;
                    }
                }
            }
            if found.len() >= MAX_PREFIX_TERMS {
                break;
            }
        }
        let clauses = found
            .iter()
            .filter_map(|k| std::str::from_utf8(k).ok())
            .map(|word| {
                let term = Term::from_field_text(self.fields.text, word);
                (
                    Occur::Should,
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)) as Box<dyn Query>,
                )
            })
            .collect();
        Ok(Box::new(BooleanQuery::new(clauses)))
    }
}

/// Wraps a collector, scoring documents itself so it can stop when the time
/// budget is spent. `truncated` records that it stopped early.
pub(crate) struct Deadline<C> {
    pub inner: C,
    pub deadline: Instant,
    pub truncated: AtomicBool,
}

impl<C: Collector> Collector for Deadline<C> {
    type Fruit = C::Fruit;
    type Child = C::Child;

    fn for_segment(
        &self,
        ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<C::Child> {
        self.inner.for_segment(ord, reader)
    }

    fn requires_scoring(&self) -> bool {
        self.inner.requires_scoring()
    }

    fn merge_fruits(
        &self,
        fruits: Vec<<C::Child as SegmentCollector>::Fruit>,
    ) -> tantivy::Result<C::Fruit> {
        self.inner.merge_fruits(fruits)
    }

    fn collect_segment(
        &self,
        weight: &dyn Weight,
        ord: u32,
        reader: &SegmentReader,
    ) -> tantivy::Result<<C::Child as SegmentCollector>::Fruit> {
        let mut child = self.inner.for_segment(ord, reader)?;
        if Instant::now() >= self.deadline {
            self.truncated.store(true, Ordering::Relaxed);
            return Ok(child.harvest());
        }
        let scoring = self.inner.requires_scoring();
        let mut scorer = weight.scorer(reader, 1.0)?;
        let alive = reader.alive_bitset();
        let mut doc: DocId = scorer.doc();
        let mut seen: u32 = 0;
        while doc != TERMINATED {
            if alive.is_none_or(|a| a.is_alive(doc)) {
                let score: Score = if scoring { scorer.score() } else { 0.0 };
                child.collect(doc, score);
            }
            seen = seen.wrapping_add(1);
            if seen % 4096 == 0 && Instant::now() >= self.deadline {
                self.truncated.store(true, Ordering::Relaxed);
                break;
            }
            doc = scorer.advance();
        }
        Ok(child.harvest())
    }
}
