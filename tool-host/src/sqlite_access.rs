//! `caxton.sqlite_query`: read-only SQL over a database file inside a granted directory.
//!
//! The query engine is the host's rusqlite rather than SQLite compiled into every module: one
//! well-tested engine, opened read-only, with attachments disabled so a query cannot reach any
//! file beyond the one granted, and bounded by rows and by the call's deadline.

use std::time::Instant;

use rusqlite::types::ValueRef;
use rusqlite::{OpenFlags, limits::Limit};
use serde_json::{Value, json};

use crate::call::DirGrant;
use crate::host_fns::{error_reply, resolve_guest_path};

/// Rows returned when the request does not say.
const DEFAULT_ROWS: usize = 100;
/// Most rows any query may return.
const MAX_ROWS: usize = 10_000;
/// Largest reply, in bytes of cell text; rows beyond it are cut.
const MAX_REPLY_BYTES: usize = 4 << 20;

/// A module's query.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqlRequest {
    database: String,
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
    #[serde(default)]
    max_rows: Option<usize>,
}

/// Run the query; the reply is the ABI's JSON (`columns`, `rows`, `truncated`, or `error`).
pub(crate) fn query(dirs: &[DirGrant], req: SqlRequest, deadline: Instant) -> Value {
    match run(dirs, &req, deadline) {
        Ok(v) => v,
        // Path errors already name the path.
        Err(e) if e.starts_with(&req.database) => error_reply(e),
        Err(e) => error_reply(format!("{}: {e}", req.database)),
    }
}

fn run(dirs: &[DirGrant], req: &SqlRequest, deadline: Instant) -> Result<Value, String> {
    let path = resolve_guest_path(dirs, &req.database)?;
    let conn = rusqlite::Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| e.to_string())?;
    // ATTACH would open any file the supervisor can read.
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)
        .map_err(|e| e.to_string())?;
    conn.progress_handler(1_000, Some(move || Instant::now() >= deadline))
        .map_err(|e| e.to_string())?;
    let mut stmt = conn.prepare(&req.sql).map_err(|e| e.to_string())?;
    if !stmt.readonly() {
        return Err("only read-only statements are allowed".into());
    }
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let params: Vec<rusqlite::types::Value> = req.params.iter().map(to_sql).collect();
    let limit = req.max_rows.unwrap_or(DEFAULT_ROWS).min(MAX_ROWS);
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(|e| e.to_string())?;
    let (mut out, mut bytes, mut truncated) = (Vec::new(), 0usize, false);
    loop {
        let row = match rows.next() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::OperationInterrupted =>
            {
                return Err("the query did not finish within the call's time".into());
            }
            Err(e) => return Err(e.to_string()),
        };
        if out.len() == limit || bytes > MAX_REPLY_BYTES {
            truncated = true;
            break;
        }
        let cells: Vec<Value> = (0..columns.len())
            .map(|i| row.get_ref(i).map(to_json).unwrap_or(Value::Null))
            .collect();
        bytes += cells.iter().map(|c| c.to_string().len()).sum::<usize>();
        out.push(Value::Array(cells));
    }
    Ok(json!({ "columns": columns, "rows": out, "truncated": truncated }))
}

fn to_sql(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    match v {
        Value::Null => S::Null,
        Value::Bool(b) => S::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => S::Integer(i),
            None => S::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => S::Text(s.clone()),
        other => S::Text(other.to_string()),
    }
}

fn to_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
        // Blobs are described, not dumped: a module asking for bytes should select hex(col).
        ValueRef::Blob(b) => format!("<blob of {} bytes>", b.len()).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn db() -> (tempfile::TempDir, Vec<DirGrant>) {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("shop.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE items(name TEXT, price REAL, qty INTEGER);
             INSERT INTO items VALUES ('apple', 0.5, 10), ('pear', 0.75, 3), ('fig', 2.0, 0);",
        )
        .unwrap();
        let grants = vec![DirGrant {
            host: dir.path().to_owned(),
            guest: ".".into(),
            writable: false,
        }];
        (dir, grants)
    }

    fn ask(grants: &[DirGrant], req: Value) -> Value {
        let req: SqlRequest = serde_json::from_value(req).unwrap();
        query(grants, req, Instant::now() + Duration::from_secs(5))
    }

    #[test]
    fn selects_with_params_and_row_limit() {
        let (_dir, g) = db();
        let r = ask(
            &g,
            json!({"database": "shop.db",
            "sql": "SELECT name, price FROM items WHERE qty > ? ORDER BY name", "params": [1]}),
        );
        assert_eq!(r["columns"], json!(["name", "price"]));
        assert_eq!(r["rows"], json!([["apple", 0.5], ["pear", 0.75]]));
        assert_eq!(r["truncated"], json!(false));
        let r = ask(
            &g,
            json!({"database": "shop.db", "sql": "SELECT name FROM items", "max_rows": 2}),
        );
        assert_eq!(r["rows"].as_array().unwrap().len(), 2);
        assert_eq!(r["truncated"], json!(true));
    }

    #[test]
    fn refuses_writes_attachments_and_paths_outside() {
        let (_dir, g) = db();
        let r = ask(
            &g,
            json!({"database": "shop.db", "sql": "DELETE FROM items"}),
        );
        assert!(r["error"].as_str().unwrap().contains("read-only"), "{r}");
        let r = ask(
            &g,
            json!({"database": "shop.db", "sql": "ATTACH '/etc/passwd' AS p"}),
        );
        assert!(r["error"].is_string(), "{r}");
        let r = ask(&g, json!({"database": "../shop.db", "sql": "SELECT 1"}));
        assert!(r["error"].as_str().unwrap().contains("outside"), "{r}");
        let r = ask(&g, json!({"database": "missing.db", "sql": "SELECT 1"}));
        assert!(r["error"].as_str().unwrap().contains("missing.db"), "{r}");
    }

    #[test]
    fn a_slow_query_stops_at_the_deadline() {
        let (_dir, g) = db();
        let req: SqlRequest = serde_json::from_value(json!({"database": "shop.db",
            "sql": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"}))
        .unwrap();
        let started = Instant::now();
        let r = query(&g, req, Instant::now() + Duration::from_millis(100));
        assert!(r["error"].as_str().unwrap().contains("time"), "{r}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
