//! Redaction of identifiers the assistant never needs (privacy policy s.5).
//!
//! Numbers are found by a scanner rather than a regular expression so that
//! checksums decide: a digit run (digits in groups separated by one space or
//! `-`) is searched for windows of whole groups that form a Luhn-valid card
//! number (13 to 19 digits), a Verhoeff-valid Aadhaar number (12 digits as
//! one group or 4-4-4, first digit 2 to 9) or a phone number (10-digit Indian
//! mobile, `0` + 10 digits, `91` + mobile, or `+` and 8 to 15 digits). Dates,
//! times and prices fail those shapes and stay as they are.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::model::RedactionRules;

/// What a redaction replaced; its placeholder is `[name]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum RedactionKind {
    /// A payment card number.
    Card,
    /// An Aadhaar number.
    Aadhaar,
    /// A PAN number.
    Pan,
    /// An e-mail address.
    Email,
    /// A phone number other than the customer's own.
    Phone,
    /// A match of a pattern added by the policy, by its name.
    Custom(String),
}

impl RedactionKind {
    /// The name in placeholders, counts and ledger entries.
    pub fn name(&self) -> &str {
        match self {
            RedactionKind::Card => "card",
            RedactionKind::Aadhaar => "aadhaar",
            RedactionKind::Pan => "pan",
            RedactionKind::Email => "email",
            RedactionKind::Phone => "phone",
            RedactionKind::Custom(name) => name,
        }
    }

    /// The text that replaces a match, e.g. `[card]`.
    pub fn placeholder(&self) -> String {
        format!("[{}]", self.name())
    }

    /// Whether `name` is one of the built-in kinds.
    pub fn is_builtin_name(name: &str) -> bool {
        matches!(name, "card" | "aadhaar" | "pan" | "email" | "phone")
    }
}

impl From<String> for RedactionKind {
    fn from(value: String) -> Self {
        match value.as_str() {
            "card" => RedactionKind::Card,
            "aadhaar" => RedactionKind::Aadhaar,
            "pan" => RedactionKind::Pan,
            "email" => RedactionKind::Email,
            "phone" => RedactionKind::Phone,
            _ => RedactionKind::Custom(value),
        }
    }
}

impl From<RedactionKind> for String {
    fn from(value: RedactionKind) -> Self {
        value.name().to_owned()
    }
}

impl fmt::Display for RedactionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of [`Redactor::redact`]: the text to send and how many
/// matches of each kind were replaced (counts are safe to ledger).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redacted {
    /// The text with every match replaced by its placeholder.
    pub text: String,
    /// Replacements per kind; kinds with none are absent.
    pub counts: BTreeMap<RedactionKind, usize>,
}

impl Redacted {
    /// Total replacements.
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }
}

/// Why a redaction pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The name is not lowercase letters, digits and `_`, or is taken.
    #[error("redaction pattern name `{0}` must be 1-32 of a-z, 0-9, _ and not a built-in kind")]
    BadName(String),
    /// Two patterns share a name.
    #[error("redaction pattern name `{0}` is used twice")]
    Duplicate(String),
    /// The regular expression does not compile.
    #[error("redaction pattern `{name}` does not compile: {reason}")]
    Regex {
        /// The pattern's name.
        name: String,
        /// The compiler's message.
        reason: String,
    },
    /// The regular expression matches the empty string.
    #[error("redaction pattern `{0}` matches the empty string")]
    MatchesEmpty(String),
}

