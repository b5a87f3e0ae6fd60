//! Dates and times of day in English, Hindi (Devanagari) and romanized Hindi, resolved
//! against the local date in the business's time zone.
//!
//! Rules: a bare weekday ("Saturday", "shanivar") is its next occurrence, today
//! included ("sat", "sun", "wed" only when capitalized, being ordinary words too);
//! "next Monday" ("agle somvar", "अगले सोमवार") is that day of the next
//! calendar week when the bare weekday would fall in the current Monday-to-Sunday week,
//! otherwise the bare weekday; "kal"/"कल" means tomorrow; a day and month without a
//! year ("14th Dec", "14/12") is the next such date, today included; a day of the month
//! alone ("14 tarikh", "on the 14th") is the next such day. An hour without am/pm is
//! read from the time window said with it ("shaam 5 baje" → 17:00), else 1 to 7 as
//! afternoon/evening and 8 to 11 as morning. Impossible dates (31 Feb) are dropped.

use jiff::civil::{Date, Time};

use super::text::{Tok, phrase_at, word_match};
use super::{PreferredTime, TimeWindow};

/// What one message says about when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct When {
    pub(crate) date: Option<Date>,
    pub(crate) time: Option<PreferredTime>,
    /// Token indices consumed by dates and times (not budgets).
    pub(crate) used: Vec<usize>,
}

const DAY_AFTER: &[&str] = &[
    "day after tomorrow",
    "day after tmrw",
    "parso",
    "parson",
    "parsoon",
    "parsu",
    "परसों",
    "परसो",
];
const TODAY: &[&str] = &["today", "aaj", "aj", "आज", "tonight", "tonite"];
const TOMORROW: &[&str] = &[
    "tomorrow",
    "tmrw",
    "tmr",
    "tmrrw",
    "tomorow",
    "tommorow",
    "tommorrow",
    "kal",
    "kl",
    "कल",
];
const NEXT: &[&str] = &["next", "agle", "agla", "agli", "अगले", "अगला", "अगली"];
const THIS: &[&str] = &["this", "coming", "is", "iss", "इस", "आने"];

pub(crate) fn weekday_of(w: &str) -> Option<jiff::civil::Weekday> {
    use jiff::civil::Weekday as W;
    Some(match w {
        "monday" | "mon" | "somvar" | "somwar" | "somvaar" | "सोमवार" => W::Monday,
        "tuesday" | "tue" | "tues" | "mangalvar" | "mangalwar" | "mangalvaar" | "मंगलवार" => {
            W::Tuesday
        }
        "wednesday" | "wed" | "budhvar" | "budhwar" | "budhvaar" | "बुधवार" => {
            W::Wednesday
        }
        "thursday"
        | "thu"
        | "thur"
        | "thurs"
        | "guruvar"
        | "guruwar"
        | "brihaspativar"
        | "गुरुवार"
        | "गुरूवार"
        | "बृहस्पतिवार" => W::Thursday,
        "friday" | "fri" | "shukravar" | "shukrawar" | "sukravar" | "शुक्रवार" => {
            W::Friday
        }
        "saturday" | "sat" | "shanivar" | "shaniwar" | "shanivaar" | "शनिवार" => {
            W::Saturday
        }
        "sunday" | "sun" | "ravivar" | "raviwar" | "itwar" | "itvar" | "itvaar" | "रविवार"
        | "इतवार" => W::Sunday,
        _ => return None,
    })
}

pub(crate) fn month_of(w: &str) -> Option<i8> {
    Some(match w {
        "jan" | "january" | "जनवरी" => 1,
        "feb" | "february" | "फरवरी" => 2,
        "mar" | "march" | "मार्च" => 3,
        "apr" | "april" | "अप्रैल" => 4,
        "may" | "मई" => 5,
        "jun" | "june" | "जून" => 6,
        "jul" | "july" | "जुलाई" => 7,
        "aug" | "august" | "अगस्त" => 8,
        "sep" | "sept" | "september" | "सितंबर" | "सितम्बर" => 9,
        "oct" | "october" | "अक्टूबर" => 10,
        "nov" | "november" | "नवंबर" | "नवम्बर" => 11,
        "dec" | "december" | "दिसंबर" | "दिसम्बर" => 12,
        _ => return None,
    })
}

