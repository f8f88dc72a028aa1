//! Running statements on PostgreSQL: arguments as the server wants them, rows as records,
//! many rows inserted from arrays, and PostgreSQL's errors as storage errors (which of them
//! allow a transaction to run again).

use crate::store::rows::{self, Columns};
use crate::store::sql::{Arg, Sql};
use crate::store::{Result, StoreError};
use bytes::BytesMut;
use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::Row;

/// An argument bound as the type PostgreSQL expects where it stands: an integer as any integer
/// width (or a float), text as text. Any other pairing is a mistake in the statement, refused
/// with both types named rather than converted.
#[derive(Debug)]
pub(super) struct Param<'a>(pub(super) &'a Arg);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ => Err(mismatch(self.0, ty)),
            },
            Arg::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => Err(mismatch(self.0, ty)),
            },
            Arg::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    pg_text(s).as_ref().to_sql(ty, out)
                }
                _ => Err(mismatch(self.0, ty)),
            },
            Arg::Bool(b) => match *ty {
                Type::BOOL => b.to_sql(ty, out),
                _ => Err(mismatch(self.0, ty)),
            },
            Arg::IntSet(v) => match *ty {
                Type::INT8_ARRAY => v.to_sql(ty, out),
                _ => Err(mismatch(self.0, ty)),
            },
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Why an argument cannot stand where a statement put it.
fn mismatch(arg: &Arg, ty: &Type) -> Box<dyn std::error::Error + Sync + Send> {
    let what = match arg {
        Arg::Null => "null",
        Arg::Int(_) => "an integer",
        Arg::Real(_) => "a float",
        Arg::Text(_) => "text",
        Arg::Bool(_) => "a boolean",
        Arg::IntSet(_) => "a set of integers",
    };
    format!("{what} bound where PostgreSQL expects {ty}").into()
}

/// The parameters of `q`, as tokio-postgres takes them.
pub(super) fn params(q: &Sql) -> Vec<Param<'_>> {
    q.args.iter().map(Param).collect()
}

pub(super) fn refs<'a>(p: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    p.iter().map(|x| x as &(dyn ToSql + Sync)).collect()
}

/// Runs `q`, returning its rows.
pub(super) async fn query<C: GenericClient>(c: &C, q: &Sql) -> Result<Vec<Row>> {
    let stmt = c.prepare_cached(&q.text).await.map_err(map_err)?;
    let p = params(q);
    c.query(&stmt, &refs(&p)).await.map_err(map_err)
}

/// Runs `q`, returning its rows as records.
pub(super) async fn fetch<C: GenericClient, T>(c: &C, q: &Sql, map: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    query(c, q).await?.iter().map(map).collect()
}

/// Runs `q`, returning the rows it touched.
pub(super) async fn execute<C: GenericClient>(c: &C, q: &Sql) -> Result<u64> {
    let stmt = c.prepare_cached(&q.text).await.map_err(map_err)?;
    let p = params(q);
    c.execute(&stmt, &refs(&p)).await.map_err(map_err)
}

/// Inserts `rows` (values in the order of `columns`, each a name and a type) with one
/// statement, whatever their number: each column is bound as one array. `tail` ends the
/// statement (`on conflict ...`, `returning ...`); returns the rows it returns.
pub(super) async fn insert_rows_with<C: GenericClient>(
    c: &C,
    table: &str,
    columns: &[(&str, &str)],
    rows: &[Vec<Arg>],
    tail: &str,
) -> Result<Vec<Row>> {
    let arrays: Vec<Vec<Param<'_>>> = (0..columns.len())
        .map(|i| rows.iter().map(|r| Param(&r[i])).collect())
        .collect();
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let unnest: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("${}::{ty}[]", i + 1))
        .collect();
    let text = format!(
        "insert into {table} ({}) select * from unnest({}){tail}",
        names.join(", "),
        unnest.join(", ")
    );
    let params: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
    let stmt = c.prepare_cached(&text).await.map_err(map_err)?;
    c.query(&stmt, &params).await.map_err(map_err)
}

/// Rows for one table of `insert_all`: its name, its columns (name and type), the rows, and
/// what ends its insert (`on conflict ...`, `returning ...`, or nothing).
pub(super) type Rows<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [Vec<Arg>], &'a str);

