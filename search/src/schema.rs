//! The per-tenant index schema.
//!
//! An index written before a field existed fails [`Fields::from_schema`];
//! the manager treats it as unreadable, removes it and rebuilds it from the
//! database, so a schema change needs no migration step.

use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};

use crate::tokenizer::TOKENIZER_NAME;

/// Field handles of the message schema.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    pub text: Field,
    /// Two-word shingles of `text` ("word1 word2" at the first word's
    /// position), indexed only: a phrase becomes a look-up of rare pairs
    /// instead of a walk over the positions of common words.
    pub pairs: Field,
    pub subject: Field,
    pub conversation: Field,
    pub message_id: Field,
    pub direction: Field,
    pub kind: Field,
    pub time: Field,
}

pub(crate) fn build_schema() -> Schema {
    let mut b = Schema::builder();
    let text = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TOKENIZER_NAME)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    b.add_text_field("text", text);
    // Pre-tokenized by the writer (see `tokenizer::pairs`); never stored.
    let pairs = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    b.add_text_field("pairs", pairs);
    b.add_text_field("subject", STRING | STORED);
    b.add_text_field("conversation", STRING | STORED);
    b.add_text_field("message_id", STRING | STORED);
    b.add_text_field("direction", STRING | STORED);
    b.add_text_field("kind", STRING | STORED);
    b.add_i64_field("time", INDEXED | FAST | STORED);
    b.build()
}

impl Fields {
    pub(crate) fn from_schema(schema: &Schema) -> tantivy::Result<Fields> {
        Ok(Fields {
            text: schema.get_field("text")?,
            pairs: schema.get_field("pairs")?,
            subject: schema.get_field("subject")?,
            conversation: schema.get_field("conversation")?,
            message_id: schema.get_field("message_id")?,
            direction: schema.get_field("direction")?,
            kind: schema.get_field("kind")?,
            time: schema.get_field("time")?,
        })
    }
}
