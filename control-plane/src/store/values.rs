//! Multi-row `INSERT … VALUES (…), (…)` for usage ingestion, built without
//! `sqlx::QueryBuilder`, which formats every separator through `core::fmt` and grows its
//! text as it goes: at 200 rows of 32 columns that was ~10 % of ingestion's instructions
//! (callgrind of `switchyard-ingest-bench`; `tests/bench/lab/ingest-instructions.sh`).
//! Text and arguments are sized up front.

use sqlx::error::BoxDynError;
use sqlx::{Arguments, Database, Encode, Type};

/// The statement text and arguments of one multi-row insert.
pub(crate) struct Values<'q, DB: Database> {
    sql: String,
    args: <DB as Database>::Arguments<'q>,
    rows: usize,
    /// The first value that failed to encode; reported by `finish`.
    error: Option<BoxDynError>,
}

impl<'q, DB: Database> Values<'q, DB> {
    /// `head` is the statement up to `VALUES`, e.g. `INSERT INTO t (a, b)`; `rows` and
    /// `columns` only size the buffers.
    pub(crate) fn new(head: &str, rows: usize, columns: usize) -> Self {
        // "?, " per value ("$12345, " on Postgres) and "(), " per row.
        let mut sql = String::with_capacity(head.len() + 8 + rows * (columns * 8 + 4));
        sql.push_str(head);
        sql.push_str(" VALUES ");
        let mut args = <DB as Database>::Arguments::<'q>::default();
        args.reserve(rows * columns, 0);
        Self {
            sql,
            args,
            rows: 0,
            error: None,
        }
    }

    /// Appends one row; `push` binds its values in column order.
    pub(crate) fn row(&mut self, push: impl FnOnce(&mut Row<'_, 'q, DB>)) {
        if self.rows > 0 {
            self.sql.push_str(", ");
        }
        self.sql.push('(');
        push(&mut Row {
            values: self,
            first: true,
        });
        self.sql.push(')');
        self.rows += 1;
    }

    /// The statement with `tail` (`ON CONFLICT …`) appended, and its arguments.
    pub(crate) fn finish(
        mut self,
        tail: &str,
    ) -> Result<(String, <DB as Database>::Arguments<'q>), sqlx::Error> {
        if let Some(err) = self.error {
            return Err(sqlx::Error::Encode(err));
        }
        self.sql.push_str(tail);
        Ok((self.sql, self.args))
    }
}

/// The values of one row, separated by commas.
pub(crate) struct Row<'v, 'q, DB: Database> {
    values: &'v mut Values<'q, DB>,
    first: bool,
}

impl<'q, DB: Database> Row<'_, 'q, DB> {
    fn separate(&mut self) {
        if !self.first {
            self.values.sql.push_str(", ");
        }
        self.first = false;
    }

    /// A bound value (`?`, or `$n` on Postgres).
    pub(crate) fn bind<T: 'q + Encode<'q, DB> + Type<DB>>(&mut self, value: T) -> &mut Self {
        self.separate();
        let values = &mut *self.values;
        if let Err(err) = values.args.add(value) {
            values.error.get_or_insert(err);
        }
        // Writing into a `String` cannot fail.
        let _ = values.args.format_placeholder(&mut values.sql);
        self
    }

    /// A literal SQL value, e.g. `'usage'`.
    pub(crate) fn literal(&mut self, sql: &'static str) -> &mut Self {
        self.separate();
        self.values.sql.push_str(sql);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_same_statement_as_query_builder() {
        let rows = [("a", 1_i64), ("b", 2)];
        let mut values = Values::<sqlx::Sqlite>::new("INSERT INTO t (name, kind, n)", 2, 3);
        for (name, n) in rows {
            values.row(|r| {
                r.bind(name).literal("'usage'").bind(n);
            });
        }
        let (sql, args) = values.finish(" ON CONFLICT DO NOTHING").unwrap();

        let mut builder = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO t (name, kind, n) ");
        builder.push_values(rows, |mut b, (name, n)| {
            b.push_bind(name).push("'usage'").push_bind(n);
        });
        builder.push(" ON CONFLICT DO NOTHING");
        assert_eq!(sql, builder.sql());
        assert_eq!(
            sql,
            "INSERT INTO t (name, kind, n) VALUES (?, 'usage', ?), (?, 'usage', ?) ON CONFLICT DO NOTHING"
        );
        assert_eq!(args.len(), 4);
    }

    #[test]
    fn numbers_postgres_placeholders() {
        let mut values = Values::<sqlx::Postgres>::new("INSERT INTO t (a, b)", 2, 2);
        for i in 0..2_i64 {
            values.row(|r| {
                r.bind(i).bind("x");
            });
        }
        let (sql, _) = values.finish("").unwrap();
        assert_eq!(sql, "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
    }
}
