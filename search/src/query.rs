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
use crate::tokenizer::pair_text;

/// A query word: position, analyzed text, number of parts (1 unless compound).
type Term3 = (usize, String, usize);

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
    shingles: bool,
    shingled: bool,
}

/// A query ready to run, and the one whose words the snippets highlight.
pub(crate) struct BuiltQuery {
    /// What runs: exact phrases are looked up as two-word shingles.
    pub query: Box<dyn Query>,
    /// The same query on the `text` field only (shingles are not text the
    /// snippet generator can find), built only when they differ.
    pub highlight: Option<Box<dyn Query>>,
}

/// Builds the query to run and, when it uses shingles, the one to highlight.
pub(crate) fn build(
    q: &SearchQuery,
    fields: Fields,
    searcher: &Searcher,
    analyzer: &TextAnalyzer,
) -> Result<BuiltQuery, SearchError> {
    let (query, shingled) = build_query(q, fields, searcher, analyzer.clone(), true)?;
    let highlight = if shingled {
        Some(build_query(q, fields, searcher, analyzer.clone(), false)?.0)
    } else {
        None
    };
    Ok(BuiltQuery { query, highlight })
}

/// Builds the full query: the user's text AND the filters (filters do not
/// score). With `shingles`, exact phrases of plain words use the `pairs`
/// field; the second value says whether any did.
pub(crate) fn build_query(
    q: &SearchQuery,
    fields: Fields,
    searcher: &Searcher,
    analyzer: TextAnalyzer,
    shingles: bool,
) -> Result<(Box<dyn Query>, bool), SearchError> {
    validate(q)?;
    let mut b = Builder {
        fields,
        searcher,
        analyzer,
        leaves: 0,
        shingles,
        shingled: false,
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
    Ok((Box::new(BooleanQuery::new(clauses)), b.shingled))
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
            [(_, text, _)] if prefix => self.prefix(text).map(Some),
            [(_, text, _)] if fuzzy > 0 => {
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
            [(_, text, _)] => Ok(Some(Box::new(TermQuery::new(
                Term::from_field_text(field, text),
                IndexRecordOption::WithFreqs,
            )))),
            _ => {
                if prefix {
                    return Err(syntax(None, "prefix search (*) works on single words"));
                }
                let slop = if quoted { lit.slop.min(4) } else { 0 };
                if let Some(q) = self.shingle_phrase(&terms, slop) {
                    return Ok(Some(q));
                }
                let base = terms.first().map_or(0, |(p, _, _)| *p);
                let with_offsets = terms
                    .iter()
                    .map(|(p, t, _)| (p - base, Term::from_field_text(field, t)))
                    .collect();
                Ok(Some(Box::new(PhraseQuery::new_with_offset_and_slop(
                    with_offsets,
                    slop,
                ))))
            }
        }
    }

    /// An exact phrase of plain words at adjacent positions, as shingles:
    /// two words are one term look-up; more are a phrase over their pairs.
    /// A slop or a compound token (code, phone number) keeps the word phrase.
    fn shingle_phrase(&mut self, terms: &[Term3], slop: u32) -> Option<Box<dyn Query>> {
        let plain = terms.iter().all(|(_, _, parts)| *parts == 1);
        let adjacent = terms.windows(2).all(|w| w[1].0 == w[0].0 + 1);
        if !self.shingles || slop > 0 || !plain || !adjacent || terms.len() < 2 {
            return None;
        }
        self.shingled = true;
        let pairs: Vec<Term> = terms
            .windows(2)
            .map(|w| Term::from_field_text(self.fields.pairs, &pair_text(&w[0].1, &w[1].1)))
            .collect();
        Some(match pairs.as_slice() {
            [one] => Box::new(TermQuery::new(one.clone(), IndexRecordOption::WithFreqs)),
            _ => Box::new(PhraseQuery::new_with_offset(
                pairs.into_iter().enumerate().collect(),
            )),
        })
    }

    /// Tokenizes a query literal like the indexed text, keeping compound tokens
    /// (booking codes, phone numbers) and dropping the parts they cover.
    /// Each term is (position, text, parts).
    fn terms(&mut self, text: &str) -> Vec<Term3> {
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
            .map(|t| (t.position, t.text, t.position_length))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    //! Shingled phrases must find exactly what word phrases find.

    use proptest::prelude::*;
    use tantivy::collector::DocSetCollector;
    use tantivy::{Index, TantivyDocument};

    use super::*;
    use crate::schema::build_schema;
    use crate::tokenizer::{TOKENIZER_NAME, analyzer, pairs};

    const WORDS: &[&str] = &[
        "kitne",
        "ka",
        "hai",
        "bridal",
        "package",
        "का",
        "है",
        "कितने",
        "BK-29",
        "🙂",
        "+91 98765 43210",
        "the",
        "price",
        "Price!",
        "ka-",
        "x",
    ];

    fn index(texts: &[String]) -> (Index, Fields) {
        let index = Index::create_in_ram(build_schema());
        index.tokenizers().register(TOKENIZER_NAME, analyzer());
        let fields = Fields::from_schema(&index.schema()).unwrap();
        let mut w = index.writer_with_num_threads(1, 15_000_000).unwrap();
        let mut a = analyzer();
        for t in texts {
            let mut doc = TantivyDocument::default();
            doc.add_text(fields.text, t);
            doc.add_pre_tokenized_text(fields.pairs, pairs(&mut a, t));
            w.add_document(doc).unwrap();
        }
        w.commit().unwrap();
        (index, fields)
    }

    fn hits(index: &Index, fields: Fields, text: &str, shingles: bool) -> (Vec<u32>, bool) {
        let searcher = index.reader().unwrap().searcher();
        let q = SearchQuery::text(text);
        let (query, shingled) = build_query(&q, fields, &searcher, analyzer(), shingles).unwrap();
        let mut docs: Vec<u32> = searcher
            .search(&*query, &DocSetCollector)
            .unwrap()
            .into_iter()
            .map(|a| a.doc_id)
            .collect();
        docs.sort_unstable();
        (docs, shingled)
    }

    #[test]
    fn shingles_are_used_only_for_exact_phrases_of_plain_words() {
        let docs = vec![
            "kitne ka hai bhaiya".to_string(),
            "bridal package kitne ka hai".to_string(),
            "booking BK-29 confirmed".to_string(),
        ];
        let (index, fields) = index(&docs);
        let (found, shingled) = hits(&index, fields, "\"kitne ka hai\"", true);
        assert!(shingled);
        assert_eq!(found, vec![0, 1]);
        let (found, shingled) = hits(&index, fields, "\"bridal package\"", true);
        assert!(shingled);
        assert_eq!(found, vec![1]);
        // Reversed order is not the phrase.
        assert_eq!(
            hits(&index, fields, "\"package bridal\"", true).0,
            Vec::<u32>::new()
        );
        // A compound keeps the word phrase; a slop too; a single word has no pair.
        assert!(!hits(&index, fields, "\"BK-29 confirmed\"", true).1);
        assert_eq!(hits(&index, fields, "\"BK-29 confirmed\"", true).0, vec![2]);
        assert!(!hits(&index, fields, "\"kitne hai\"~1", true).1);
        assert!(!hits(&index, fields, "kitne", true).1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn shingled_phrases_find_what_word_phrases_find(
            docs in proptest::collection::vec(
                proptest::collection::vec(0..WORDS.len(), 1..12), 1..20),
            phrase in proptest::collection::vec(0..WORDS.len(), 2..5),
            from_doc in any::<bool>(),
        ) {
            let texts: Vec<String> = docs
                .iter()
                .map(|d| d.iter().map(|&i| WORDS[i]).collect::<Vec<_>>().join(" "))
                .collect();
            let (index, fields) = index(&texts);
            // Half the cases quote a run of the first document, so they match.
            let phrase: Vec<usize> = if from_doc && docs[0].len() >= 2 {
                let len = phrase.len().min(docs[0].len());
                docs[0][docs[0].len() - len..].to_vec()
            } else {
                phrase
            };
            let phrase: Vec<&str> = phrase.iter().map(|&i| WORDS[i]).collect();
            let q = format!("\"{}\"", phrase.join(" ").replace('"', ""));
            let with = hits(&index, fields, &q, true).0;
            let without = hits(&index, fields, &q, false).0;
            prop_assert_eq!(with, without, "query {}", q);
        }
    }
}
