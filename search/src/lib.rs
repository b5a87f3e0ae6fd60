#![doc = include_str!("../README.md")]

mod crypto_dir;
mod error;
mod manager;
mod model;
mod query;
mod schema;
mod tokenizer;

pub use crypto_dir::{
    CHUNK_LEN, EncryptedDirectory, HEADER_LEN, MAGIC, NONCE_PREFIX_LEN, SearchKey, TAG_LEN,
};
pub use error::SearchError;
pub use manager::{IndexManager, ManagerConfig, OpenOutcome};
pub use model::{
    Direction, DocMessage, MAX_LIMIT, MAX_OFFSET, SearchHit, SearchQuery, SearchResults, Snippet,
    SortOrder,
};
pub use query::{MAX_FUZZY_DISTANCE, MAX_PREFIX_TERMS, MAX_QUERY_BYTES, MAX_QUERY_LEAVES};
pub use tokenizer::{ChatTokenizer, MAX_TOKEN_BYTES, TOKENIZER_NAME, analyzer, tokenize};
