//! HTTP: produce and fetch as NDJSON, topic admin, `/health` and `/metrics` (Prometheus).
//!
//! hyper (HTTP/1.1) over glommio: each connection is served on the shard that accepted
//! it; handlers reach partitions through the node like every other protocol. Request
//! bodies are capped before they are read whole; every read and write has a deadline.
//!
//! Routes: `GET /health`, `GET /metrics`, `GET|POST /topics`, `GET|DELETE /topics/{t}`,
//! `PUT /topics/{t}/schema`, `POST|GET /topics/{t}/records`.

mod health;
mod io;
pub mod metrics;
pub mod records;
mod sql;
mod topics;

use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::net::TcpStream;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::limits::{CONNECTION_IDLE_MS_DEFAULT, HTTP_BODY_BYTES_MAX_DEFAULT, REPLY_WRITE_MS_MAX};
use crate::server::native::protocol::{ApiError, ErrorCode};
use crate::server::node::Node;

/// The HTTP listener's settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted.
    pub body_bytes_max: usize,
    /// A connection idle (or stalled mid-request) this long is closed.
    pub idle_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { body_bytes_max: HTTP_BODY_BYTES_MAX_DEFAULT, idle_ms: CONNECTION_IDLE_MS_DEFAULT }
    }
}

pub type HttpResponse = Response<Full<Bytes>>;

/// A response with a body and content type.
pub fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> HttpResponse {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    respond(status, "application/json", serde_json::to_vec(value).unwrap_or_default())
}

/// An error as JSON: `{"error": message, ...extra}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// The status for an error from the node.
pub fn api_error(e: &ApiError) -> HttpResponse {
    let status = match e.code {
        ErrorCode::UnknownTopic | ErrorCode::UnknownPartition => StatusCode::NOT_FOUND,
        ErrorCode::TopicExists => StatusCode::CONFLICT,
        ErrorCode::InvalidConfig
        | ErrorCode::InvalidBatch
        | ErrorCode::InvalidRecord
        | ErrorCode::MalformedRequest
        | ErrorCode::OffsetOutOfRange
        | ErrorCode::OutOfOrderSequence
        | ErrorCode::ProducerFenced
        | ErrorCode::UnsupportedVersion => StatusCode::BAD_REQUEST,
        ErrorCode::FrameTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ReadOnly | ErrorCode::Corrupt | ErrorCode::Io | ErrorCode::None | ErrorCode::Internal => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error(status, e.message.clone())
}

/// The query string as (name, value) pairs, percent-decoded.
pub fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or(())
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a request body, refusing one larger than the limit before reading it whole.
pub async fn body(req: Request<Incoming>, max: usize) -> Result<Bytes, HttpResponse> {
    if let Some(len) =
        req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
    {
        if len > max {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body of {len} bytes exceeds the limit of {max} bytes"),
            ));
        }
    }
    match Limited::new(req.into_body(), max).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(error(StatusCode::PAYLOAD_TOO_LARGE, format!("cannot read the body: {e}"))),
    }
}

async fn route(node: Rc<Node>, config: Rc<HttpConfig>, req: Request<Incoming>) -> HttpResponse {
    let path: Vec<String> = req.uri().path().split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["health"]) => health::handle(&node),
        (&Method::GET, ["metrics"]) => metrics::handle(&node).await,
        (&Method::GET, ["topics"]) => topics::list(&node),
        (&Method::POST, ["topics"]) => topics::create(&node, req, &config).await,
        (&Method::GET, ["topics", name]) => topics::describe(&node, name).await,
        (&Method::DELETE, ["topics", name]) => topics::delete(&node, name).await,
        (&Method::PUT, ["topics", name, "schema"]) => {
            let name = name.to_string();
            topics::evolve_schema(&node, &name, req, &config).await
        }
        (&Method::POST, ["topics", name, "records"]) => {
            let name = name.to_string();
            records::produce(&node, &name, req, &config).await
        }
        (&Method::GET, ["topics", name, "records"]) => {
            let name = name.to_string();
            records::fetch(&node, &name, &req).await
        }
        (&Method::POST, ["sql"]) => sql::post(&node, req, &config).await,
        (&Method::GET, ["views", name]) => {
            let name = name.to_string();
            sql::read_view(&node, &name, &req).await
        }
        (&Method::GET, ["views", name, "rebuild"]) => {
            let name = name.to_string();
            sql::rebuild_progress(&node, &name).await
        }
        (
            _,
            ["health"]
            | ["metrics"]
            | ["topics"]
            | ["topics", _]
            | ["topics", _, "records"]
            | ["sql"]
            | ["views", _]
            | ["views", _, "rebuild"],
        ) => error(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", req.uri().path())),
        _ => error(StatusCode::NOT_FOUND, format!("no such resource: {}", req.uri().path())),
    }
}

/// Serves one HTTP/1.1 connection (keep-alive) until the client leaves or the shard stops.
pub async fn serve_connection(node: Rc<Node>, config: Rc<HttpConfig>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let deadline = Duration::from_millis(config.idle_ms.clamp(1, REPLY_WRITE_MS_MAX));
    let io = io::HyperIo::new(stream, deadline);
    let service = {
        let node = node.clone();
        hyper::service::service_fn(move |req| {
            let (node, config) = (node.clone(), config.clone());
            async move { Ok::<_, Infallible>(route(node, config, req).await) }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.header_read_timeout(None).keep_alive(true);
    let conn = builder.serve_connection(io, service);
    futures::pin_mut!(conn);
    let stopped = async {
        node.stopped().await;
    };
    futures::pin_mut!(stopped);
    match futures::future::select(conn.as_mut(), stopped).await {
        futures::future::Either::Left(_) => {}
        futures::future::Either::Right(_) => {
            // Finish the request in flight, then close.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
