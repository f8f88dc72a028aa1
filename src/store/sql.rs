//! SQL built once for every backend: a statement builder with backend-neutral arguments, the
//! few things databases spell differently (`Dialect`), and the meaning of every filter Herald
//! offers lowered to SQL here, once: NetBox's object filters, the delivery log's and the change
//! log's. Backends run the result; they do not decide what a filter means.
//!
//! Every backend has the same tables (`objects`, `object_keys`, `object_refs`, `deliveries`,
//! `object_changes`, ...) and stores times as microseconds since the Unix epoch.

use crate::changes::ChangeFilter;
use crate::objects::query::{Cmp, Col, Cond, NetTest, ObjectQuery};
use crate::objects::unique_key;
use crate::queue::DeliveryFilter;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// A bound argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bool(bool),
    /// A set of integers bound as one argument (see `Dialect::int_set`).
    IntSet(Vec<i64>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_string())
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(v)
    }
}

impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(v.clone())
    }
}

impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::Bool(v)
    }
}

impl From<DateTime<Utc>> for Arg {
    fn from(t: DateTime<Utc>) -> Arg {
        Arg::Int(t.timestamp_micros())
    }
}

impl From<&Value> for Arg {
    /// A JSON scalar as the database compares it; containers as their JSON text.
    fn from(v: &Value) -> Arg {
        match v {
            Value::Null => Arg::Null,
            Value::Bool(b) => Arg::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Arg::Int(i),
                None => Arg::Real(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => Arg::Text(s.clone()),
            other => Arg::Text(other.to_string()),
        }
    }
}

/// What a stored JSON field is compared as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldAs {
    Text,
    Int,
    Real,
    Bool,
    /// Whatever it holds, for ordering.
    Any,
}

impl FieldAs {
    fn of(v: &Value) -> FieldAs {
        match v {
            Value::Bool(_) => FieldAs::Bool,
            Value::Number(n) if n.is_i64() => FieldAs::Int,
            Value::Number(_) => FieldAs::Real,
            _ => FieldAs::Text,
        }
    }
}

/// How one database spells what the others spell differently.
pub trait Dialect: Send + Sync {
    /// Appends the placeholder of argument number `n` (1-based): `?` or `$n`.
    fn placeholder(&self, out: &mut String, n: usize);
    /// Appends the value of field `field` of the object aliased `o`, compared `as_`.
    fn field(&self, out: &mut String, field: &str, as_: FieldAs);
    /// Appends a key that orders an address or prefix field as IP addresses order.
    fn ip_key(&self, out: &mut String, field: &str);
    /// The case-insensitive `LIKE`.
    fn ilike(&self) -> &'static str;
    /// Appends a subquery over the integers of an `Arg::IntSet` bound as argument `n`, for
    /// `x in (...)` with more values than placeholders should carry.
    fn int_set(&self, out: &mut String, n: usize);
    /// Appends, after a table's name, what makes the planner use index `index` (where it
    /// would not by itself).
    fn index_hint(&self, _out: &mut String, _index: &str) {}
    /// Appends what locks the rows a select reads until the transaction ends (where other
    /// writers could read them meanwhile).
    fn for_update(&self, _out: &mut String) {}
}

/// Lists of integers longer than this are bound as one argument.
const INLINE_INTS: usize = 64;

/// A statement built piece by piece, with its arguments.
pub struct Sql {
    pub text: String,
    pub args: Vec<Arg>,
    dialect: &'static dyn Dialect,
}

impl Sql {
    pub fn new(dialect: &'static dyn Dialect, text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            args: Vec::new(),
            dialect,
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// A placeholder for `arg`.
    pub fn bind(&mut self, arg: impl Into<Arg>) -> &mut Sql {
        self.args.push(arg.into());
        self.dialect.placeholder(&mut self.text, self.args.len());
        self
    }

    /// `(p, p, ...)` for `args`; `(null)` for none, which matches nothing.
    pub fn list<A: Into<Arg>>(&mut self, args: impl IntoIterator<Item = A>) -> &mut Sql {
        self.text.push('(');
        let mut any = false;
        for (i, a) in args.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(a);
            any = true;
        }
        if !any {
            self.text.push_str("null");
        }
        self.text.push(')');
        self
    }

    /// `(p, p, ...)` for a few integers; a subquery over one argument for many (so a list of
    /// any length stays within a database's bound on arguments).
    pub fn ints(&mut self, ints: impl IntoIterator<Item = i64>) -> &mut Sql {
        let ints: Vec<i64> = ints.into_iter().collect();
        if ints.len() <= INLINE_INTS {
            return self.list(ints);
        }
        self.args.push(Arg::IntSet(ints));
        self.dialect.int_set(&mut self.text, self.args.len());
        self
    }

