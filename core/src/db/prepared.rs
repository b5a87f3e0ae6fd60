//! Raw PostgreSQL statements that stay prepared on their connection.
//!
//! diesel marks `sql_query` and multi-row `insert_into(…).values(vec)` as unsafe to cache,
//! and diesel-async then runs each execution as a fresh prepared statement: a `Parse` and
//! `Describe` round trip, a `Bind`/`Execute` round trip, a `Close`, and the server parses
//! and plans the text every time. The webhook's batch runs a dozen such statements per
//! transaction. A [`Stmt`] is a fixed SQL text with its parameters bound in order: diesel
//! keys its statement cache on the text and the parameter types, so after the first
//! execution on a connection it is one `Bind`/`Execute`. Multi-row inserts become
//! `INSERT … SELECT * FROM unnest($1::…[], …)`: one text whatever the row count.
//!
//! Kept prepared, a statement gets one generic plan per connection unless its transaction
//! says otherwise. One whose best plan depends on its values (the job claims) runs in a
//! transaction begun with [`DbPool::begin_planned`](super::DbPool::begin_planned), planned
//! for its values each time. The webhook batch's statements are written so that one plan is
//! right for every run (each read is `= ANY` on the leading column of a unique index; each
//! insert reads only its own unique indexes) and run in a transaction begun with
//! [`BATCH_BEGIN_PG`](super::BATCH_BEGIN_PG), planned once per connection.
//!
//! The text's placeholders are `$1`, `$2`, …, each first used in ascending order, one per
//! bound value ([`Stmt::bind`]); a placeholder may be used again later. [`Stmt`] checks it
//! before running.

use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};

/// A fixed SQL text and its bound values (see the module docs).
#[must_use = "a statement does nothing until it is run"]
pub struct Stmt<B = ()> {
    sql: &'static str,
    binds: B,
}

/// The text of a statement with no parameters bound yet.
pub fn stmt(sql: &'static str) -> Stmt<()> {
    Stmt { sql, binds: () }
}

/// One more bound value after `P`'s.
pub struct Bound<P, V, ST> {
    prev: P,
    value: V,
    _st: PhantomData<fn() -> ST>,
}

impl<B> Stmt<B> {
    /// Binds the next placeholder (`$n`, in order) to `value` as SQL type `ST`.
    pub fn bind<ST, V>(self, value: V) -> Stmt<Bound<B, V, ST>> {
        Stmt {
            sql: self.sql,
            binds: Bound {
                prev: self.binds,
                value,
                _st: PhantomData,
            },
        }
    }
}

/// The bound values, pushed in order between the text's segments.
pub trait BindList {
    /// Pushes every value, each after the segment of text before its placeholder.
    fn push<'b>(
        &'b self,
        segments: &mut Segments,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()>;
}

impl BindList for () {
    fn push<'b>(&'b self, _: &mut Segments, _: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        Ok(())
    }
}

impl<P, V, ST> BindList for Bound<P, V, ST>
where
    P: BindList,
    V: ToSql<ST, Pg>,
    Pg: HasSqlType<ST>,
{
    fn push<'b>(
        &'b self,
        segments: &mut Segments,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        self.prev.push(segments, out)?;
        out.push_sql(segments.before_next_placeholder()?);
        // Writes `$n` (n counted by diesel, so the text's own number is replaced by the
        // same number) and binds the value.
        out.push_bind_param::<ST, V>(&self.value)
    }
}

/// The text cut at its placeholders.
pub struct Segments {
    rest: &'static str,
    seen: usize,
}

/// The first placeholder of `text` numbered above `seen`: its number, start and end.
fn next_new_placeholder(text: &str, seen: usize) -> Option<(usize, usize, usize)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let digits = bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let end = i + 1 + digits;
            let n: usize = text[i + 1..end].parse().unwrap_or(usize::MAX);
            if n > seen {
                return Some((n, i, end));
            }
            i = end;
        } else {
            i += 1;
        }
    }
    None
}

impl Segments {
    /// The text up to the next placeholder not seen yet, which is consumed and must be
    /// `$(seen + 1)`. A placeholder already bound (`$1` used twice) stays in the text.
    fn before_next_placeholder(&mut self) -> QueryResult<&'static str> {
        let text = self.rest;
        let want = self.seen + 1;
        match next_new_placeholder(text, self.seen) {
            Some((n, start, end)) if n == want => {
                self.seen = want;
                self.rest = &text[end..];
                Ok(&text[..start])
            }
            Some((n, ..)) => Err(misuse(format!(
                "placeholder ${n} found where ${want} was expected"
            ))),
            None => Err(misuse(format!(
                "a value is bound for ${want} but the text has no such placeholder"
            ))),
        }
    }
}

/// One column of `rows`, as the array a statement binds (`unnest($1::text[], …)`).
pub fn column<'a, T, U>(rows: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

fn misuse(msg: String) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(msg.into())
}

impl<B: BindList> QueryFragment<Pg> for Stmt<B> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let mut segments = Segments {
            rest: self.sql,
            seen: 0,
        };
        self.binds.push(&mut segments, &mut out)?;
        if next_new_placeholder(segments.rest, segments.seen).is_some() {
            return Err(misuse(format!(
                "the text has more placeholders than the {} values bound",
                segments.seen
            )));
        }
        out.push_sql(segments.rest);
        Ok(())
    }
}

impl<B> QueryId for Stmt<B> {
    type QueryId = ();
    // No static id: diesel keys the cache on the text and the parameter types.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<B> Query for Stmt<B> {
    type SqlType = Untyped;
}
