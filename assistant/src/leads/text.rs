//! Tokenizer for lead extraction: lower case, Devanagari digits to ASCII, nukta and
//! chandrabindu folded, numbers kept whole (`5:30`, `14/12/2026`, `1,500` → `1500`),
//! `₹` and `$` as their own tokens, redaction placeholders such as `[PHONE]` marked.

/// One token of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tok {
    /// Normalized text.
    pub(crate) text: String,
    /// The original token started with an upper-case letter.
    pub(crate) capitalized: bool,
    /// A sentence boundary (`.`, `,`, `!`, `?`, `;`, `।`, newline) precedes the token.
    pub(crate) boundary_before: bool,
    /// A redaction placeholder such as `[NAME]` (its text is `[]`).
    pub(crate) placeholder: bool,
}

fn is_deva_letter(c: char) -> bool {
    ('\u{0900}'..='\u{097F}').contains(&c)
        && !matches!(c, '\u{0964}' | '\u{0965}')
        && !('\u{0966}'..='\u{096F}').contains(&c)
}

fn deva_digit(c: char) -> Option<char> {
    let d = u32::from(c).checked_sub(0x0966)?;
    if d < 10 {
        char::from_digit(d, 10)
    } else {
        None
    }
}

fn is_boundary(c: char) -> bool {
    matches!(
        c,
        '.' | ',' | '!' | '?' | ';' | '\n' | '\r' | '\u{0964}' | '\u{0965}'
    )
}

/// A placeholder `[A-Z0-9_]+]` starting at `chars[i] == '['`; returns its length.
fn placeholder_len(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < chars.len() && j - i <= 33 {
        let c = chars[j];
        if c == ']' {
            return (j > i + 1).then_some(j - i + 1);
        }
        if !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
            return None;
        }
        j += 1;
    }
    None
}

struct Builder {
    toks: Vec<Tok>,
    cur: String,
    cap: bool,
    boundary: bool,
}

impl Builder {
    fn flush(&mut self) {
        if !self.cur.is_empty() {
            self.toks.push(Tok {
                text: std::mem::take(&mut self.cur),
                capitalized: self.cap,
                boundary_before: self.boundary,
                placeholder: false,
            });
            self.boundary = false;
            self.cap = false;
        }
    }
    fn push_whole(&mut self, text: &str, placeholder: bool) {
        self.flush();
        self.toks.push(Tok {
            text: text.to_owned(),
            capitalized: false,
            boundary_before: self.boundary,
            placeholder,
        });
        self.boundary = false;
    }
}

/// Splits a message into tokens.
pub(crate) fn tokenize(input: &str) -> Vec<Tok> {
    let chars: Vec<char> = input.chars().collect();
    let mut b = Builder {
        toks: Vec::with_capacity(chars.len() / 4 + 1),
        cur: String::new(),
        cap: false,
        boundary: false,
    };
    let digit_at = |j: usize| -> bool {
        chars
            .get(j)
            .is_some_and(|&c| c.is_ascii_digit() || deva_digit(c).is_some())
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(d) = deva_digit(c) {
            b.cur.push(d);
        } else if is_deva_letter(c) {
            match c {
                '\u{093C}' => {}
                '\u{0901}' => b.cur.push('\u{0902}'),
                _ => b.cur.push(c),
            }
        } else if c.is_alphanumeric() {
            if b.cur.is_empty() {
                b.cap = c.is_uppercase();
            }
            b.cur.extend(c.to_lowercase());
        } else if c == '\'' || c == '\u{2019}' {
            // I'm -> im, name's -> names
        } else if c == '₹' || c == '$' {
            b.push_whole(if c == '₹' { "₹" } else { "$" }, false);
        } else if c == '[' && placeholder_len(&chars, i).is_some() {
            let len = placeholder_len(&chars, i).unwrap_or(1);
            b.push_whole("[]", true);
            i += len;
            continue;
        } else if matches!(c, ':' | '.' | '/' | '-' | ',')
            && b.cur.chars().last().is_some_and(|l| l.is_ascii_digit())
            && digit_at(i + 1)
        {
            if c != ',' {
                b.cur.push(c);
            }
        } else if c == '.'
            && b.cur.chars().count() == 1
            && b.cur.chars().all(|l| l.is_ascii_alphabetic())
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_alphabetic())
        {
            // a.m. / p.m.: join the letters
        } else {
            b.flush();
            if is_boundary(c) {
                b.boundary = true;
            }
        }
        i += 1;
    }
    b.flush();
    b.toks
}

/// Whether a token matches a pattern word; a trailing `*` matches by prefix.
pub(crate) fn word_match(word: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => word.starts_with(prefix),
        None => word == pattern,
    }
}

