//! Parsing: sqlparser (Postgres dialect) for standard statements, and the statements
//! Sluice adds (`CREATE TOPIC`, `DROP TOPIC`, `SHOW TOPICS`, `ALTER MATERIALIZED VIEW ...
//! REBUILD`, `EXPLAIN REBUILD`), recognised by their first words and parsed with the
//! same parser's pieces.

use sqlparser::ast::{self, Ident, ObjectName, SqlOption, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use super::error::SqlError;

/// Where a rebuild starts.
pub use crate::dataflow::plan::StartFrom as RebuildFrom;

/// A parsed statement.
#[derive(Debug, Clone)]
pub enum Stmt {
    /// A standard statement.
    Std(Box<Statement>),
    /// `CREATE TOPIC name (columns) [WITH (...)]`: parsed as a CREATE TABLE without a key.
    CreateTopic(Box<ast::CreateTable>),
    /// `DROP TOPIC [IF EXISTS] name`
    DropTopic { name: String, if_exists: bool },
    /// `SHOW TOPICS`
    ShowTopics,
    /// `ALTER MATERIALIZED VIEW name REBUILD [FROM EARLIEST | FROM OFFSET n | FROM TIMESTAMP 'ts']`
    Rebuild { view: String, from: RebuildFrom, options: Vec<(String, String)> },
    /// `ALTER MATERIALIZED VIEW name CANCEL REBUILD`
    CancelRebuild { view: String },
    /// `EXPLAIN REBUILD name [FROM ...]`
    ExplainRebuild { view: String, from: RebuildFrom },
}

/// Postgres semantics: unquoted names fold to lower case, quoted ones stay as written.
pub fn ident_norm(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_ascii_lowercase()
    }
}

/// The last part of a (possibly qualified) name, normalised.
pub fn name_norm(name: &ObjectName) -> Option<String> {
    name.0.last().and_then(|p| p.as_ident()).map(ident_norm)
}

fn parser_error(e: ParserError) -> SqlError {
    let msg = match e {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
        ParserError::RecursionLimitExceeded => "the statement nests too deeply".to_string(),
    };
    SqlError::syntax(msg)
}

fn is_word(t: &Token, s: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(s))
}

