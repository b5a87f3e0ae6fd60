//! Documents, queries and results.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Whether a message came from the customer or went to them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the customer to the business.
    In,
    /// From the business to the customer.
    Out,
}

impl Direction {
    /// The indexed value (`"in"` / `"out"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "in" => Some(Direction::In),
            "out" => Some(Direction::Out),
            _ => None,
        }
    }
}

/// One message to index. `Debug` never prints the text.
#[derive(Clone, PartialEq, Eq)]
pub struct DocMessage {
    /// Message id (unique per tenant); used to delete and correct.
    pub message_id: String,
    /// Conversation id.
    pub conversation_id: String,
    /// Subject pseudonym (hex), matched exactly.
    pub subject: String,
    /// In or out.
    pub direction: Direction,
    /// Message type (`text`, `image_caption`, ...).
    pub kind: String,
    /// Unix time in microseconds.
    pub time_micros: i64,
    /// The message text (personal data).
    pub text: String,
}

impl fmt::Debug for DocMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DocMessage")
            .field("message_id", &self.message_id)
            .field("conversation_id", &self.conversation_id)
            .field("direction", &self.direction)
            .field("kind", &self.kind)
            .field("time_micros", &self.time_micros)
            .field("text_len", &self.text.len())
            .finish_non_exhaustive()
    }
}

/// Result ordering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    /// Highest relevance first (BM25).
    #[default]
    BestFirst,
    /// Most recent message first.
    NewestFirst,
}

/// Largest page size.
pub const MAX_LIMIT: usize = 100;
/// Largest offset (deep paging is refused).
pub const MAX_OFFSET: usize = 10_000;

/// A search request. `Debug` does not print the query text.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// Full-text query: words (all required by default), `OR`, `-word`,
    /// `"phrases"`, `prefix*`, `fuzzy~1` / `fuzzy~2`. Empty = all messages.
    pub text: String,
    /// Only this subject pseudonym.
    pub subject: Option<String>,
    /// Only this conversation.
    pub conversation_id: Option<String>,
    /// Only this direction.
    pub direction: Option<Direction>,
    /// From this time (unix micros, inclusive).
    pub from_micros: Option<i64>,
    /// Before this time (unix micros, exclusive).
    pub to_micros: Option<i64>,
    /// Ordering.
    pub sort: SortOrder,
    /// Hits to skip (≤ [`MAX_OFFSET`]).
    pub offset: usize,
    /// Page size (1..=[`MAX_LIMIT`]).
    pub limit: usize,
}

impl fmt::Debug for SearchQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchQuery")
            .field("text_len", &self.text.len())
            .field("has_subject", &self.subject.is_some())
            .field("conversation_id", &self.conversation_id)
            .field("direction", &self.direction)
            .field("from_micros", &self.from_micros)
            .field("to_micros", &self.to_micros)
            .field("sort", &self.sort)
            .field("offset", &self.offset)
            .field("limit", &self.limit)
            .finish()
    }
}

impl SearchQuery {
    /// A query for `text` with default paging (first 20, best first).
    pub fn text(text: impl Into<String>) -> Self {
        SearchQuery {
            text: text.into(),
            limit: 20,
            ..SearchQuery::default()
        }
    }
}

/// A highlighted fragment of the message text.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snippet {
    /// The fragment (plain text).
    pub fragment: String,
    /// Byte ranges in `fragment` to highlight.
    pub highlighted: Vec<(usize, usize)>,
    /// The fragment as HTML, escaped, with `<b>` around highlights.
    pub html: String,
}

impl fmt::Debug for Snippet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snippet")
            .field("fragment_len", &self.fragment.len())
            .field("highlights", &self.highlighted.len())
            .finish()
    }
}

/// One hit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Message id.
    pub message_id: String,
    /// Conversation id.
    pub conversation_id: String,
    /// Subject pseudonym.
    pub subject: String,
    /// In or out.
    pub direction: Direction,
    /// Message type.
    pub kind: String,
    /// Unix micros.
    pub time_micros: i64,
    /// BM25 score (best-first ordering only).
    pub score: Option<f32>,
    /// Highlighted fragment.
    pub snippet: Snippet,
}

/// A page of results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchResults {
    /// Total matching messages (up to where the time budget stopped counting).
    pub total: usize,
    /// The requested page.
    pub hits: Vec<SearchHit>,
    /// True when the time budget ran out: `total` and hits are partial.
    pub truncated: bool,
}