    fn field(&mut self, field: &str, as_: FieldAs) -> &mut Sql {
        self.dialect.field(&mut self.text, field, as_);
        self
    }

    fn col(&mut self, col: &Col, as_: FieldAs) -> &mut Sql {
        match col {
            Col::Id => self.push("o.id"),
            Col::Created => self.push("o.created_at"),
            Col::LastUpdated => self.push("o.updated_at"),
            Col::Field(f) | Col::Ref(f, _) | Col::Key(f) => self.field(f, as_),
            Col::IpKey(f) => {
                self.dialect.ip_key(&mut self.text, f);
                self
            }
            Col::Tag | Col::Net(..) => self.push("null"),
        }
    }
}

/// Escapes `%`, `_` and `\` and places the wildcards for a text lookup.
fn like_pattern(cmp: Cmp, v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    match cmp {
        Cmp::IContains => format!("%{escaped}%"),
        Cmp::IStartsWith => format!("{escaped}%"),
        Cmp::IEndsWith => format!("%{escaped}"),
        _ => escaped,
    }
}

/// ` where ...` over `objects o` of type `ty` for `q`: NetBox's filter meaning.
pub fn object_where(sql: &mut Sql, ty: &str, q: &ObjectQuery) {
    sql.push(" where o.type = ").bind(ty);
    for c in &q.conds {
        sql.push(" and ");
        cond(sql, ty, c);
    }
    if let Some((text, fields)) = &q.search {
        // `q=`: the id exactly, or any search field containing the text, case-insensitively.
        sql.push(" and (1 = 0");
        for f in fields {
            sql.push(" or ");
            if f == "id" {
                sql.push("cast(o.id as text) = ").bind(text.as_str());
                continue;
            }
            let like = sql.dialect.ilike();
            sql.push("coalesce(")
                .field(f, FieldAs::Text)
                .push(&format!(", '') {like} "));
            sql.bind(like_pattern(Cmp::IContains, &Value::String(text.clone())))
                .push(" escape '\\'");
        }
        sql.push(")");
    }
}

/// ` order by ...` for `q` (the id when it names nothing).
pub fn object_order(sql: &mut Sql, q: &ObjectQuery) {
    sql.push(" order by ");
    for (i, (col, desc)) in q.order.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.col(col, FieldAs::Any).push(if *desc { " desc" } else { " asc" });
    }
    if q.order.is_empty() {
        sql.push("o.id");
    }
}

/// One condition of an object query.
fn cond(sql: &mut Sql, ty: &str, c: &Cond) {
    match (&c.col, c.cmp) {
        // `tag=`: objects carrying this tag (one condition per tag, so all of them).
        (Col::Tag, _) => {
            let ids = c.values.iter().filter_map(Value::as_i64);
            if c.negate {
                sql.push("not ");
            }
            sql.push("exists (select 1 from object_refs r where r.type = o.type and r.id = o.id and r.field = 'tags' and r.target_id in ")
                .ints(ids)
                .push(")");
        }
        // Foreign keys by id, through the references index.
        (Col::Ref(field, target), Cmp::In) => {
            let ids = c.values.iter().filter_map(Value::as_i64);
            sql.push("o.id in (select r.id from object_refs r where r.target_type = ")
                .bind(target.as_str())
                .push(" and r.target_id in ")
                .ints(ids)
                .push(" and r.type = ")
                .bind(ty)
                .push(" and r.field = ")
                .bind(field.as_str())
                .push(")");
        }
        // A field unique on its own, through the unique-keys index.
        (Col::Key(field), Cmp::In) => {
            let keys: Vec<String> = c.values.iter().map(|v| unique_key(&[v])).collect();
            sql.push("o.id in (select k.id from object_keys k where k.type = ")
                .bind(ty)
                .push(" and k.rule = ")
                .bind(field.as_str())
                .push(" and k.value in ")
                .list(keys)
                .push(")");
        }
        (Col::Net(field, test), _) => {
            sql.push("o.id in (select n.id from object_nets n where n.type = ")
                .bind(ty)
                .push(" and n.field = ")
                .bind(field.as_str())
                .push(" and ");
            net_test(sql, test);
            sql.push(")");
        }
        _ => compare(sql, c),
    }
}