/// One statement (one round trip): `head` first when given (a write with its own arguments),
/// then inserts into several tables, each table's rows bound as arrays as `insert_rows_with`
/// binds them; then `then` (a `select` without arguments, reading `i0`, `i1`, ... for what
/// the inserts return). Constraints between them hold as in separate statements: they are
/// checked when the whole statement ends.
pub(super) async fn insert_all<C: GenericClient>(
    c: &C,
    head: Option<&Sql>,
    tables: &[Rows<'_>],
    then: &str,
) -> Result<Vec<Row>> {
    let mut scalars: Vec<Param<'_>> = Vec::new();
    let mut parts = Vec::new();
    if let Some(h) = head {
        scalars = params(h);
        parts.push(format!("h as ({})", h.text));
    }
    let mut arrays: Vec<Vec<Param<'_>>> = Vec::new();
    for (i, (table, columns, rows, tail)) in tables.iter().enumerate() {
        let mut unnest = Vec::new();
        for (col, (_, ty)) in columns.iter().enumerate() {
            arrays.push(rows.iter().map(|r| Param(&r[col])).collect());
            unnest.push(format!("${}::{ty}[]", scalars.len() + arrays.len()));
        }
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        parts.push(format!(
            "i{i} as (insert into {table} ({}) select * from unnest({}){tail})",
            names.join(", "),
            unnest.join(", ")
        ));
    }
    let text = format!("with {} {then}", parts.join(", "));
    let mut all: Vec<&(dyn ToSql + Sync)> = scalars.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    all.extend(arrays.iter().map(|a| a as &(dyn ToSql + Sync)));
    let stmt = c.prepare_cached(&text).await.map_err(map_err)?;
    c.query(&stmt, &all).await.map_err(map_err)
}

/// `insert_rows_with`, nothing returned.
pub(super) async fn insert_rows<C: GenericClient>(
    c: &C,
    table: &str,
    columns: &[(&str, &str)],
    rows: &[Vec<Arg>],
) -> Result<()> {
    insert_rows_with(c, table, columns, rows, "").await.map(|_| ())
}

/// The first column of the one row of `q`.
pub(super) async fn scalar<C: GenericClient, T>(c: &C, q: &Sql) -> Result<T>
where
    T: for<'r> tokio_postgres::types::FromSql<'r>,
{
    let rows = query(c, q).await?;
    let row = rows.first().ok_or(StoreError::NotFound)?;
    row.try_get(0).map_err(map_err)
}

/// The index of column `name` and its type.
pub(super) fn column<'r>(row: &'r Row, name: &str) -> Result<(usize, &'r Type)> {
    row.columns()
        .iter()
        .enumerate()
        .find(|(_, c)| c.name() == name)
        .map(|(i, c)| (i, c.type_()))
        .ok_or_else(|| StoreError::Other(anyhow::anyhow!("no column {name} in the row")))
}

impl Columns for Row {
    fn text(&self, name: &str) -> Result<String> {
        self.try_get(name).map_err(map_err)
    }

    fn opt_text(&self, name: &str) -> Result<Option<String>> {
        self.try_get(name).map_err(map_err)
    }

    fn int(&self, name: &str) -> Result<i64> {
        self.opt_int(name)?
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("column {name} is null")))
    }

    fn opt_int(&self, name: &str) -> Result<Option<i64>> {
        let (i, ty) = column(self, name)?;
        match *ty {
            Type::INT2 => Ok(self.try_get::<_, Option<i16>>(i).map_err(map_err)?.map(i64::from)),
            Type::INT4 => Ok(self.try_get::<_, Option<i32>>(i).map_err(map_err)?.map(i64::from)),
            _ => self.try_get(i).map_err(map_err),
        }
    }

    fn flag(&self, name: &str) -> Result<bool> {
        self.try_get(name).map_err(map_err)
    }

    fn opt_real(&self, name: &str) -> Result<Option<f64>> {
        self.try_get(name).map_err(map_err)
    }

    fn json(&self, name: &str) -> Result<serde_json::Value> {
        let (i, ty) = column(self, name)?;
        if *ty == Type::JSONB || *ty == Type::JSON {
            let v: Option<serde_json::Value> = self.try_get(i).map_err(map_err)?;
            return Ok(v.unwrap_or_default());
        }
        match self.opt_text(name)? {
            Some(text) => rows::parse_json(&text),
            None => Ok(serde_json::Value::Null),
        }
    }
}

/// PostgreSQL's errors as storage errors. A broken unique rule is reported bare: the call
/// that broke it knows which rule that is.
pub(super) fn map_err(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Unique(crate::store::Unique {
            record: "record",
            fields: &[],
        }),
        Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => StoreError::ForeignKey,
        _ => {
            let detail = match e.as_db_error() {
                Some(db) => format!("PostgreSQL: {} ({})", db.message(), db.code().code()),
                None => format!("PostgreSQL: {e}"),
            };
            StoreError::Other(anyhow::Error::new(e).context(detail))
        }
    }
}

/// An error and its causes, as one line ("a: b: c"), each said once.
pub(super) fn causes(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Whether the transaction that failed with `e` is known not to have committed and may be run
/// again: PostgreSQL broke a deadlock or a serialization conflict, or the connection was lost
/// (its server process terminated) before the commit was sent. Commits that fail are never
/// retried: whether they took effect is unknown (`commit`).
pub(super) fn retryable(e: &StoreError) -> bool {
    let StoreError::Other(e) = e else {
        return false;
    };
    e.chain()
        .filter_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .any(|e| {
            e.is_closed()
                || e.code().is_some_and(|c| {
                    *c == SqlState::T_R_DEADLOCK_DETECTED
                        || *c == SqlState::T_R_SERIALIZATION_FAILURE
                        || c.code().starts_with("57P")
                })
        })
}

/// Commits `tx`. A failure leaves the outcome unknown, so it is reported without the driver's
/// error (which `retryable` would take for a reason to run the transaction again).
pub(super) async fn commit(tx: deadpool_postgres::Transaction<'_>) -> Result<()> {
    tx.commit().await.map_err(|e| {
        StoreError::Other(anyhow::anyhow!(
            "PostgreSQL: the commit failed, its outcome is unknown: {e}"
        ))
    })
}

/// A boxed future over a transaction.
pub(super) type TxWork<'t, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 't>>;

/// Text as PostgreSQL stores it: it cannot hold NUL characters (a receiver may send them in a
/// response body), so those become U+FFFD.
pub(super) fn pg_text(s: &str) -> std::borrow::Cow<'_, str> {
    match s.contains('\0') {
        true => std::borrow::Cow::Owned(s.replace('\0', "\u{fffd}")),
        false => std::borrow::Cow::Borrowed(s),
    }
}
