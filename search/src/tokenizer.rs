//! The `smartchat` tokenizer: English, Hindi (Devanagari) and romanized Hindi.
//!
//! - Words are maximal runs of letters, digits and combining marks. The whole
//!   Devanagari block (except the danda punctuation) counts as word characters,
//!   so vowel signs, nukta and virama stay inside their word; ZWJ/ZWNJ are kept
//!   inside a word.
//! - Emoji, symbols and punctuation separate words and are never tokens.
//! - Booking codes (ASCII letter/digit runs joined by `-`, `/`, `_` or `.`,
//!   containing a digit, e.g. `BK-2931`) produce their parts *and* the whole
//!   code as one token.
//! - Phone-like digit groups (2+ groups, 7–15 digits, separated by space, `-`,
//!   `.` or parentheses, e.g. `+91 98765 43210`) produce their groups *and* one
//!   token of all digits (`919876543210`).
//! - Compound tokens sit at the position of their last part and carry the
//!   byte range of the whole compound, with `position_length` = number of parts.
//!
//! The registered analyzer then lower-cases, ASCII-folds Latin text and drops
//! tokens longer than [`MAX_TOKEN_BYTES`].

use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, PreTokenizedString, RemoveLongFilter, TextAnalyzer, Token,
    TokenStream, Tokenizer,
};

/// Name under which the analyzer is registered on every index.
pub const TOKENIZER_NAME: &str = "smartchat";
/// Tokens longer than this many bytes are dropped.
pub const MAX_TOKEN_BYTES: usize = 160;
const MAX_COMPOUND_PARTS: usize = 8;

/// Builds the full analyzer (tokenizer + filters) used for message text.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(ChatTokenizer)
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// The text of the shingle for two adjacent words (a space never occurs
/// inside a token).
pub(crate) fn pair_text(first: &str, second: &str) -> String {
    format!("{first} {second}")
}

/// Two-word shingles of `text` as analyzed by `analyzer`: one token per pair
/// of single-part tokens at adjacent positions, at the first one's position.
/// Compound tokens (codes, phone numbers) take no part; their parts do.
pub(crate) fn pairs(analyzer: &mut TextAnalyzer, text: &str) -> PreTokenizedString {
    let mut stream = analyzer.token_stream(text);
    let mut words: Vec<Token> = Vec::new();
    while stream.advance() {
        let t = stream.token();
        if t.position_length == 1 {
            words.push(t.clone());
        }
    }
    let tokens = words
        .windows(2)
        .filter(|w| w[1].position == w[0].position + 1)
        .map(|w| Token {
            offset_from: w[0].offset_from,
            offset_to: w[1].offset_to,
            position: w[0].position,
            text: pair_text(&w[0].text, &w[1].text),
            position_length: 1,
        })
        .collect();
    PreTokenizedString {
        text: String::new(),
        tokens,
    }
}

/// Splits chat text into word, code and phone tokens (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct ChatTokenizer;

/// Token stream over precomputed tokens.
pub struct ChatTokenStream {
    tokens: Vec<Token>,
    next: usize,
    current: Token,
}

impl TokenStream for ChatTokenStream {
    fn advance(&mut self) -> bool {
        match self.tokens.get_mut(self.next) {
            Some(token) => {
                self.current = std::mem::take(token);
                self.next += 1;
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        &self.current
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.current
    }
}

impl Tokenizer for ChatTokenizer {
    type TokenStream<'a> = ChatTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> ChatTokenStream {
        ChatTokenStream {
            tokens: tokenize(text),
            next: 0,
            current: Token::default(),
        }
    }
}

fn is_devanagari_word_char(c: char) -> bool {
    matches!(c, '\u{0900}'..='\u{097F}' | '\u{A8E0}'..='\u{A8FF}' | '\u{1CD0}'..='\u{1CFF}')
        && !matches!(c, '\u{0964}' | '\u{0965}' | '\u{0970}')
}

fn is_combining_mark(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}')
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || is_devanagari_word_char(c) || is_combining_mark(c)
}

fn is_joiner(c: char) -> bool {
    matches!(c, '\u{200C}' | '\u{200D}')
}

#[derive(Clone, Copy)]
struct Run {
    start: usize,
    end: usize,
}

fn runs(text: &str) -> Vec<Run> {
    let mut out = Vec::new();
    let mut current: Option<Run> = None;
    for (i, c) in text.char_indices() {
        let end = i + c.len_utf8();
        let word = is_word_char(c) || (is_joiner(c) && current.is_some());
        match (&mut current, word) {
            (Some(run), true) => run.end = end,
            (None, true) => current = Some(Run { start: i, end }),
            (Some(run), false) => {
                out.push(*run);
                current = None;
            }
            (None, false) => {}
        }
    }
    if let Some(run) = current {
        out.push(run);
    }
    out
}

fn all_ascii_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn phone_separator(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 3
        && s.bytes()
            .all(|b| matches!(b, b' ' | b'-' | b'.' | b'(' | b')'))
}

fn code_separator(s: &str) -> bool {
    matches!(s, "-" | "/" | "_" | ".")
}

