//! The Postgres wire protocol (v3) on `pg=`: what psql, psycopg and other libpq clients
//! speak. Messages are framed here (a length checked before anything is allocated) and
//! decoded and encoded with the `pgwire` crate's codec; statements are planned and run
//! by `server/sql.rs`, the same path HTTP's `/sql` takes.
//!
//! Both query protocols: simple (`Q`, several statements, text results) and extended
//! (Parse, Bind, Describe, Execute, Sync; named statements and portals, parameters and
//! results in text or binary). Errors are `ErrorResponse`s with a SQLSTATE; in the
//! extended protocol the rest of the batch is skipped until Sync, as Postgres does.
//! There is no authentication (the listener binds to loopback by default) and no TLS:
//! an SSL request is answered `N` and libpq continues in the clear.

pub mod values;

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use pgwire::messages::data::{DataRow, FieldDescription, NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{BindComplete, CloseComplete, ParseComplete, PortalSuspended};
use pgwire::messages::response::{
    CommandComplete, EmptyQueryResponse, ErrorResponse, ReadyForQuery, TransactionStatus,
};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus, SecretKey};
use pgwire::messages::{DecodeContext, PgWireBackendMessage as B, PgWireFrontendMessage as F, ProtocolVersion};

use super::node::Node;
use super::sql::{execute, plan_stmt, Outcome};
use crate::limits::{PG_PORTALS_PER_CONNECTION_MAX, PG_STATEMENTS_PER_CONNECTION_MAX};
use crate::sql::error::{sqlstate, SqlError};
use crate::sql::lower::Params;
use crate::sql::parse::Stmt;
use crate::sql::types::{DataType, OwnedDatum};

/// Limits of a pg connection.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// Largest message accepted (a Query or a Bind with its parameters).
    pub message_bytes_max: usize,
    /// A connection silent this long is closed.
    pub idle_ms: u64,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            message_bytes_max: crate::limits::PG_MESSAGE_BYTES_MAX_DEFAULT,
            idle_ms: crate::limits::CONNECTION_IDLE_MS_DEFAULT,
        }
    }
}

const SSL_REQUEST_CODE: i32 = 80_877_103;
const GSSENC_REQUEST_CODE: i32 = 80_877_104;
const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// A startup packet is small; anything bigger is not a Postgres client.
const STARTUP_BYTES_MAX: usize = 10_000;
/// Write out buffered replies once they are this big.
const WRITE_BUFFER_FLUSH_BYTES: usize = 64 << 10;

/// A parsed (and planned, to learn its types) statement.
struct Prepared {
    sql: String,
    /// `None`: the empty statement.
    stmt: Option<Stmt>,
    /// The OIDs the client declared (0: unspecified).
    declared: Vec<u32>,
    param_types: Vec<DataType>,
    columns: Vec<(String, DataType)>,
}

/// A bound statement, and its result once executed (sent a part at a time).
struct Portal {
    statement: Rc<Prepared>,
    values: Vec<OwnedDatum>,
    result_formats: Vec<i16>,
    result: Option<(Vec<Vec<OwnedDatum>>, usize, String)>,
}

enum Read {
    Frame(u8, BytesMut),
    Closed,
}

struct Connection {
    node: Rc<Node>,
    config: Rc<PgConfig>,
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    statements: HashMap<String, Rc<Prepared>>,
    portals: HashMap<String, Portal>,
    tx: TransactionStatus,
    /// After an error in the extended protocol: skip until Sync.
    skipping: bool,
    ctx: DecodeContext,
}

fn format_at(codes: &[i16], i: usize) -> i16 {
    match codes.len() {
        0 => 0,
        1 => codes[0],
        _ => codes.get(i).copied().unwrap_or(0),
    }
}

fn error_response(severity: &str, e: &SqlError) -> B {
    // Fields are C strings: a NUL from a client's bytes echoed in a message would end the
    // field early and corrupt the frame.
    B::ErrorResponse(ErrorResponse::new(vec![
        (b'S', severity.to_string()),
        (b'V', severity.to_string()),
        (b'C', e.code.to_string()),
        (b'M', e.message.replace('\0', "\\0")),
    ]))
}

fn row_description(columns: &[(String, DataType)], formats: &[i16]) -> B {
    let fields = columns
        .iter()
        .enumerate()
        .map(|(i, (name, ty))| {
            FieldDescription::new(name.clone(), 0, 0, ty.pg_oid(), ty.pg_size(), -1, format_at(formats, i))
        })
        .collect();
    B::RowDescription(RowDescription::new(fields))
}