/// Whether the phrase pattern (words separated by spaces) matches at token `i`;
/// returns the number of tokens matched.
pub(crate) fn phrase_at(toks: &[Tok], i: usize, phrase: &str) -> Option<usize> {
    let mut n = 0;
    for (k, p) in phrase.split(' ').enumerate() {
        let t = toks.get(i + k)?;
        if t.placeholder || !word_match(&t.text, p) {
            return None;
        }
        n += 1;
    }
    Some(n)
}

/// A list of phrase patterns compiled once: words split, prefix flags set, and each
/// phrase's first byte kept so most positions are rejected with one comparison.
pub(crate) struct PhraseSet {
    phrases: Vec<Vec<(&'static str, bool)>>,
    first_bytes: Vec<Option<u8>>,
}

impl PhraseSet {
    /// Compiles the patterns (words separated by spaces; `*` suffix: prefix match).
    pub(crate) fn new<'a>(lists: impl IntoIterator<Item = &'a [&'static str]>) -> Self {
        let mut phrases = Vec::new();
        let mut first_bytes = Vec::new();
        for list in lists {
            for p in list {
                let words: Vec<(&'static str, bool)> = p
                    .split(' ')
                    .map(|w| match w.strip_suffix('*') {
                        Some(prefix) => (prefix, true),
                        None => (w, false),
                    })
                    .collect();
                first_bytes.push(words.first().and_then(|(w, _)| w.bytes().next()));
                phrases.push(words);
            }
        }
        PhraseSet {
            phrases,
            first_bytes,
        }
    }

    fn at(&self, toks: &[Tok], i: usize, k: usize) -> Option<usize> {
        let words = &self.phrases[k];
        for (j, (w, prefix)) in words.iter().enumerate() {
            let t = toks.get(i + j)?;
            let ok = !t.placeholder
                && if *prefix {
                    t.text.starts_with(w)
                } else {
                    t.text == *w
                };
            if !ok {
                return None;
            }
        }
        Some(words.len())
    }

    /// The first position where a phrase matches, with the number of tokens matched.
    pub(crate) fn find(&self, toks: &[Tok]) -> Option<(usize, usize)> {
        for (i, t) in toks.iter().enumerate() {
            let first = t.text.as_bytes().first().copied();
            for k in 0..self.phrases.len() {
                if self.first_bytes[k].is_some() && self.first_bytes[k] != first {
                    continue;
                }
                if let Some(n) = self.at(toks, i, k) {
                    return Some((i, n));
                }
            }
        }
        None
    }

    /// Whether any phrase occurs.
    pub(crate) fn any(&self, toks: &[Tok]) -> bool {
        self.find(toks).is_some()
    }
}

/// Levenshtein distance bounded by 1, on bytes (callers pass ASCII): whether `a` and
/// `b` differ by at most one insertion, deletion or substitution.
pub(crate) fn within_one_edit(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
    if prefix == short.len() {
        return true;
    }
    if short.len() == long.len() {
        short[prefix + 1..] == long[prefix + 1..]
    } else {
        short[prefix..] == long[prefix + 1..]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn texts(s: &str) -> Vec<String> {
        tokenize(s).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn numbers_stay_whole() {
        assert_eq!(texts("at 5:30pm, ok?"), ["at", "5:30pm", "ok"]);
        assert_eq!(texts("on 14/12/2026"), ["on", "14/12/2026"]);
        assert_eq!(texts("Rs. 1,500/-"), ["rs", "1500"]);
        assert_eq!(texts("₹3k"), ["₹", "3k"]);
        assert_eq!(texts("५ बजे"), ["5", "बजे"]);
        assert_eq!(texts("5 p.m."), ["5", "pm"]);
        assert_eq!(texts("I'm Asha"), ["im", "asha"]);
    }

    #[test]
    fn placeholders_and_boundaries() {
        let t = tokenize("my name is [NAME]. Call [PHONE]");
        assert!(t[3].placeholder);
        assert!(t[4].boundary_before && t[4].capitalized);
        assert!(t[5].placeholder);
        assert_eq!(texts("[not a placeholder]"), ["not", "a", "placeholder"]);
    }

    #[test]
    fn edit_distance() {
        assert!(within_one_edit("colour", "color"));
        assert!(within_one_edit("facial", "facials"));
        assert!(within_one_edit("haircut", "haircat"));
        assert!(!within_one_edit("haircut", "hairspa"));
        assert!(within_one_edit("", "a"));
        assert!(!within_one_edit("abc", "cab"));
    }
}