fn small_uint(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `14`, `14th`, `1st`, `2nd`, `23rd` → day 1 to 31, and whether it had a suffix.
fn ordinal_day(s: &str) -> Option<(i8, bool)> {
    let (num, suffixed) = match s.strip_suffix("st").or_else(|| s.strip_suffix("nd")) {
        Some(n) => (n, true),
        None => match s.strip_suffix("rd").or_else(|| s.strip_suffix("th")) {
            Some(n) => (n, true),
            None => (s, false),
        },
    };
    if num.len() > 2 {
        return None;
    }
    let d = small_uint(num)?;
    (1..=31).contains(&d).then_some((d as i8, suffixed))
}

fn add_days(d: Date, n: i64) -> Option<Date> {
    d.checked_add(jiff::Span::new().days(n)).ok()
}

fn bare_weekday(today: Date, w: jiff::civil::Weekday) -> Option<Date> {
    let delta = i64::from(w.to_monday_zero_offset() - today.weekday().to_monday_zero_offset());
    add_days(today, delta.rem_euclid(7))
}

fn next_weekday(today: Date, w: jiff::civil::Weekday) -> Option<Date> {
    let bare = bare_weekday(today, w)?;
    let today_off = i64::from(today.weekday().to_monday_zero_offset());
    let days_ahead = bare.since(today).ok()?.get_days();
    // Same Monday-to-Sunday week as today (today included): take the next week's.
    if i64::from(days_ahead) + today_off <= 6 {
        add_days(bare, 7)
    } else {
        Some(bare)
    }
}

/// The next date on or after `today` with this month and day; `year` if given.
fn month_day(today: Date, month: i8, day: i8, year: Option<i16>) -> Option<Date> {
    if let Some(y) = year {
        return Date::new(y, month, day).ok();
    }
    let y = today.year();
    [y, y.checked_add(1)?]
        .into_iter()
        .filter_map(|y| Date::new(y, month, day).ok())
        .find(|d| *d >= today)
}

/// The next date on or after `today` with this day of the month.
fn day_of_month(today: Date, day: i8) -> Option<Date> {
    let mut first = today.first_of_month();
    for _ in 0..3 {
        if let Ok(d) = Date::new(first.year(), first.month(), day)
            && d >= today
        {
            return Some(d);
        }
        first = first.checked_add(jiff::Span::new().months(1)).ok()?;
    }
    None
}

fn year_of(s: &str) -> Option<i16> {
    match s.len() {
        4 => small_uint(s).and_then(|y| i16::try_from(y).ok()),
        2 => small_uint(s).and_then(|y| i16::try_from(2000 + y).ok()),
        _ => None,
    }
}

/// `14/12`, `14/12/26`, `14-12-2026`, `2026-12-14`: `Some(None)` when the shape is a
/// date but the date is impossible.
fn numeric_date(s: &str, today: Date) -> Option<Option<Date>> {
    let sep = if s.contains('/') {
        '/'
    } else if s.contains('-') {
        '-'
    } else {
        return None;
    };
    let parts: Vec<&str> = s.split(sep).collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let num = |p: &str| p.parse::<i16>().ok();
    let date = match parts.as_slice() {
        [y, m, d] if y.len() == 4 => {
            let (y, m, d) = (num(y)?, num(m)?, num(d)?);
            Date::new(y, i8::try_from(m).ok()?, i8::try_from(d).ok()?).ok()
        }
        [d, m] if d.len() <= 2 && m.len() <= 2 => {
            let (d, m) = (num(d)?, num(m)?);
            match (i8::try_from(m), i8::try_from(d)) {
                (Ok(m), Ok(d)) if (1..=12).contains(&m) && (1..=31).contains(&d) => {
                    month_day(today, m, d, None)
                }
                _ => None,
            }
        }
        [d, m, y] if d.len() <= 2 && m.len() <= 2 => {
            let y = year_of(y)?;
            let (d, m) = (num(d)?, num(m)?);
            match (i8::try_from(m), i8::try_from(d)) {
                (Ok(m), Ok(d)) => Date::new(y, m, d).ok(),
                _ => None,
            }
        }
        _ => return None,
    };
    Some(date)
}

pub(crate) fn window_of(w: &str) -> Option<TimeWindow> {
    Some(match w {
        "morning" | "mrng" | "subah" | "subha" | "subeh" | "savere" | "सुबह" | "सवेरे" => {
            TimeWindow::Morning
        }
        "afternoon" | "dopahar" | "dopehar" | "dophar" | "dupahar" | "दोपहर" => {
            TimeWindow::Afternoon
        }
        "evening" | "eve" | "shaam" | "sham" | "शाम" => TimeWindow::Evening,
        "night" | "raat" | "rat" | "tonight" | "tonite" | "रात" => TimeWindow::Night,
        _ => return None,
    })
}

const GREETING_BEFORE_WINDOW: &[&str] = &["good", "gud", "shubh", "शुभ"];
const BAJE: &[&str] = &["baje", "bje", "baaje", "bajey", "बजे", "oclock", "o clock"];
const AT: &[&str] = &["at", "around", "by"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Meridiem {
    Am,
    Pm,
}

/// `5`, `5pm`, `5:30`, `5.30pm`, `17:00` → (hour, minute, meridiem, had minutes).
fn clock_token(s: &str) -> Option<(u8, u8, Option<Meridiem>, bool)> {
    let (num, mer) = if let Some(n) = s.strip_suffix("am") {
        (n, Some(Meridiem::Am))
    } else if let Some(n) = s.strip_suffix("pm") {
        (n, Some(Meridiem::Pm))
    } else {
        (s, None)
    };
    let (h, m, had_minutes) = match num.split_once([':', '.']) {
        Some((h, m)) if m.len() == 2 => (h, small_uint(m)?, true),
        Some(_) => return None,
        None => (num, 0, false),
    };
    if h.is_empty() || h.len() > 2 {
        return None;
    }
    let h = small_uint(h)?;
    if h > 23 || m > 59 {
        return None;
    }
    Some((h as u8, m as u8, mer, had_minutes))
}

/// An hour said without am/pm, read with the time window said with it.
fn resolve_hour(h: u8, window: Option<TimeWindow>) -> u8 {
    if h > 12 {
        return h;
    }
    match window {
        Some(TimeWindow::Morning) => h % 12,
        Some(TimeWindow::Afternoon) => {
            if h == 12 || h >= 11 {
                h
            } else {
                h + 12
            }
        }
        Some(TimeWindow::Evening) => {
            if h == 12 {
                h
            } else {
                h + 12
            }
        }
        Some(TimeWindow::Night) => match h {
            12 => 0,
            5..=11 => h + 12,
            _ => h,
        },
        None => match h {
            1..=7 => h + 12,
            _ => h,
        },
    }
}

struct Clock {
    hour: u8,
    minute: u8,
    /// Needs the window (no am/pm, hour 0 to 12).
    ambiguous: bool,
}

fn with_meridiem(h: u8, m: Option<Meridiem>) -> Option<u8> {
    match m {
        None => Some(h),
        Some(_) if h == 0 || h > 12 => None,
        Some(Meridiem::Am) => Some(h % 12),
        Some(Meridiem::Pm) => Some(h % 12 + 12),
    }
}

/// Finds a clock time starting at token `i`; returns it and the tokens it used.
fn clock_at(toks: &[Tok], i: usize) -> Option<(Clock, Vec<usize>)> {
    let t = &toks[i].text;
    let next = toks.get(i + 1).map(|t| t.text.as_str());
    // "साढ़े 5 बजे", "sava 6 baje", "paune 7 baje", "dhai baje", "dedh baje"
    let fraction: Option<(i16, bool)> = match t.as_str() {
        "saade" | "sade" | "saadhe" | "sadhe" | "साढे" => Some((30, false)),
        "sava" | "sawa" | "savaa" | "सवा" => Some((15, false)),
        "paune" | "pone" | "पौने" => Some((-15, false)),
        "dhai" | "dhaai" | "ढाई" => Some((150, true)),
        "dedh" | "derh" | "डेढ" => Some((90, true)),
        _ => None,
    };
    if let Some((delta, whole)) = fraction {
        let baje = |k: usize| BAJE.iter().find_map(|p| phrase_at(toks, k, p));
        let (base, used_n) = if whole {
            (0i16, 1usize)
        } else {
            let h = small_uint(next?)?;
            if !(1..=12).contains(&h) {
                return None;
            }
            (h as i16 * 60, 2)
        };
        let b = baje(i + used_n)?;
        let minutes = (base + delta).rem_euclid(24 * 60);
        let used = (i..i + used_n + b).collect();
        return Some((
            Clock {
                hour: (minutes / 60) as u8,
                minute: (minutes % 60) as u8,
                ambiguous: true,
            },
            used,
        ));
    }
    if t == "noon" || t == "midday" {
        return Some((
            Clock {
                hour: 12,
                minute: 0,
                ambiguous: false,
            },
            vec![i],
        ));
    }
    if t == "midnight" {
        return Some((
            Clock {
                hour: 0,
                minute: 0,
                ambiguous: false,
            },
            vec![i],
        ));
    }
    let (h, m, mer, had_minutes) = clock_token(t)?;
    // "5 pm", "5 p.m."
    if mer.is_none()
        && let Some(n) = next
        && (n == "am" || n == "pm")
    {
        let mer = if n == "am" {
            Meridiem::Am
        } else {
            Meridiem::Pm
        };
        let hour = with_meridiem(h, Some(mer))?;
        return Some((
            Clock {
                hour,
                minute: m,
                ambiguous: false,
            },
            vec![i, i + 1],
        ));
    }
    if mer.is_some() {
        let hour = with_meridiem(h, mer)?;
        return Some((
            Clock {
                hour,
                minute: m,
                ambiguous: false,
            },
            vec![i],
        ));
    }
    // "5 baje", "5:30 baje", "5 o'clock"
    if let Some(b) = BAJE.iter().find_map(|p| phrase_at(toks, i + 1, p)) {
        return Some((
            Clock {
                hour: h,
                minute: m,
                ambiguous: h <= 12,
            },
            (i..=i + b).collect(),
        ));
    }
    // "at 5", "at 17:00", "around 5:30"
    let after_at = i > 0 && AT.iter().any(|p| word_match(&toks[i - 1].text, p));
    if after_at && (had_minutes || h <= 23) && (had_minutes || h >= 1) {
        return Some((
            Clock {
                hour: h,
                minute: m,
                ambiguous: h <= 12,
            },
            vec![i],
        ));
    }
    // A bare 24-hour "17:30"
    if had_minutes && h >= 13 {
        return Some((
            Clock {
                hour: h,
                minute: m,
                ambiguous: false,
            },
            vec![i],
        ));
    }
    if had_minutes && !toks[i].text.contains('.') {
        return Some((
            Clock {
                hour: h,
                minute: m,
                ambiguous: true,
            },
            vec![i],
        ));
    }
    None
}

/// Finds the first date and the first time of day in one message.
pub(crate) fn parse_when(toks: &[Tok], today: Date) -> When {
    let mut out = When::default();
    let mut window: Option<TimeWindow> = None;
    let mut clock: Option<Clock> = None;
    let mut i = 0;
    while i < toks.len() {
        if toks[i].placeholder {
            i += 1;
            continue;
        }
        let text = toks[i].text.as_str();
        if out.date.is_none()
            && let Some((date, n)) = date_at(toks, i, today)
        {
            // An impossible date is dropped (None), but its tokens are not a budget.
            out.used.extend(i..i + n);
            out.date = date;
            if matches!(text, "tonight" | "tonite") && window.is_none() {
                window = Some(TimeWindow::Night);
            }
            i += n;
            continue;
        }
        if window.is_none()
            && let Some(w) = window_of(text)
        {
            let greeting = i > 0
                && GREETING_BEFORE_WINDOW
                    .iter()
                    .any(|g| toks[i - 1].text == *g);
            if !greeting {
                window = Some(w);
                out.used.push(i);
            }
            i += 1;
            continue;
        }
        if clock.is_none()
            && let Some((c, used)) = clock_at(toks, i)
        {
            i = used.last().map_or(i + 1, |l| l + 1);
            out.used.extend(used);
            clock = Some(c);
            continue;
        }
        i += 1;
    }
    out.time = match clock {
        Some(c) => {
            let hour = if c.ambiguous {
                resolve_hour(c.hour, window)
            } else {
                c.hour
            };
            Time::new(hour as i8, c.minute as i8, 0, 0)
                .ok()
                .map(PreferredTime::At)
        }
        None => window.map(PreferredTime::Window),
    };
    out
}

/// A date starting at token `i`: `(Some(date) or None if impossible, tokens used)`.
fn date_at(toks: &[Tok], i: usize, today: Date) -> Option<(Option<Date>, usize)> {
    let text = toks[i].text.as_str();
    let next_text = toks.get(i + 1).map(|t| t.text.as_str());
    for p in DAY_AFTER {
        if let Some(n) = phrase_at(toks, i, p) {
            return Some((add_days(today, 2), n));
        }
    }
    if TODAY.contains(&text) {
        return Some((Some(today), 1));
    }
    if TOMORROW.contains(&text) {
        return Some((add_days(today, 1), 1));
    }
    if NEXT.contains(&text)
        && let Some(w) = next_text.and_then(weekday_of)
    {
        return Some((next_weekday(today, w), 2));
    }
    if THIS.contains(&text)
        && let Some(w) = next_text.and_then(weekday_of)
    {
        return Some((bare_weekday(today, w), 2));
    }
    if let Some(w) = weekday_of(text) {
        // "sun" and "sat" are also ordinary words; take them only next to a date cue.
        let short_ambiguous = matches!(text, "sun" | "sat" | "wed" | "mar");
        if !short_ambiguous || toks[i].capitalized {
            return Some((bare_weekday(today, w), 1));
        }
    }
    if let Some(r) = numeric_date(text, today) {
        return Some((r, 1));
    }
    // "14th Dec", "14 of december 2026", "14 दिसंबर"
    if let Some((day, suffixed)) = ordinal_day(text) {
        let mut k = i + 1;
        if toks.get(k).is_some_and(|t| t.text == "of") {
            k += 1;
        }
        if let Some(m) = toks.get(k).and_then(|t| month_of(&t.text)) {
            let year = toks
                .get(k + 1)
                .and_then(|t| (t.text.len() == 4).then(|| year_of(&t.text)).flatten());
            let used = k + 1 - i + usize::from(year.is_some());
            return Some((month_day(today, m, day, year), used));
        }
        // "14 tarikh", "14th ko", "on the 14th"
        let cue_after = next_text.is_some_and(|n| {
            matches!(
                n,
                "tarikh" | "tareekh" | "tarik" | "tarikh ko" | "तारीख" | "तारीक"
            ) || (suffixed && matches!(n, "ko" | "को"))
        });
        let cue_before = suffixed && i > 0 && matches!(toks[i - 1].text.as_str(), "the" | "on");
        if cue_after || cue_before {
            return Some((day_of_month(today, day), 1 + usize::from(cue_after)));
        }
    }
    // "Dec 14", "December 14th, 2026"
    if let Some(m) = month_of(text)
        && let Some((day, _)) = next_text.and_then(ordinal_day)
    {
        let year = toks
            .get(i + 2)
            .and_then(|t| (t.text.len() == 4).then(|| year_of(&t.text)).flatten());
        let used = 2 + usize::from(year.is_some());
        return Some((month_day(today, m, day, year), used));
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::super::text::tokenize;
    use super::*;
    use jiff::civil::date;

    // Saturday 28 Nov 2026
    const TODAY: Date = date(2026, 11, 28);

    #[test]
    fn next_weekday_rule() {
        // From Saturday: next Monday is in the next week already.
        assert_eq!(
            next_weekday(TODAY, jiff::civil::Weekday::Monday),
            Some(date(2026, 11, 30))
        );
        // Next Sunday (tomorrow is this week's Sunday) is a week later.
        assert_eq!(
            next_weekday(TODAY, jiff::civil::Weekday::Sunday),
            Some(date(2026, 12, 6))
        );
        assert_eq!(
            next_weekday(TODAY, jiff::civil::Weekday::Saturday),
            Some(date(2026, 12, 5))
        );
        // From Monday 30 Nov: next Friday is 11 Dec.
        assert_eq!(
            next_weekday(date(2026, 11, 30), jiff::civil::Weekday::Friday),
            Some(date(2026, 12, 11))
        );
    }

    #[test]
    fn impossible_dates_are_dropped_but_consumed() {
        let w = parse_when(&tokenize("31 feb at 5pm"), TODAY);
        assert_eq!(w.date, None);
        assert!(w.used.contains(&0) && w.used.contains(&1));
        assert_eq!(w.time, Some(PreferredTime::At(Time::constant(17, 0, 0, 0))));
        assert_eq!(parse_when(&tokenize("on 32/13"), TODAY).date, None);
    }

    #[test]
    fn leap_day_without_year_is_the_next_existing_one() {
        assert_eq!(month_day(TODAY, 2, 29, None), None);
        assert_eq!(
            month_day(date(2027, 3, 1), 2, 29, None),
            Some(date(2028, 2, 29))
        );
    }
}
