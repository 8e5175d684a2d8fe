//! A small parser for the date formats scanner exports use, returning RFC 3339
//! (`YYYY-MM-DDTHH:MM:SS+HH:MM`). Seconds fractions are dropped; a date without a zone is
//! taken as UTC; a zone abbreviation (US zones, UTC/GMT) becomes its offset.
//!
//! Accepted shapes (case-insensitive):
//! - `2023-06-08T01:58:56.166Z`, `2025-08-22T16:27:22+02:00`, `2024-09-16 04:00:30`,
//!   `2024-08-04`, `2000/01/04`
//! - `Jan 5, 2021 10:24:08 MST`, `Feb 03, 2026 07:00 AM`, `04 Feb 2026 10:00AM GMT-0500`
//! - `31-Oct-24` (two-digit years: 00-69 → 20xx, 70-99 → 19xx)
//! - `05/13/2021 07:08:28`, `5/13/2021 7:08`, `22/09/2022 13:01`, `23.11.2009`: slash dates
//!   are month-first unless the first number is > 12, or the second is ≤ 12 and the format
//!   is known to write day-first (`day_first`); dotted dates are always day-first.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A run of digits: value (saturating past 9 digits) and number of digits.
    Num(u32, usize),
    /// A run of ASCII letters, lower-cased.
    Word(String),
    /// One punctuation character.
    Sym(char),
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let mut toks = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_digit() {
            let (mut v, mut n) = (0u32, 0usize);
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                if n < 9 {
                    v = v * 10 + d;
                }
                n += 1;
                chars.next();
            }
            toks.push(Tok::Num(v, n));
        } else if c.is_ascii_alphabetic() {
            let mut w = String::new();
            while let Some(&l) = chars.peek().filter(|l| l.is_ascii_alphabetic()) {
                w.push(l.to_ascii_lowercase());
                chars.next();
            }
            toks.push(Tok::Word(w));
        } else if c.is_whitespace() {
            chars.next();
        } else if matches!(c, '-' | '/' | ':' | '.' | ',' | '+') {
            toks.push(Tok::Sym(c));
            chars.next();
        } else {
            return None;
        }
    }
    Some(toks)
}

fn month(word: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    if word.len() < 3 {
        return None;
    }
    MONTHS.iter().position(|m| m.starts_with(word)).and_then(|i| u32::try_from(i + 1).ok())
}

/// Offset in minutes of a zone abbreviation.
fn zone(word: &str) -> Option<i32> {
    let hours = match word {
        "z" | "utc" | "gmt" | "ut" => 0,
        "est" => -5,
        "edt" | "ast" => -4,
        "cst" => -6,
        "cdt" => -5,
        "mst" => -7,
        "mdt" => -6,
        "pst" => -8,
        "pdt" => -7,
        "akst" => -9,
        "akdt" => -8,
        "hst" => -10,
        _ => return None,
    };
    Some(hours * 60)
}

fn full_year(y: u32, digits: usize) -> Option<u32> {
    match digits {
        4 => Some(y),
        2 if y < 70 => Some(2000 + y),
        2 => Some(1900 + y),
        _ => None,
    }
}