/// The test of a network-index condition on `n`: index ranges and probes, never a scan.
fn net_test(sql: &mut Sql, test: &NetTest) {
    let mut any = false;
    let mut or = |sql: &mut Sql| {
        sql.push(if any { " or " } else { "(" });
        any = true;
    };
    match test {
        NetTest::Starts(keys) => {
            or(sql);
            sql.push("n.lo in ").list(keys.iter().map(String::as_str));
        }
        NetTest::Inside(spans) => {
            for (lo, hi, strict) in spans {
                or(sql);
                sql.push("(n.lo >= ")
                    .bind(lo.as_str())
                    .push(" and n.lo <= ")
                    .bind(hi.as_str())
                    .push(" and n.hi <= ")
                    .bind(hi.as_str());
                if *strict {
                    sql.push(" and not (n.lo = ")
                        .bind(lo.as_str())
                        .push(" and n.hi = ")
                        .bind(hi.as_str())
                        .push(")");
                }
                sql.push(")");
            }
        }
        NetTest::Exactly(starts) => {
            for (lo, len) in starts {
                or(sql);
                sql.push("(n.lo = ")
                    .bind(lo.as_str())
                    .push(" and n.len = ")
                    .bind(i64::from(*len))
                    .push(")");
            }
        }
        NetTest::Len(cmp, lens) => {
            let lens = lens.iter().map(|l| i64::from(*l));
            or(sql);
            match cmp {
                Cmp::NotIn => {
                    sql.push("n.len not in ").list(lens);
                }
                Cmp::Gt | Cmp::Gte | Cmp::Lt | Cmp::Lte => {
                    let op = match cmp {
                        Cmp::Gt => ">",
                        Cmp::Gte => ">=",
                        Cmp::Lt => "<",
                        _ => "<=",
                    };
                    sql.push("(1 = 0");
                    for l in lens {
                        sql.push(&format!(" or n.len {op} ")).bind(l);
                    }
                    sql.push(")");
                }
                _ => {
                    sql.push("n.len in ").list(lens);
                }
            }
        }
    }
    if any {
        sql.push(")");
    } else {
        sql.push("1 = 0");
    }
}

fn compare(sql: &mut Sql, c: &Cond) {
    let as_ = c.values.first().map_or(FieldAs::Text, FieldAs::of);
    match c.cmp {
        // Any of the values; none matches nothing. `__n` matches null too, as in NetBox.
        Cmp::In | Cmp::NotIn if c.values.is_empty() => {
            sql.push(if c.cmp == Cmp::In { "1 = 0" } else { "1 = 1" });
        }
        Cmp::In if c.col == Col::Id => {
            sql.push("o.id in ").ints(c.values.iter().filter_map(Value::as_i64));
        }
        Cmp::In => {
            sql.col(&c.col, as_).push(" in ").list(c.values.iter());
        }
        Cmp::NotIn => {
            sql.push("(").col(&c.col, as_).push(" is null or ");
            sql.col(&c.col, as_).push(" not in ").list(c.values.iter()).push(")");
        }
        // Text lookups see null as the empty text; any of the values matches.
        Cmp::IContains | Cmp::IExact | Cmp::IStartsWith | Cmp::IEndsWith => {
            sql.push(if c.negate { "not (1 = 0" } else { "(1 = 0" });
            let like = sql.dialect.ilike();
            for v in &c.values {
                sql.push(" or coalesce(")
                    .col(&c.col, FieldAs::Text)
                    .push(&format!(", '') {like} "));
                sql.bind(like_pattern(c.cmp, v)).push(" escape '\\'");
            }
            if c.values.is_empty() {
                sql.push(" or 1 = 1");
            }
            sql.push(")");
        }
        // Several bounds must all hold.
        Cmp::Gt | Cmp::Gte | Cmp::Lt | Cmp::Lte => {
            let op = match c.cmp {
                Cmp::Gt => " > ",
                Cmp::Gte => " >= ",
                Cmp::Lt => " < ",
                _ => " <= ",
            };
            sql.push("(1 = 1");
            for v in &c.values {
                sql.push(" and ").col(&c.col, FieldAs::of(v)).push(op).bind(v);
            }
            sql.push(")");
        }
        // `__empty`: null or the empty text.
        Cmp::IsNull | Cmp::NotNull => {
            sql.push(if c.cmp == Cmp::IsNull {
                "coalesce("
            } else {
                "not coalesce("
            });
            sql.col(&c.col, FieldAs::Text).push(", '') = ''");
        }
    }
}

/// ` where ...` over `objects o` for objects of `ty` whose fields equal `attrs` (null: is null).
pub fn object_find(sql: &mut Sql, ty: &str, attrs: &[(String, Value)]) {
    sql.push(" where o.type = ").bind(ty);
    for (field, value) in attrs {
        sql.push(" and ").field(field, FieldAs::of(value));
        if value.is_null() {
            sql.push(" is null");
        } else {
            sql.push(" = ").bind(value);
        }
    }
}