/// Compiles one extra pattern the way the redactor does (size-limited).
pub(crate) fn compile_pattern(name: &str, regex: &str) -> Result<Regex, PatternError> {
    let name_ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !name_ok || RedactionKind::is_builtin_name(name) {
        return Err(PatternError::BadName(name.to_owned()));
    }
    let compiled = regex::RegexBuilder::new(regex)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| PatternError::Regex {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
    if compiled.is_match("") {
        return Err(PatternError::MatchesEmpty(name.to_owned()));
    }
    Ok(compiled)
}

/// Replaces identifiers with typed placeholders. Built from a policy by
/// [`crate::Policy::redactor`] or [`crate::EffectivePolicy::redactor`].
#[derive(Debug, Clone)]
pub struct Redactor {
    card: bool,
    aadhaar: bool,
    phone: bool,
    pan: Option<Regex>,
    email: Option<Regex>,
    custom: Vec<(RedactionKind, Regex)>,
}

impl Redactor {
    /// Builds a redactor from redaction rules.
    pub fn new(rules: &RedactionRules) -> Result<Self, PatternError> {
        let mut custom = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for p in &rules.patterns {
            let p = p.get_ref();
            if !seen.insert(p.name.clone()) {
                return Err(PatternError::Duplicate(p.name.clone()));
            }
            custom.push((
                RedactionKind::Custom(p.name.clone()),
                compile_pattern(&p.name, &p.regex)?,
            ));
        }
        let builtin = |on: bool, re: &str| -> Result<Option<Regex>, PatternError> {
            if !on {
                return Ok(None);
            }
            Regex::new(re).map(Some).map_err(|e| PatternError::Regex {
                name: "builtin".to_owned(),
                reason: e.to_string(),
            })
        };
        Ok(Self {
            card: rules.card,
            aadhaar: rules.aadhaar,
            phone: rules.phone,
            // AAAAA9999A; the fourth letter is the holder type.
            pan: builtin(rules.pan, r"(?i)\b[a-z]{3}[abcfghljpt][a-z][0-9]{4}[a-z]\b")?,
            email: builtin(
                rules.email,
                r"(?i)\b[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}\b",
            )?,
            custom,
        })
    }

    /// The kinds this redactor replaces, as obligations list them.
    pub fn kinds(&self) -> Vec<RedactionKind> {
        let mut kinds = Vec::new();
        if self.card {
            kinds.push(RedactionKind::Card);
        }
        if self.aadhaar {
            kinds.push(RedactionKind::Aadhaar);
        }
        if self.pan.is_some() {
            kinds.push(RedactionKind::Pan);
        }
        if self.email.is_some() {
            kinds.push(RedactionKind::Email);
        }
        if self.phone {
            kinds.push(RedactionKind::Phone);
        }
        kinds.extend(self.custom.iter().map(|(k, _)| k.clone()));
        kinds
    }

    /// Redacts `text`. `customer_own_number` (any formatting) is the number
    /// of the customer in the conversation, which is kept; every other phone
    /// number is replaced.
    pub fn redact(&self, text: &str, customer_own_number: Option<&str>) -> Redacted {
        let mut counts = BTreeMap::new();
        let mut out = text.to_owned();
        // Text patterns first: an e-mail address may contain digits.
        if let Some(re) = &self.email {
            out = replace_regex(&out, re, &RedactionKind::Email, &mut counts);
        }
        if let Some(re) = &self.pan {
            out = replace_regex(&out, re, &RedactionKind::Pan, &mut counts);
        }
        let own = customer_own_number
            .map(national_digits)
            .filter(|own| !own.is_empty());
        let is_own = |digits: &[u8]| {
            own.as_ref()
                .is_some_and(|own| national_digits_bytes(digits) == *own)
        };
        if self.card || self.aadhaar {
            out = replace_numbers(&out, &mut counts, |digits, shape, _| {
                // The customer's own number, written without separators,
                // can look like an Aadhaar number: it is neither.
                if digits.len() <= 13 && is_own(digits) {
                    return None;
                }
                if self.card && (13..=19).contains(&digits.len()) && luhn_valid(digits) {
                    return Some(RedactionKind::Card);
                }
                let aadhaar_shape = shape == [12] || shape == [4, 4, 4];
                if self.aadhaar
                    && aadhaar_shape
                    && matches!(digits.first(), Some(b'2'..=b'9'))
                    && verhoeff_valid(digits)
                {
                    return Some(RedactionKind::Aadhaar);
                }
                None
            });
        }
        if self.phone {
            out = replace_numbers(&out, &mut counts, |digits, _, plus| {
                (is_phone(digits, plus) && !is_own(digits)).then_some(RedactionKind::Phone)
            });
        }
        for (kind, re) in &self.custom {
            out = replace_regex(&out, re, kind, &mut counts);
        }
        Redacted { text: out, counts }
    }
}

fn replace_regex(
    text: &str,
    re: &Regex,
    kind: &RedactionKind,
    counts: &mut BTreeMap<RedactionKind, usize>,
) -> String {
    let mut n = 0;
    let out = re.replace_all(text, |_: &regex::Captures<'_>| {
        n += 1;
        kind.placeholder()
    });
    if n > 0 {
        *counts.entry(kind.clone()).or_insert(0) += n;
    }
    out.into_owned()
}

/// One group of digits in a run: byte range in the text.
#[derive(Debug, Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
}

