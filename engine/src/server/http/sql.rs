//! SQL over HTTP: `POST /sql` runs a script (the same statements as pgwire), and
//! `GET /views/{name}` reads a view (equality filters, order, limit as query parameters).
//!
//! `POST /sql` takes the SQL as the body (`text/plain`), or JSON `{"query": "..."}`, and
//! answers `{"results": [...]}`, one entry per statement: `{"tag", "columns", "rows"}`
//! for rows (values as JSON), `{"tag"}` for commands. An error stops the script: status
//! 400 (404 for an unknown relation, 409 for one that exists) with
//! `{"error": {"code": SQLSTATE, "message"}, "results": [what ran before]}`.

use std::rc::Rc;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::{body, error, json, query, HttpConfig, HttpResponse};
use crate::server::node::Node;
use crate::server::sql::{execute_script, Outcome};
use crate::sql::error::{sqlstate, SqlError};

fn outcome_json(o: &Outcome) -> Value {
    match o {
        Outcome::Rows { columns, rows } => json!({
            "tag": o.tag(),
            "columns": columns.iter().map(|(n, t)| json!({"name": n, "type": t.name()})).collect::<Vec<_>>(),
            "rows": rows.iter().map(|r| Value::Array(r.iter().map(|d| d.to_json()).collect())).collect::<Vec<_>>(),
        }),
        Outcome::Command(tag) => json!({ "tag": tag }),
    }
}

fn status_of(e: &SqlError) -> StatusCode {
    match e.code {
        sqlstate::UNDEFINED_TABLE => StatusCode::NOT_FOUND,
        sqlstate::DUPLICATE_TABLE => StatusCode::CONFLICT,
        sqlstate::IO_ERROR | sqlstate::INTERNAL_ERROR => StatusCode::INTERNAL_SERVER_ERROR,
        sqlstate::QUERY_CANCELED => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

async fn run(node: &Rc<Node>, sql: &str) -> HttpResponse {
    match execute_script(node, sql).await {
        Ok(results) => {
            json(StatusCode::OK, &json!({ "results": results.iter().map(outcome_json).collect::<Vec<_>>() }))
        }
        Err((done, e)) => json(
            status_of(&e),
            &json!({
                "error": { "code": e.code, "message": e.message },
                "results": done.iter().map(outcome_json).collect::<Vec<_>>(),
            }),
        ),
    }
}

/// `POST /sql`
pub async fn post(node: &Rc<Node>, req: Request<Incoming>, config: &HttpConfig) -> HttpResponse {
    let is_json = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let bytes = match body(req, config.body_bytes_max).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return error(StatusCode::BAD_REQUEST, "the SQL is not UTF-8");
    };
    let sql = if is_json {
        match serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("query").and_then(Value::as_str).map(str::to_string))
        {
            Some(q) => q,
            None => return error(StatusCode::BAD_REQUEST, "expected a JSON object {\"query\": \"...\"}"),
        }
    } else {
        text.to_string()
    };
    run(node, &sql).await
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `GET /views/{name}?col=value&...&order=col [desc]&limit=n`: the view's rows, as
/// `SELECT * FROM name WHERE col = 'value' AND ... ORDER BY ... LIMIT n` would give them
/// (a filter on every group key is a lookup on one shard).
pub async fn read_view(node: &Rc<Node>, name: &str, req: &Request<Incoming>) -> HttpResponse {
    let mut filters = Vec::new();
    let mut order = None;
    let mut limit = None;
    for (k, v) in query(req) {
        match k.as_str() {
            "order" => {
                let mut parts = v.split_whitespace();
                let col = parts.next().unwrap_or_default();
                let dir = match parts.next().map(str::to_ascii_lowercase).as_deref() {
                    None | Some("asc") => "ASC",
                    Some("desc") => "DESC",
                    Some(other) => {
                        return error(StatusCode::BAD_REQUEST, format!("order direction '{other}' is not asc or desc"))
                    }
                };
                order = Some(format!("{} {dir}", quote_ident(col)));
            }
            "limit" => match v.parse::<u64>() {
                Ok(n) => limit = Some(n),
                Err(_) => return error(StatusCode::BAD_REQUEST, format!("limit '{v}' is not a number")),
            },
            _ => filters.push(format!("{} = {}", quote_ident(&k), quote_literal(&v))),
        }
    }
    let mut sql = format!("SELECT * FROM {}", quote_ident(name));
    if !filters.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&filters.join(" AND "));
    }
    if let Some(o) = order {
        sql.push_str(" ORDER BY ");
        sql.push_str(&o);
    }
    if let Some(n) = limit {
        sql.push_str(&format!(" LIMIT {n}"));
    }
    match execute_script(node, &sql).await {
        Ok(mut results) => match results.pop() {
            Some(Outcome::Rows { columns, rows }) => {
                let objects: Vec<Value> = rows
                    .iter()
                    .map(|r| Value::Object(columns.iter().zip(r).map(|((n, _), d)| (n.clone(), d.to_json())).collect()))
                    .collect();
                json(StatusCode::OK, &json!({ "rows": objects }))
            }
            _ => error(StatusCode::INTERNAL_SERVER_ERROR, "the read returned no rows"),
        },
        Err((_, e)) => json(status_of(&e), &json!({ "error": { "code": e.code, "message": e.message } })),
    }
}

/// `GET /views/{name}/rebuild`: the running or last rebuild of a view, as JSON (404: the
/// view does not exist; `null`: it was never rebuilt since the server started).
pub async fn rebuild_progress(node: &Rc<Node>, name: &str) -> HttpResponse {
    match node.rebuild_progress(name).await {
        Ok(p) => {
            let mut v = serde_json::to_value(&p).unwrap_or(serde_json::Value::Null);
            if let (Some(obj), Some(p)) = (v.as_object_mut(), p.as_ref()) {
                obj.insert("fraction".into(), serde_json::json!(p.fraction()));
                obj.insert("lag_events".into(), serde_json::json!(p.lag_events()));
            }
            super::json(StatusCode::OK, &v)
        }
        Err(e) if e.code == crate::sql::error::sqlstate::UNDEFINED_TABLE => {
            super::error(StatusCode::NOT_FOUND, e.message)
        }
        Err(e) => super::error(StatusCode::SERVICE_UNAVAILABLE, e.message),
    }
}