/// Longest phone group starting at run `i`: returns the index of its last run.
fn phone_group(text: &str, runs: &[Run], i: usize) -> Option<usize> {
    let first = &text[runs[i].start..runs[i].end];
    if !all_ascii_digits(first) {
        return None;
    }
    let mut digits = first.len();
    let mut last = i;
    while last + 1 < runs.len() && last + 1 - i < MAX_COMPOUND_PARTS {
        let sep = &text[runs[last].end..runs[last + 1].start];
        let next = &text[runs[last + 1].start..runs[last + 1].end];
        if !phone_separator(sep) || !all_ascii_digits(next) || digits + next.len() > 15 {
            break;
        }
        digits += next.len();
        last += 1;
    }
    (last > i && digits >= 7).then_some(last)
}

/// Longest booking-code group starting at run `i`.
fn code_group(text: &str, runs: &[Run], i: usize) -> Option<usize> {
    let ascii_alnum = |r: &Run| {
        text[r.start..r.end]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
    };
    if !ascii_alnum(&runs[i]) {
        return None;
    }
    let mut last = i;
    while last + 1 < runs.len()
        && last + 1 - i < MAX_COMPOUND_PARTS
        && code_separator(&text[runs[last].end..runs[last + 1].start])
        && ascii_alnum(&runs[last + 1])
    {
        last += 1;
    }
    let whole = &text[runs[i].start..runs[last].end];
    let has_digit = whole.bytes().any(|b| b.is_ascii_digit());
    (last > i && has_digit).then_some(last)
}

fn token(text: String, from: usize, to: usize, position: usize, parts: usize) -> Token {
    Token {
        offset_from: from,
        offset_to: to,
        position,
        text,
        position_length: parts,
    }
}

/// Tokenizes `text` (before lower-casing and folding).
pub fn tokenize(text: &str) -> Vec<Token> {
    let runs = runs(text);
    let mut tokens = Vec::with_capacity(runs.len() + 2);
    let mut i = 0;
    while i < runs.len() {
        let group = phone_group(text, &runs, i)
            .map(|last| (last, true))
            .or_else(|| code_group(text, &runs, i).map(|last| (last, false)));
        let last = group.map_or(i, |(last, _)| last);
        for (pos, run) in runs.iter().enumerate().take(last + 1).skip(i) {
            tokens.push(token(
                text[run.start..run.end].to_string(),
                run.start,
                run.end,
                pos,
                1,
            ));
        }
        if let Some((last, phone)) = group {
            let (from, to) = (runs[i].start, runs[last].end);
            let whole = if phone {
                text[from..to]
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect()
            } else {
                text[from..to].to_string()
            };
            tokens.push(token(whole, from, to, last, last - i + 1));
        }
        i = last + 1;
    }
    tokens
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    fn texts(s: &str) -> Vec<String> {
        let mut a = analyzer();
        let mut stream = a.token_stream(s);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    #[test]
    fn english_is_lowercased_and_folded() {
        assert_eq!(
            texts("Café BRIDAL Packages!"),
            ["cafe", "bridal", "packages"]
        );
    }

    #[test]
    fn emoji_are_ignored() {
        assert_eq!(texts("hi 😀👍🏽 there ❤️"), ["hi", "there"]);
    }

    #[test]
    fn devanagari_words_stay_whole() {
        // Vowel signs, virama and nukta stay inside the word.
        assert_eq!(
            texts("शादी का पैकेज क्या है? ज़रूर।"),
            ["शादी", "का", "पैकेज", "क्या", "है", "ज़रूर"]
        );
        assert_eq!(texts("स्त्री"), ["स्त्री"]);
    }

    #[test]
    fn romanized_hindi() {
        assert_eq!(
            texts("Shaadi ka package kitne ka hai?"),
            ["shaadi", "ka", "package", "kitne", "ka", "hai"]
        );
    }

    #[test]
    fn booking_codes_are_whole_tokens() {
        assert_eq!(
            texts("code BK-2931 ok"),
            ["code", "bk", "2931", "bk-2931", "ok"]
        );
        assert_eq!(texts("see-you later"), ["see", "you", "later"]);
    }

    #[test]
    fn phone_numbers_have_a_digits_token() {
        let t = texts("call +91 98765 43210 now");
        assert_eq!(t, ["call", "91", "98765", "43210", "919876543210", "now"]);
        let t = texts("(022) 2345-6789");
        assert!(t.contains(&"02223456789".to_string()), "{t:?}");
        assert_eq!(texts("room 12 34"), ["room", "12", "34"]);
    }

    #[test]
    fn compound_positions_and_ranges() {
        let toks = tokenize("a BK-2931 b");
        let code = toks.iter().find(|t| t.text == "BK-2931").unwrap();
        assert_eq!(
            (
                code.position,
                code.position_length,
                code.offset_from,
                code.offset_to
            ),
            (2, 2, 2, 9)
        );
        let b = toks.iter().find(|t| t.text == "b").unwrap();
        assert_eq!(b.position, 3);
    }

    proptest! {
        #[test]
        fn never_panics_and_offsets_are_valid(s in "\\PC{0,200}") {
            let toks = tokenize(&s);
            let mut last_pos = 0;
            for t in &toks {
                prop_assert!(s.is_char_boundary(t.offset_from) && s.is_char_boundary(t.offset_to));
                prop_assert!(t.offset_from < t.offset_to && t.offset_to <= s.len());
                prop_assert!(!t.text.is_empty());
                prop_assert!(t.position >= last_pos);
                last_pos = t.position;
            }
            let _ = texts(&s);
        }

        #[test]
        fn never_panics_on_any_chars(v in proptest::collection::vec(any::<char>(), 0..100)) {
            let s: String = v.into_iter().collect();
            let _ = texts(&s);
        }
    }
}