/// ` where ...` over `deliveries d` for `f`.
pub fn delivery_where(sql: &mut Sql, f: &DeliveryFilter) {
    sql.push(" where 1 = 1");
    if !f.id.is_empty() {
        sql.push(" and d.id in ").ints(f.id.iter().copied());
    }
    if !f.webhook_id.is_empty() {
        sql.push(" and d.webhook_id in ").ints(f.webhook_id.iter().copied());
    }
    if !f.event_rule_id.is_empty() {
        sql.push(" and d.event_rule_id in ")
            .ints(f.event_rule_id.iter().copied());
    }
    if !f.status.is_empty() {
        sql.push(" and d.status in ").list(f.status.iter().map(|s| s.as_str()));
    }
    if !f.object_type.is_empty() {
        sql.push(" and d.object_type in ").list(f.object_type.iter());
    }
    if !f.object_id.is_empty() {
        sql.push(" and d.object_id in ").ints(f.object_id.iter().copied());
    }
    if !f.event.is_empty() {
        sql.push(" and d.event in ").list(f.event.iter());
    }
    if let Some(since) = f.since {
        sql.push(" and d.created_at >= ").bind(since);
    }
    if let Some(until) = f.until {
        sql.push(" and d.created_at < ").bind(until);
    }
    if !f.request_id.is_empty() {
        sql.push(" and d.event_id in (select e.id from events e where e.request_id in ")
            .list(f.request_id.iter())
            .push(")");
    }
}

/// ` where ...` over `object_changes c` for `f`.
pub fn change_where(sql: &mut Sql, f: &ChangeFilter) {
    sql.push(" where 1 = 1");
    for (column, ids) in [
        ("c.id", &f.id),
        ("c.object_id", &f.object_id),
        ("c.user_id", &f.user_id),
    ] {
        if !ids.is_empty() {
            sql.push(&format!(" and {column} in ")).ints(ids.iter().copied());
        }
    }
    if !f.action.is_empty() {
        sql.push(" and c.action in ").list(f.action.iter().map(|a| a.as_str()));
    }
    for (column, values) in [
        ("c.request_id", &f.request_id),
        ("c.object_type", &f.object_type),
        ("c.user_name", &f.user_name),
    ] {
        if !values.is_empty() {
            sql.push(&format!(" and {column} in ")).list(values.iter());
        }
    }
}

/// Quotes `text` as an SQL string literal.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Numbered;

    impl Dialect for Numbered {
        fn placeholder(&self, out: &mut String, n: usize) {
            out.push_str(&format!("${n}"));
        }
        fn field(&self, out: &mut String, field: &str, as_: FieldAs) {
            out.push_str(&format!("f({}, {as_:?})", quote(field)));
        }
        fn ip_key(&self, out: &mut String, field: &str) {
            out.push_str(&format!("ip({})", quote(field)));
        }
        fn ilike(&self) -> &'static str {
            "ilike"
        }
        fn int_set(&self, out: &mut String, n: usize) {
            out.push_str(&format!("(select unnest(${n}))"));
        }
    }

    static NUMBERED: Numbered = Numbered;

    #[test]
    fn filters_keep_netbox_meaning() {
        let q = ObjectQuery {
            conds: vec![
                Cond {
                    col: Col::Field("status".into()),
                    cmp: Cmp::NotIn,
                    negate: false,
                    values: vec![Value::from("active")],
                },
                Cond {
                    col: Col::Field("name".into()),
                    cmp: Cmp::IContains,
                    negate: true,
                    values: vec![Value::from("5%_")],
                },
                Cond {
                    col: Col::Field("vid".into()),
                    cmp: Cmp::Gte,
                    negate: false,
                    values: vec![Value::from(10)],
                },
            ],
            search: None,
            order: vec![(Col::Id, false)],
        };
        let mut sql = Sql::new(&NUMBERED, "select o.id from objects o");
        object_where(&mut sql, "ipam.vlan", &q);
        object_order(&mut sql, &q);
        assert_eq!(
            sql.text,
            "select o.id from objects o where o.type = $1 \
             and (f('status', Text) is null or f('status', Text) not in ($2)) \
             and not (1 = 0 or coalesce(f('name', Text), '') ilike $3 escape '\\') \
             and (1 = 1 and f('vid', Int) >= $4) order by o.id asc"
        );
        assert_eq!(sql.args[2], Arg::Text("%5\\%\\_%".into()));
        assert_eq!(sql.args[3], Arg::Int(10));
        let mut empty = Sql::new(&NUMBERED, "");
        empty.list(Vec::<i64>::new());
        assert_eq!(empty.text, "(null)");
        assert_eq!(quote("it's"), "'it''s'");
        let mut many = Sql::new(&NUMBERED, "d.id in ");
        many.ints(0..100);
        assert_eq!(
            (many.text.as_str(), many.args.len()),
            ("d.id in (select unnest($1))", 1)
        );
    }
}