/// Finds digit runs and replaces windows of whole groups that `classify`
/// accepts, longest window first at each starting group.
///
/// `classify(digits, group_lengths, preceded_by_plus)`.
fn replace_numbers<F>(
    text: &str,
    counts: &mut BTreeMap<RedactionKind, usize>,
    classify: F,
) -> String
where
    F: Fn(&[u8], &[usize], bool) -> Option<RedactionKind>,
{
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // Collect one run of groups.
        let mut groups = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            groups.push(Group { start, end: j });
            let sep = j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'-');
            if sep && j + 1 < bytes.len() && bytes[j + 1].is_ascii_digit() {
                j += 1;
            } else {
                break;
            }
        }
        let run_end = j;
        let mut g = 0;
        while g < groups.len() {
            // Longest window of whole groups with at most 19 digits.
            let mut kmax = g;
            let mut total = 0;
            while kmax < groups.len() && total + (groups[kmax].end - groups[kmax].start) <= 19 {
                total += groups[kmax].end - groups[kmax].start;
                kmax += 1;
            }
            let mut matched = None;
            let mut k = kmax;
            while k > g {
                let window = &groups[g..k];
                let digits: Vec<u8> = window
                    .iter()
                    .flat_map(|gr| bytes[gr.start..gr.end].iter().copied())
                    .collect();
                let shape: Vec<usize> = window.iter().map(|gr| gr.end - gr.start).collect();
                let plus = window[0].start > 0 && bytes[window[0].start - 1] == b'+';
                if let Some(kind) = classify(&digits, &shape, plus) {
                    matched = Some((kind, k));
                    break;
                }
                k -= 1;
            }
            if let Some((kind, k)) = matched {
                let mut start = groups[g].start;
                // A leading `+` belongs to the phone number.
                if kind == RedactionKind::Phone && start > 0 && bytes[start - 1] == b'+' {
                    start -= 1;
                }
                out.push_str(&text[copied..start]);
                out.push_str(&kind.placeholder());
                copied = groups[k - 1].end;
                *counts.entry(kind).or_insert(0) += 1;
                g = k;
            } else {
                g += 1;
            }
        }
        i = run_end;
    }
    out.push_str(&text[copied..]);
    out
}

fn is_phone(digits: &[u8], plus: bool) -> bool {
    let mobile = |d: &[u8]| d.len() == 10 && matches!(d[0], b'6'..=b'9');
    if plus {
        return (8..=15).contains(&digits.len());
    }
    match digits.len() {
        10 => mobile(digits),
        11 => digits[0] == b'0',
        12 => digits.starts_with(b"91") && mobile(&digits[2..]),
        _ => false,
    }
}

/// The last ten digits of a number (its national part in India), or all of
/// them when shorter: two spellings of one number compare equal.
fn national_digits(number: &str) -> Vec<u8> {
    let digits: Vec<u8> = number.bytes().filter(u8::is_ascii_digit).collect();
    national_digits_bytes(&digits)
}

fn national_digits_bytes(digits: &[u8]) -> Vec<u8> {
    let skip = digits.len().saturating_sub(10);
    digits[skip..].to_vec()
}

/// Luhn checksum over ASCII digits.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if digits.is_empty() {
        return false;
    }
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d.wrapping_sub(b'0'));
        if v > 9 {
            return false;
        }
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

const VERHOEFF_D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];

const VERHOEFF_P: [[u8; 10]; 8] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 8, 7, 0, 6],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];

const VERHOEFF_INV: [u8; 10] = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9];

/// Verhoeff checksum over ASCII digits (the last digit is the check digit).
pub fn verhoeff_valid(digits: &[u8]) -> bool {
    if digits.is_empty() {
        return false;
    }
    let mut c = 0u8;
    for (i, d) in digits.iter().rev().enumerate() {
        let v = d.wrapping_sub(b'0');
        if v > 9 {
            return false;
        }
        c = VERHOEFF_D[usize::from(c)][usize::from(VERHOEFF_P[i % 8][usize::from(v)])];
    }
    c == 0
}

/// The Verhoeff check digit (ASCII) to append to `payload` (ASCII digits);
/// `None` if `payload` holds a non-digit. Useful for test data.
pub fn verhoeff_check_digit(payload: &[u8]) -> Option<u8> {
    let mut c = 0u8;
    for (i, d) in payload.iter().rev().enumerate() {
        let v = d.wrapping_sub(b'0');
        if v > 9 {
            return None;
        }
        c = VERHOEFF_D[usize::from(c)][usize::from(VERHOEFF_P[(i + 1) % 8][usize::from(v)])];
    }
    Some(b'0' + VERHOEFF_INV[usize::from(c)])
}

/// The Luhn check digit (ASCII) to append to `payload` (ASCII digits);
/// `None` if `payload` holds a non-digit. Useful for test data.
pub fn luhn_check_digit(payload: &[u8]) -> Option<u8> {
    let mut sum = 0u32;
    for (i, d) in payload.iter().rev().enumerate() {
        let mut v = u32::from(d.wrapping_sub(b'0'));
        if v > 9 {
            return None;
        }
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    let check = (10 - sum % 10) % 10;
    u8::try_from(check).ok().map(|c| b'0' + c)
}