/// Reads the date part; returns (year, month, day) and the number of tokens used.
fn date_part(t: &[Tok], day_first: bool) -> Option<((u32, u32, u32), usize)> {
    use Tok::{Num, Sym, Word};
    match t {
        [Num(y, 4), Sym(s1), Num(m, 1..=2), Sym(s2), Num(d, 1..=2), ..] if s1 == s2 && matches!(s1, '-' | '/') => {
            Some(((*y, *m, *d), 5))
        }
        [Num(a, 1..=2), Sym(s1), Num(b, 1..=2), Sym(s2), Num(y, n @ (2 | 4)), ..]
            if s1 == s2 && matches!(s1, '/' | '.' | '-') =>
        {
            let dm = *s1 == '.' || *a > 12 || (*b <= 12 && day_first);
            let (d, m) = if dm { (*a, *b) } else { (*b, *a) };
            Some(((full_year(*y, *n)?, m, d), 5))
        }
        [Num(d, 1..=2), Sym('-'), Word(mon), Sym('-'), Num(y, n @ (2 | 4)), ..] => {
            Some(((full_year(*y, *n)?, month(mon)?, *d), 5))
        }
        [Word(mon), Num(d, 1..=2), Sym(','), Num(y, 4), ..] => Some(((*y, month(mon)?, *d), 4)),
        [Word(mon), Num(d, 1..=2), Num(y, 4), ..] => Some(((*y, month(mon)?, *d), 3)),
        [Num(d, 1..=2), Word(mon), Num(y, 4), ..] => Some(((*y, month(mon)?, *d), 3)),
        _ => None,
    }
}

/// Reads an optional time part; returns (h, m, s) and the number of tokens used.
fn time_part(t: &[Tok]) -> Option<((u32, u32, u32), usize)> {
    use Tok::{Num, Sym, Word};
    let (mut h, m, mut s, mut used) = match t {
        [Num(h, 1..=2), Sym(':'), Num(m, 2), Sym(':'), Num(s, 2), ..] => (*h, *m, *s, 5),
        [Num(h, 1..=2), Sym(':'), Num(m, 2), ..] => (*h, *m, 0, 3),
        _ => return Some(((0, 0, 0), 0)),
    };
    if let [Sym('.'), Num(..), ..] = &t[used..] {
        used += 2;
    }
    if let Some(Word(w)) = t.get(used)
        && (w == "am" || w == "pm")
    {
        if !(1..=12).contains(&h) {
            return None;
        }
        h = match (w.as_str(), h) {
            ("am", 12) => 0,
            ("pm", h) if h < 12 => h + 12,
            (_, h) => h,
        };
        used += 1;
    }
    if s == 60 {
        s = 59; // leap second: keep the value representable
    }
    Some(((h, m, s), used))
}