/// Serves one client until it leaves, breaks the protocol, idles out, or the shard stops.
pub async fn serve_connection(node: Rc<Node>, config: Rc<PgConfig>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    ctx.awaiting_frontend_ssl = false;
    ctx.awaiting_frontend_startup = false;
    let mut c = Connection {
        node,
        config,
        stream,
        rbuf: BytesMut::with_capacity(8 << 10),
        wbuf: BytesMut::with_capacity(8 << 10),
        statements: HashMap::new(),
        portals: HashMap::new(),
        tx: TransactionStatus::Idle,
        skipping: false,
        ctx,
    };
    match c.startup().await {
        Ok(true) => {}
        _ => return,
    }
    if let Err(e) = c.run().await {
        tracing::debug!(error = %e, "pg connection ended");
    }
    let _ = c.stream.close().await;
}

impl Connection {
    /// Reads until `rbuf` holds `n` bytes; false if the client left or idled out.
    async fn fill(&mut self, n: usize) -> std::io::Result<bool> {
        let idle = Duration::from_millis(self.config.idle_ms);
        let mut chunk = [0u8; 16 << 10];
        while self.rbuf.len() < n {
            let node = self.node.clone();
            let read = futures_lite::future::or(
                async { Some(self.stream.read(&mut chunk).await) },
                futures_lite::future::or(
                    async {
                        glommio::timer::sleep(idle).await;
                        None
                    },
                    async {
                        node.stopped().await;
                        None
                    },
                ),
            )
            .await;
            match read {
                Some(Ok(0)) | None => return Ok(false),
                Some(Ok(k)) => self.rbuf.extend_from_slice(&chunk[..k]),
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(true)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.wbuf.is_empty() {
            let out = self.wbuf.split();
            let deadline = Duration::from_millis(crate::limits::REPLY_WRITE_MS_MAX);
            glommio::timer::timeout(deadline, async {
                self.stream.write_all(&out).await.map_err(glommio::GlommioError::IoError)
            })
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        Ok(())
    }

    fn send(&mut self, msg: B) {
        // Encoding only fails past pgwire's size limits, which our messages never reach.
        if let Err(e) = msg.encode(&mut self.wbuf) {
            tracing::warn!(error = %e, "encoding a pg message failed");
        }
    }

    /// The startup exchange: SSL refused, parameters read, session parameters sent.
    async fn startup(&mut self) -> std::io::Result<bool> {
        loop {
            if !self.fill(8).await? {
                return Ok(false);
            }
            let len = i32::from_be_bytes([self.rbuf[0], self.rbuf[1], self.rbuf[2], self.rbuf[3]]);
            let code = i32::from_be_bytes([self.rbuf[4], self.rbuf[5], self.rbuf[6], self.rbuf[7]]);
            if !(8..=STARTUP_BYTES_MAX as i32).contains(&len) {
                return Ok(false);
            }
            if code == SSL_REQUEST_CODE || code == GSSENC_REQUEST_CODE {
                let _ = self.rbuf.split_to(8);
                self.stream.write_all(b"N").await?;
                continue;
            }
            if code == CANCEL_REQUEST_CODE {
                // Queries are short and there is nothing to cancel: close, as Postgres does.
                return Ok(false);
            }
            if !self.fill(len as usize).await? {
                return Ok(false);
            }
            let packet = self.rbuf.split_to(len as usize);
            if code >> 16 != 3 {
                let e = SqlError::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("unsupported frontend protocol {}.{}", code >> 16, code & 0xffff),
                );
                self.send(error_response("FATAL", &e));
                self.flush().await?;
                return Ok(false);
            }
            let params = parse_startup_parameters(&packet[8..]);
            if (code & 0xffff) != 0 {
                self.send(B::NegotiateProtocolVersion(pgwire::messages::startup::NegotiateProtocolVersion::new(
                    0,
                    params.iter().filter(|(k, _)| k.starts_with("_pq_.")).map(|(k, _)| k.clone()).collect(),
                )));
            }
            self.send(B::Authentication(Authentication::Ok));
            let app = params.iter().find(|(k, _)| k == "application_name").map(|(_, v)| v.clone()).unwrap_or_default();
            let user = params.iter().find(|(k, _)| k == "user").map(|(_, v)| v.clone()).unwrap_or_default();
            for (k, v) in [
                ("server_version", "15.0 (Sluice)".to_string()),
                ("server_encoding", "UTF8".into()),
                ("client_encoding", "UTF8".into()),
                ("DateStyle", "ISO, MDY".into()),
                ("TimeZone", "UTC".into()),
                ("IntervalStyle", "postgres".into()),
                ("integer_datetimes", "on".into()),
                ("standard_conforming_strings", "on".into()),
                ("is_superuser", "on".into()),
                ("application_name", app),
                ("session_authorization", user),
            ] {
                self.send(B::ParameterStatus(ParameterStatus::new(k.to_string(), v)));
            }
            let pid = (self.node.shard.index as i32) << 24 | (self.node.connections.get() as i32 & 0xff_ffff);
            self.send(B::BackendKeyData(BackendKeyData::new(pid, SecretKey::I32(0))));
            self.send(B::ReadyForQuery(ReadyForQuery::new(self.tx)));
            self.flush().await?;
            return Ok(true);
        }
    }

    /// Reads one message: type, then a length checked against the limit before its body
    /// is read.
    async fn read_message(&mut self) -> std::io::Result<Read> {
        if !self.fill(5).await? {
            return Ok(Read::Closed);
        }
        let tag = self.rbuf[0];
        let len = i32::from_be_bytes([self.rbuf[1], self.rbuf[2], self.rbuf[3], self.rbuf[4]]);
        if len < 4 || len as usize > self.config.message_bytes_max {
            let e = SqlError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("message of {len} bytes is outside 4..={} bytes", self.config.message_bytes_max),
            );
            self.send(error_response("FATAL", &e));
            let _ = self.flush().await;
            return Ok(Read::Closed);
        }
        let total = 1 + len as usize;
        self.rbuf.reserve(total.saturating_sub(self.rbuf.len()));
        if !self.fill(total).await? {
            return Ok(Read::Closed);
        }
        Ok(Read::Frame(tag, self.rbuf.split_to(total)))
    }

    async fn run(&mut self) -> std::io::Result<()> {
        loop {
            let (tag, mut frame) = match self.read_message().await? {
                Read::Frame(t, f) => (t, f),
                Read::Closed => return Ok(()),
            };
            let ctx = &self.ctx;
            // pgwire's decoders index short messages without checking (a 7-byte Parse).
            let decoded = crate::contained::catch(|| F::decode(&mut frame, ctx));
            let msg = match decoded {
                Some(Ok(Some(m))) => m,
                _ => {
                    let e = SqlError::new(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!("malformed message of type '{}'", tag as char),
                    );
                    self.send(error_response("FATAL", &e));
                    let _ = self.flush().await;
                    return Ok(());
                }
            };
            if self.skipping && !matches!(msg, F::Sync(_) | F::Terminate(_)) {
                continue;
            }
            match msg {
                F::Query(q) => {
                    self.simple_query(&q.query).await;
                    self.send(B::ReadyForQuery(ReadyForQuery::new(self.tx)));
                    self.flush().await?;
                }
                F::Parse(p) => {
                    let r = self.parse(p.name.unwrap_or_default(), p.query, p.type_oids);
                    self.extended(r.map(|_| B::ParseComplete(ParseComplete::new())));
                }
                F::Bind(b) => {
                    let r = self.bind(
                        b.portal_name.unwrap_or_default(),
                        b.statement_name.unwrap_or_default(),
                        &b.parameter_format_codes,
                        &b.parameters,
                        b.result_column_format_codes,
                    );
                    self.extended(r.map(|_| B::BindComplete(BindComplete::new())));
                }
                F::Describe(d) => {
                    let r = self.describe(d.target_type, &d.name.unwrap_or_default());
                    if let Err(e) = r {
                        self.fail(e);
                    }
                }
                F::Execute(e) => {
                    let r = self.execute_portal(&e.name.unwrap_or_default(), e.max_rows).await;
                    if let Err(e) = r {
                        self.fail(e);
                    }
                }
                F::Close(c) => {
                    let name = c.name.unwrap_or_default();
                    if c.target_type == b'S' {
                        self.statements.remove(&name);
                    } else {
                        self.portals.remove(&name);
                    }
                    self.send(B::CloseComplete(CloseComplete::new()));
                }
                F::Sync(_) => {
                    self.skipping = false;
                    // Outside BEGIN, Sync ends the implicit transaction, and its portals with it.
                    if self.tx == TransactionStatus::Idle {
                        self.portals.clear();
                    } else {
                        self.portals.remove("");
                    }
                    self.send(B::ReadyForQuery(ReadyForQuery::new(self.tx)));
                    self.flush().await?;
                }
                F::Flush(_) => self.flush().await?,
                F::Terminate(_) => return Ok(()),
                _ => {
                    let e =
                        SqlError::new(sqlstate::PROTOCOL_VIOLATION, format!("unexpected message '{}'", tag as char));
                    self.send(error_response("FATAL", &e));
                    let _ = self.flush().await;
                    return Ok(());
                }
            }
            if self.wbuf.len() >= WRITE_BUFFER_FLUSH_BYTES {
                self.flush().await?;
            }
        }
    }

    /// A failed extended-protocol message: the error, then everything up to Sync skipped.
    fn fail(&mut self, e: SqlError) {
        self.send(error_response("ERROR", &e));
        self.skipping = true;
        if self.tx == TransactionStatus::Transaction {
            self.tx = TransactionStatus::Error;
        }
    }

    fn extended(&mut self, r: Result<B, SqlError>) {
        match r {
            Ok(m) => self.send(m),
            Err(e) => self.fail(e),
        }
    }

    /// Tracks BEGIN / COMMIT / ROLLBACK (there are no multi-statement transactions:
    /// every statement takes effect at once, as with autocommit).
    fn track_transaction(&mut self, tag: &str, running_portal: &str) {
        match tag {
            "BEGIN" => self.tx = TransactionStatus::Transaction,
            "COMMIT" | "ROLLBACK" => {
                self.tx = TransactionStatus::Idle;
                // Portals live for their transaction; the one running this statement
                // stays until its completion is sent.
                self.portals.retain(|n, _| n == running_portal);
            }
            _ => {}
        }
    }

    fn aborted(&self, stmt: Option<&Stmt>) -> Option<SqlError> {
        if self.tx != TransactionStatus::Error {
            return None;
        }
        let ends = matches!(stmt, Some(Stmt::Std(s)) if matches!(s.as_ref(), sqlparser::ast::Statement::Commit { .. } | sqlparser::ast::Statement::Rollback { .. }));
        (!ends).then(|| {
            SqlError::new("25P02", "current transaction is aborted, commands ignored until end of transaction block")
        })
    }

    async fn simple_query(&mut self, sql: &str) {
        let stmts = match crate::sql::parse::parse(sql) {
            Ok(s) => s,
            Err(e) => {
                self.send(error_response("ERROR", &e));
                if self.tx == TransactionStatus::Transaction {
                    self.tx = TransactionStatus::Error;
                }
                return;
            }
        };
        if stmts.is_empty() {
            self.send(B::EmptyQueryResponse(EmptyQueryResponse::new()));
            return;
        }
        for (text, stmt) in stmts {
            let result = match self.aborted(Some(&stmt)) {
                Some(e) => Err(e),
                None => self.run_statement(&text, &stmt, Params::default()).await,
            };
            match result {
                Ok(outcome) => {
                    let tag = outcome.tag();
                    if let Outcome::Rows { columns, rows } = &outcome {
                        self.send(row_description(columns, &[]));
                        self.send_rows(columns, rows, &[]);
                    }
                    self.track_transaction(&tag, "");
                    if self.tx == TransactionStatus::Error && tag == "COMMIT" {
                        self.tx = TransactionStatus::Idle;
                    }
                    self.send(B::CommandComplete(CommandComplete::new(tag)));
                }
                Err(e) => {
                    self.send(error_response("ERROR", &e));
                    if self.tx == TransactionStatus::Transaction {
                        self.tx = TransactionStatus::Error;
                    }
                    return;
                }
            }
        }
    }

    async fn run_statement(&mut self, sql: &str, stmt: &Stmt, mut params: Params) -> Result<Outcome, SqlError> {
        // Prepared statements are this connection's.
        if let Stmt::Std(s) = stmt {
            match s.as_ref() {
                sqlparser::ast::Statement::Deallocate { name, .. } if name.value.eq_ignore_ascii_case("all") => {
                    self.statements.retain(|n, _| n.is_empty());
                }
                sqlparser::ast::Statement::Deallocate { name, .. } => {
                    self.statements.remove(&crate::sql::parse::ident_norm(name));
                }
                sqlparser::ast::Statement::Discard { .. } => self.statements.clear(),
                _ => {}
            }
        }
        let planned = plan_stmt(&self.node, sql, stmt, &mut params)?;
        if params.values.is_none() && !params.types.is_empty() {
            return Err(SqlError::new(
                sqlstate::PROTOCOL_VIOLATION,
                "parameters ($1) need the extended query protocol",
            ));
        }
        let outcome = execute(&self.node, planned).await?;
        if let Outcome::Command(tag) = &outcome {
            if tag == "ROLLBACK" && self.tx == TransactionStatus::Error {
                self.tx = TransactionStatus::Idle;
            }
        }
        Ok(outcome)
    }

    fn send_rows(&mut self, columns: &[(String, DataType)], rows: &[Vec<OwnedDatum>], formats: &[i16]) {
        let mut data = BytesMut::new();
        for row in rows {
            for (i, (v, (_, ty))) in row.iter().zip(columns).enumerate() {
                values::put_value(&mut data, v, *ty, format_at(formats, i) == 1);
            }
            let row = DataRow::new(data.split(), row.len() as i16);
            self.send(B::DataRow(row));
        }
    }

    fn parse(&mut self, name: String, sql: String, declared: Vec<u32>) -> Result<(), SqlError> {
        if !name.is_empty() && self.statements.contains_key(&name) {
            return Err(SqlError::new("42P05", format!("prepared statement \"{name}\" already exists")));
        }
        let named = self.statements.len() - usize::from(self.statements.contains_key(""));
        if !name.is_empty() && named >= PG_STATEMENTS_PER_CONNECTION_MAX {
            return Err(SqlError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "this connection already holds {PG_STATEMENTS_PER_CONNECTION_MAX} prepared statements; \
                     DEALLOCATE or Close some first"
                ),
            ));
        }
        let mut stmts = crate::sql::parse::parse(&sql)?;
        let stmt = match stmts.len() {
            0 => None,
            1 => Some(stmts.remove(0).1),
            _ => return Err(SqlError::syntax("cannot insert multiple commands into a prepared statement")),
        };
        let mut params = Params::declared(declared.iter().map(|o| values::type_of_oid(*o)).collect());
        let columns = match &stmt {
            Some(s) => plan_stmt(&self.node, &sql, s, &mut params)?.columns(),
            None => Vec::new(),
        };
        let param_types = params.resolved_types();
        self.statements.insert(name, Rc::new(Prepared { sql, stmt, declared, param_types, columns }));
        Ok(())
    }

    fn bind(
        &mut self,
        portal: String,
        statement: String,
        param_formats: &[i16],
        raw: &[Option<bytes::Bytes>],
        result_formats: Vec<i16>,
    ) -> Result<(), SqlError> {
        let Some(st) = self.statements.get(&statement).cloned() else {
            return Err(SqlError::new(
                sqlstate::INVALID_SQL_STATEMENT_NAME,
                format!("prepared statement \"{statement}\" does not exist"),
            ));
        };
        if raw.len() != st.param_types.len() {
            return Err(SqlError::new(
                sqlstate::PROTOCOL_VIOLATION,
                format!(
                    "bind message supplies {} parameters, but prepared statement \"{statement}\" requires {}",
                    raw.len(),
                    st.param_types.len()
                ),
            ));
        }
        if param_formats.len() > 1 && param_formats.len() != raw.len() {
            return Err(SqlError::new(sqlstate::PROTOCOL_VIOLATION, "wrong number of parameter format codes"));
        }
        if result_formats.len() > 1 && result_formats.len() != st.columns.len() {
            return Err(SqlError::new(sqlstate::PROTOCOL_VIOLATION, "wrong number of result format codes"));
        }
        let mut vals = Vec::with_capacity(raw.len());
        for (i, v) in raw.iter().enumerate() {
            let oid = st.declared.get(i).copied().unwrap_or(0);
            vals.push(values::decode_param(i, v.as_deref(), format_at(param_formats, i) == 1, oid, st.param_types[i])?);
        }
        let named = self.portals.len() - usize::from(self.portals.contains_key(""));
        if !portal.is_empty() && !self.portals.contains_key(&portal) && named >= PG_PORTALS_PER_CONNECTION_MAX {
            return Err(SqlError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("this connection already holds {PG_PORTALS_PER_CONNECTION_MAX} open portals; Close some first"),
            ));
        }
        self.portals.insert(portal, Portal { statement: st, values: vals, result_formats, result: None });
        Ok(())
    }

    fn describe(&mut self, target: u8, name: &str) -> Result<(), SqlError> {
        if target == b'S' {
            let Some(st) = self.statements.get(name).cloned() else {
                return Err(SqlError::new(
                    sqlstate::INVALID_SQL_STATEMENT_NAME,
                    format!("prepared statement \"{name}\" does not exist"),
                ));
            };
            self.send(B::ParameterDescription(ParameterDescription::new(
                st.param_types.iter().map(|t| t.pg_oid()).collect(),
            )));
            if st.columns.is_empty() {
                self.send(B::NoData(NoData::new()));
            } else {
                self.send(row_description(&st.columns, &[]));
            }
            return Ok(());
        }
        let Some(p) = self.portals.get(name) else {
            return Err(SqlError::new(sqlstate::INVALID_CURSOR_NAME, format!("portal \"{name}\" does not exist")));
        };
        let msg = if p.statement.columns.is_empty() {
            B::NoData(NoData::new())
        } else {
            row_description(&p.statement.columns, &p.result_formats)
        };
        self.send(msg);
        Ok(())
    }

    async fn execute_portal(&mut self, name: &str, max_rows: i32) -> Result<(), SqlError> {
        let Some(portal) = self.portals.get(name) else {
            return Err(SqlError::new(sqlstate::INVALID_CURSOR_NAME, format!("portal \"{name}\" does not exist")));
        };
        if portal.result.is_none() {
            let st = portal.statement.clone();
            let Some(stmt) = &st.stmt else {
                self.send(B::EmptyQueryResponse(EmptyQueryResponse::new()));
                return Ok(());
            };
            if let Some(e) = self.aborted(Some(stmt)) {
                return Err(e);
            }
            let params = Params {
                types: st.param_types.iter().map(|t| Some(*t)).collect(),
                values: Some(portal.values.clone()),
            };
            let outcome = self.run_statement(&st.sql, stmt, params).await?;
            let tag = outcome.tag();
            self.track_transaction(&tag, name);
            let rows = match outcome {
                Outcome::Rows { rows, .. } => rows,
                Outcome::Command(_) => Vec::new(),
            };
            if let Some(p) = self.portals.get_mut(name) {
                p.result = Some((rows, 0, tag));
            }
        }
        let Some(portal) = self.portals.get_mut(name) else { return Ok(()) };
        let columns = portal.statement.columns.clone();
        let formats = portal.result_formats.clone();
        let Some((rows, sent, tag)) = portal.result.as_mut() else { return Ok(()) };
        let take = if max_rows > 0 { (max_rows as usize).min(rows.len() - *sent) } else { rows.len() - *sent };
        let chunk: Vec<Vec<OwnedDatum>> = rows[*sent..*sent + take].to_vec();
        *sent += take;
        let done = *sent >= rows.len();
        let tag = tag.clone();
        self.send_rows(&columns, &chunk, &formats);
        if done {
            self.send(B::CommandComplete(CommandComplete::new(tag)));
        } else {
            self.send(B::PortalSuspended(PortalSuspended::new()));
        }
        Ok(())
    }
}

/// `key\0value\0...\0` pairs of a startup packet (malformed trailing bytes are ignored).
fn parse_startup_parameters(mut b: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let next = |b: &mut &[u8]| -> Option<String> {
        let end = b.iter().position(|c| *c == 0)?;
        let s = String::from_utf8_lossy(&b[..end]).into_owned();
        *b = &b[end + 1..];
        Some(s)
    };
    while let Some(k) = next(&mut b) {
        if k.is_empty() {
            break;
        }
        let Some(v) = next(&mut b) else { break };
        out.push((k, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn startup_parameters_parse_and_tolerate_garbage() {
        let p = parse_startup_parameters(b"user\0me\0database\0db\0\0");
        assert_eq!(p, vec![("user".into(), "me".into()), ("database".into(), "db".into())]);
        assert!(parse_startup_parameters(b"user\0me").len() <= 1);
        assert!(parse_startup_parameters(b"").is_empty());
        let mut out = BytesMut::new();
        out.put_u8(0);
        assert_eq!(format_at(&[1], 5), 1);
        assert_eq!(format_at(&[], 5), 0);
    }
}
