//! Keyset paging, the same for every listing: `?limit=&cursor=` in, `{items, nextCursor}` out.
//!
//! A cursor is the sort key of the last item of the previous page, written `<first>_<second>`
//! (e.g. `1732950000000_0190c5e2-…` for imports, `3_1234` for findings); a page holds the items
//! strictly after it in the listing's descending order, so pages never overlap or skip while new
//! rows arrive.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize, Serializer};

use crate::error::{ApiError, Result};

/// The paging part of a listing's query string (the listing's filters are read apart).
#[derive(Deserialize, Debug, Default)]
pub struct PageQuery {
    /// Page size (each listing has its own default and maximum).
    pub limit: Option<i64>,
    /// The previous page's `nextCursor`.
    pub cursor: Option<String>,
}

/// Page sizes a listing accepts.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Size when `limit` is not given.
    pub default: i64,
    /// Largest `limit` accepted.
    pub max: i64,
}

/// The sort key of a listing's item: two parts, both compared descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor<A, B>(pub A, pub B);

impl<A: fmt::Display, B: fmt::Display> fmt::Display for Cursor<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.0, self.1)
    }
}

impl<A: FromStr, B: FromStr> FromStr for Cursor<A, B> {
    type Err = ();

    fn from_str(raw: &str) -> Result<Self, ()> {
        let (a, b) = raw.split_once('_').ok_or(())?;
        Ok(Cursor(a.parse().map_err(drop)?, b.parse().map_err(drop)?))
    }
}

/// Where one page starts and how long it is, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window<K> {
    /// Items on the page.
    pub limit: i64,
    /// The page holds the items strictly below this key.
    pub before: K,
}

impl<K> Window<K> {
    /// Rows to fetch: one more than the page holds, to learn whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// The page made of `rows` (fetched with [`Window::fetch`]): the first `limit`, each turned
    /// into its item, and the cursor of the last one when more rows follow.
    pub fn page<R, T, C: fmt::Display>(
        &self,
        mut rows: Vec<R>,
        key: impl Fn(&R) -> C,
        item: impl FnMut(R) -> T,
    ) -> Page<T> {
        let limit = usize::try_from(self.limit).expect("a checked limit is positive");
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more { rows.last().map(|last| key(last).to_string()) } else { None };
        Page { items: rows.into_iter().map(item).collect(), next_cursor }
    }
}

impl PageQuery {
    /// The page asked for: `limit` within `sizes`, and the cursor parsed, or `first` (a key above
    /// every item) without one.
    pub fn window<A: FromStr, B: FromStr>(&self, sizes: Sizes, first: Cursor<A, B>) -> Result<Window<Cursor<A, B>>> {
        let limit = self.limit.unwrap_or(sizes.default);
        if !(1..=sizes.max).contains(&limit) {
            return Err(ApiError::BadRequest {
                message: format!("limit {limit} is out of range; expected 1 to {}", sizes.max),
            });
        }
        let before = match self.cursor.as_deref() {
            None | Some("") => first,
            Some(raw) => raw.parse().map_err(|()| ApiError::BadRequest {
                message: format!(
                    "cursor {} is malformed; pass back the nextCursor of the previous page",
                    crate::input::quote(raw)
                ),
            })?,
        };
        Ok(Window { limit, before })
    }
}

/// One page of a listing (fields in the byte order of their JSON names, as every body of the
/// API declares them: see the `http` module).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// Pass back as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// Serialises `value` as a `serde_json::Value` would, its object keys sorted: nested objects
/// keep the bytes they had when these bodies were built as `Value`s.
pub fn sorted<T: Serialize, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(value).map_err(serde::ser::Error::custom)?.serialize(serializer)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    const SIZES: Sizes = Sizes { default: 50, max: 200 };

    fn query(limit: Option<i64>, cursor: Option<&str>) -> PageQuery {
        PageQuery { limit, cursor: cursor.map(str::to_owned) }
    }

    #[test]
    fn a_cursor_reads_back_what_it_wrote() {
        let key = Cursor(1_732_950_000_000_i64, Uuid::now_v7());
        let window = query(Some(10), Some(&key.to_string())).window(SIZES, Cursor(i64::MAX, Uuid::max())).unwrap();
        assert_eq!(window, Window { limit: 10, before: key });
    }

    #[test]
    fn no_cursor_starts_at_the_first_key_and_no_limit_takes_the_default() {
        let first = Cursor(i16::MAX, i64::MAX);
        assert_eq!(query(None, None).window(SIZES, first).unwrap(), Window { limit: 50, before: first });
        assert_eq!(query(None, Some("")).window(SIZES, first).unwrap().before, first);
    }

    #[test]
    fn a_bad_limit_or_cursor_says_what_was_expected() {
        let first = Cursor(i16::MAX, i64::MAX);
        for limit in [0, 201, -1] {
            let err = query(Some(limit), None).window(SIZES, first).unwrap_err().to_string();
            assert_eq!(err, format!("limit {limit} is out of range; expected 1 to 200"));
        }
        for cursor in ["3", "x_1", "3_x", "_", "3_1_2"] {
            let err = query(None, Some(cursor)).window(SIZES, first).unwrap_err().to_string();
            assert!(err.contains("is malformed; pass back the nextCursor"), "{cursor}: {err}");
        }
    }

    #[test]
    fn a_page_keeps_limit_items_and_points_past_the_last_only_when_more_follow() {
        let window = Window { limit: 2, before: Cursor(9, 9) };
        let key = |n: &i32| Cursor(*n, *n * 10);
        let full = window.page(vec![5, 4, 3], key, |n| n * 100);
        assert_eq!((full.items, full.next_cursor.as_deref()), (vec![500, 400], Some("4_40")));
        let last = window.page(vec![2, 1], key, |n| n);
        assert_eq!((last.items, last.next_cursor), (vec![2, 1], None));
        assert_eq!(window.fetch(), 3);
    }
}