/// Reads the zone (the rest of the tokens); returns the offset in minutes.
fn zone_part(t: &[Tok]) -> Option<i32> {
    use Tok::{Num, Sym, Word};
    let (base, rest) = match t {
        [] => return Some(0),
        [Word(w), rest @ ..] => (zone(w)?, rest),
        rest => (0, rest),
    };
    let offset = |sign: &char, h: u32, m: u32| -> Option<i32> {
        if h > 14 || m > 59 {
            return None;
        }
        let mins = i32::try_from(h * 60 + m).ok()?;
        Some(if *sign == '-' { -mins } else { mins })
    };
    match rest {
        [] => Some(base),
        [Sym(c @ ('+' | '-')), Num(hm, 4)] => offset(c, hm / 100, hm % 100),
        [Sym(c @ ('+' | '-')), Num(h, 1..=2), Sym(':'), Num(m, 2)] => offset(c, *h, *m),
        [Sym(c @ ('+' | '-')), Num(h, 1..=2)] => offset(c, *h, 0),
        _ => None,
    }
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Parses a date cell into RFC 3339, or `None` when it is empty or not understood.
pub(crate) fn parse_date(s: &str, day_first: bool) -> Option<String> {
    let toks = tokenize(s.trim().trim_start_matches('\''))?;
    let ((y, mo, d), used) = date_part(&toks, day_first)?;
    let mut rest = &toks[used..];
    if let [Tok::Word(w), tail @ ..] = rest
        && w == "t"
    {
        rest = tail;
    }
    let ((h, mi, sec), used) = time_part(rest)?;
    let off = zone_part(&rest[used..])?;
    if !(1..=9999).contains(&y) || !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.unsigned_abs();
    Some(format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}{sign}{:02}:{:02}", off / 60, off % 60))
}

#[cfg(test)]
mod tests {
    use super::parse_date;

    fn p(s: &str) -> Option<String> {
        parse_date(s, false)
    }

    #[test]
    fn iso_forms() {
        assert_eq!(p("2023-06-08T01:58:56.166Z").unwrap(), "2023-06-08T01:58:56+00:00");
        assert_eq!(p("2025-08-22T16:27:22+02:00").unwrap(), "2025-08-22T16:27:22+02:00");
        assert_eq!(p("2021-05-26T20:50:18Z").unwrap(), "2021-05-26T20:50:18+00:00");
        assert_eq!(p("2024-09-16 04:00:30").unwrap(), "2024-09-16T04:00:30+00:00");
        assert_eq!(p("2024-08-04").unwrap(), "2024-08-04T00:00:00+00:00");
        assert_eq!(p("2000/01/04").unwrap(), "2000-01-04T00:00:00+00:00");
        assert_eq!(p("2020-01-01T10:00:00-0530").unwrap(), "2020-01-01T10:00:00-05:30");
    }

    #[test]
    fn month_name_forms_with_zone_abbreviations() {
        assert_eq!(p("Jan 5, 2021 10:24:08 MST").unwrap(), "2021-01-05T10:24:08-07:00");
        assert_eq!(p("Aug 18, 2004 12:00:00 MDT").unwrap(), "2004-08-18T12:00:00-06:00");
        assert_eq!(p("Jun 1, 2021 10:24:08 EDT").unwrap(), "2021-06-01T10:24:08-04:00");
        assert_eq!(p("Feb 5, 2024 21:01:08 UTC").unwrap(), "2024-02-05T21:01:08+00:00");
        assert_eq!(p("Feb 03, 2026 07:00 AM").unwrap(), "2026-02-03T07:00:00+00:00");
        assert_eq!(p("Dec 01, 2022 12:00 PM").unwrap(), "2022-12-01T12:00:00+00:00");
        assert_eq!(p("Jan 10, 2026 12:30 am").unwrap(), "2026-01-10T00:30:00+00:00");
        assert_eq!(p("04 Feb 2026 10:00AM GMT-0500").unwrap(), "2026-02-04T10:00:00-05:00");
        assert_eq!(p("31-Oct-24").unwrap(), "2024-10-31T00:00:00+00:00");
        assert_eq!(p("1-Jan-99").unwrap(), "1999-01-01T00:00:00+00:00");
    }

    #[test]
    fn slash_dates_resolve_day_and_month() {
        assert_eq!(p("05/13/2021 07:08:28").unwrap(), "2021-05-13T07:08:28+00:00");
        assert_eq!(p("5/3/2021 7:08").unwrap(), "2021-05-03T07:08:00+00:00");
        assert_eq!(parse_date("5/3/2021 7:08", true).unwrap(), "2021-03-05T07:08:00+00:00");
        // Unambiguous day > 12 wins over the format's habit, both ways.
        assert_eq!(p("22/09/2022 13:01").unwrap(), "2022-09-22T13:01:00+00:00");
        assert_eq!(parse_date("09/22/2022", true).unwrap(), "2022-09-22T00:00:00+00:00");
        assert_eq!(parse_date("23/11/2009", true).unwrap(), "2009-11-23T00:00:00+00:00");
        assert_eq!(p("23.11.2009").unwrap(), "2009-11-23T00:00:00+00:00");
    }

    #[test]
    fn garbage_and_impossible_dates_are_none() {
        for bad in [
            "",
            "N/A",
            "yesterday",
            "2021-02-30",
            "13/13/2021",
            "2021-01-01 25:00",
            "Foo 5, 2021",
            "2021-01-01 10:00 XYZ",
            "13:00 PM 2021",
            "Jan 5, 2021 13:00 PM",
            "2021-01-01T10:00:00+99:00",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
        assert_eq!(p("2024-02-29").unwrap(), "2024-02-29T00:00:00+00:00");
        assert_eq!(p("2023-02-29"), None);
    }
}