/// Splits a script at semicolons outside quotes, comments and dollar quotes.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'$' => {
                // $tag$ ... $tag$
                if let Some(end) = sql[i + 1..].find('$') {
                    let tag = &sql[i..i + 2 + end];
                    if tag[1..tag.len() - 1].chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        if let Some(close) = sql[i + tag.len()..].find(tag) {
                            i += tag.len() + close + tag.len() - 1;
                        }
                    }
                }
            }
            b';' => {
                out.push(&sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&sql[start..]);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

fn parse_rebuild_from(p: &mut Parser<'_>) -> Result<RebuildFrom, SqlError> {
    if !p.parse_keyword(Keyword::FROM) {
        return Ok(RebuildFrom::Earliest);
    }
    let t = p.next_token();
    if is_word(&t.token, "EARLIEST") {
        return Ok(RebuildFrom::Earliest);
    }
    if is_word(&t.token, "OFFSET") {
        let n = p.parse_literal_uint().map_err(parser_error)?;
        return Ok(RebuildFrom::Offset(n));
    }
    if is_word(&t.token, "TIMESTAMP") {
        let s = p.parse_literal_string().map_err(parser_error)?;
        let ms = super::types::parse_timestamp(&s).ok_or_else(|| {
            SqlError::syntax(format!("'{s}' is not a timestamp (use RFC 3339 or 'YYYY-MM-DD HH:MM:SS')"))
        })?;
        return Ok(RebuildFrom::Timestamp(ms));
    }
    Err(SqlError::syntax(format!("expected EARLIEST, OFFSET n or TIMESTAMP 'ts' after FROM, found {}", t.token)))
}

fn expect_end(p: &mut Parser<'_>) -> Result<(), SqlError> {
    let t = p.peek_token();
    match t.token {
        Token::EOF | Token::SemiColon => Ok(()),
        other => Err(SqlError::syntax(format!("unexpected {other} at the end of the statement"))),
    }
}

/// `WITH (k = v, ...)` as (key, value text) pairs.
pub fn option_pairs(opts: &[SqlOption]) -> Result<Vec<(String, String)>, SqlError> {
    let mut out = Vec::new();
    for o in opts {
        match o {
            SqlOption::KeyValue { key, value } => {
                let k = name_norm(key).ok_or_else(|| SqlError::syntax("bad option name"))?;
                let v = match value {
                    ast::Expr::Value(v) => match &v.value {
                        ast::Value::SingleQuotedString(s) => s.clone(),
                        ast::Value::Number(n, _) => n.clone(),
                        ast::Value::Boolean(b) => b.to_string(),
                        other => other.to_string(),
                    },
                    ast::Expr::Identifier(id) => ident_norm(id),
                    ast::Expr::Interval(i) => {
                        let text = match i.value.as_ref() {
                            ast::Expr::Value(v) => match &v.value {
                                ast::Value::SingleQuotedString(s) | ast::Value::Number(s, _) => s.clone(),
                                other => other.to_string(),
                            },
                            other => other.to_string(),
                        };
                        match &i.leading_field {
                            Some(f) => format!("{text} {f}"),
                            None => text,
                        }
                    }
                    other => other.to_string(),
                };
                out.push((k, v));
            }
            SqlOption::Ident(name) => out.push((name_norm(name).unwrap_or_default(), "true".into())),
            other => return Err(SqlError::unsupported(format!("option {other} is not supported"))),
        }
    }
    Ok(out)
}

fn parse_one(sql: &str) -> Result<Stmt, SqlError> {
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(sql).map_err(parser_error)?;
    let [t0, t1, t2] = p.peek_tokens::<3>();
    if is_word(&t0, "CREATE") && is_word(&t1, "TOPIC") {
        // Same grammar as CREATE TABLE: parse it as one, with TABLE in TOPIC's place.
        let at = sql.to_ascii_uppercase().find("TOPIC").unwrap_or(0);
        let rewritten = format!("{}TABLE{}", &sql[..at], &sql[at + 5..]);
        let stmts = Parser::parse_sql(&dialect, &rewritten).map_err(parser_error)?;
        return match stmts.into_iter().next() {
            Some(Statement::CreateTable(ct)) => Ok(Stmt::CreateTopic(Box::new(ct))),
            _ => Err(SqlError::syntax("expected CREATE TOPIC name (column TYPE, ...) [WITH (...)]")),
        };
    }
    if is_word(&t0, "DROP") && is_word(&t1, "TOPIC") {
        p.next_token();
        p.next_token();
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = p.parse_object_name(false).map_err(parser_error)?;
        expect_end(&mut p)?;
        return Ok(Stmt::DropTopic { name: name_norm(&name).unwrap_or_default(), if_exists });
    }
    if is_word(&t0, "SHOW") && is_word(&t1, "TOPICS") {
        return Ok(Stmt::ShowTopics);
    }
    if is_word(&t0, "ALTER") && is_word(&t1, "MATERIALIZED") && is_word(&t2, "VIEW") {
        p.next_token();
        p.next_token();
        p.next_token();
        let name = p.parse_object_name(false).map_err(parser_error)?;
        let view = name_norm(&name).unwrap_or_default();
        let t = p.next_token();
        if is_word(&t.token, "REBUILD") {
            let from = parse_rebuild_from(&mut p)?;
            let options = if p.peek_keyword(Keyword::WITH) {
                let opts = p.parse_options(Keyword::WITH).map_err(parser_error)?;
                option_pairs(&opts)?
            } else {
                Vec::new()
            };
            expect_end(&mut p)?;
            return Ok(Stmt::Rebuild { view, from, options });
        }
        if is_word(&t.token, "CANCEL") {
            let t = p.next_token();
            if !is_word(&t.token, "REBUILD") {
                return Err(SqlError::syntax("expected CANCEL REBUILD"));
            }
            expect_end(&mut p)?;
            return Ok(Stmt::CancelRebuild { view });
        }
        return Err(SqlError::syntax(format!(
            "expected REBUILD [FROM ...] or CANCEL REBUILD after ALTER MATERIALIZED VIEW {view}, found {}",
            t.token
        )));
    }
    if is_word(&t0, "EXPLAIN") && is_word(&t1, "REBUILD") {
        p.next_token();
        p.next_token();
        let name = p.parse_object_name(false).map_err(parser_error)?;
        let from = parse_rebuild_from(&mut p)?;
        expect_end(&mut p)?;
        return Ok(Stmt::ExplainRebuild { view: name_norm(&name).unwrap_or_default(), from });
    }
    let mut stmts = p.parse_statements().map_err(parser_error)?;
    match stmts.len() {
        1 => Ok(Stmt::Std(Box::new(stmts.remove(0)))),
        0 => Err(SqlError::syntax("empty statement")),
        _ => Err(SqlError::syntax("one statement at a time")),
    }
}

/// Parses a script of one or more statements.
pub fn parse(sql: &str) -> Result<Vec<(String, Stmt)>, SqlError> {
    let parts = split_statements(sql);
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        out.push((part.trim().to_string(), parse_one(part)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sluice_statements_parse() {
        let s =
            parse("CREATE TOPIC trades (ts TIMESTAMP NOT NULL, sym TEXT) WITH (partitions = 4); SHOW TOPICS").unwrap();
        assert_eq!(s.len(), 2);
        assert!(matches!(&s[0].1, Stmt::CreateTopic(ct) if ct.columns.len() == 2));
        assert!(matches!(s[1].1, Stmt::ShowTopics));
        assert!(matches!(
            parse("ALTER MATERIALIZED VIEW v REBUILD FROM OFFSET 42").unwrap()[0].1,
            Stmt::Rebuild { from: RebuildFrom::Offset(42), .. }
        ));
        assert!(matches!(
            parse("EXPLAIN REBUILD v FROM TIMESTAMP '2026-01-01 00:00:00'").unwrap()[0].1,
            Stmt::ExplainRebuild { from: RebuildFrom::Timestamp(1_767_225_600_000), .. }
        ));
        assert!(matches!(parse("DROP TOPIC IF EXISTS t").unwrap()[0].1, Stmt::DropTopic { if_exists: true, .. }));
        let err = parse("SELEC 1").unwrap_err();
        assert_eq!(err.code, "42601");
        assert_eq!(split_statements("select ';'; select 2 -- ;\n"), vec!["select ';'", " select 2 -- ;\n"]);
    }
}
