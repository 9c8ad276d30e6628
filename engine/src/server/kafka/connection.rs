//! One Kafka client connection: read size-prefixed frames, run each request, and write the
//! responses in request order (Kafka clients rely on that order).
//!
//! Requests run concurrently as tasks; their handles queue in order (bounded: a client
//! with too many requests in flight stops being read), and the writer awaits them one by
//! one. Produce requests are queued on their partitions in the read loop itself, before
//! the next frame is read, so a client's pipelined produces keep their order in the log.
//! A frame larger than the limit is refused before anything is allocated for it, and the
//! connection is closed (as Kafka does); so is a frame that does not decode.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::Task;

use super::handlers::{self, Decoded};
use super::KafkaContext;
use crate::limits::{CONNECTION_INFLIGHT_MAX, REPLY_WRITE_MS_MAX};
use crate::server::node::Node;

/// Who is on the other end, for group membership (client host) and logs.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: Option<SocketAddr>,
}

impl Peer {
    pub fn host(&self) -> String {
        self.addr.map_or_else(|| "/unknown".to_string(), |a| format!("/{}", a.ip()))
    }
}

enum Frame {
    Body(Bytes),
    Closed,
    /// A frame the server will not read: the connection is closed.
    Refused(String),
}

/// Reads one frame into `buf` (reused: once the previous frame's bytes are dropped, its
/// allocation is taken again instead of faulting in fresh pages for every request).
async fn read_frame<R: futures_lite::AsyncRead + Unpin>(reader: &mut R, max: usize, buf: &mut BytesMut) -> Frame {
    let mut len = [0u8; 4];
    if reader.read_exact(&mut len).await.is_err() {
        return Frame::Closed;
    }
    let len = i32::from_be_bytes(len);
    if len < 8 {
        return Frame::Refused(format!("frame of {len} bytes is shorter than a request header"));
    }
    let len = len as usize;
    if len > max {
        return Frame::Refused(format!("request of {len} bytes exceeds socket.request.max.bytes ({max})"));
    }
    buf.clear();
    match crate::server::frame::read_body(reader, buf, len).await {
        Ok(()) => Frame::Body(buf.split().freeze()),
        Err(_) => Frame::Closed,
    }
}

/// Serves a connection until the client leaves, idles too long, misbehaves, or the shard stops.
pub async fn serve_connection(node: Rc<Node>, ctx: Rc<KafkaContext>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let peer = Rc::new(Peer { addr: stream.peer_addr().ok() });
    let (mut reader, mut writer) = futures_lite::io::split(stream.buffered());
    let (queue, responses) =
        glommio::channels::local_channel::new_bounded::<Task<Option<Vec<u8>>>>(CONNECTION_INFLIGHT_MAX);
    let write_deadline = Duration::from_millis(ctx.config.idle_ms.min(REPLY_WRITE_MS_MAX));
    let writer_task = glommio::spawn_local(async move {
        let mut healthy = true;
        while let Some(task) = responses.recv().await {
            // Every task is awaited, even after the client went away: dropping a task
            // handle would cancel it half way (an append queued, its answer lost).
            let Some(frame) = task.await else { continue };
            if !healthy {
                continue;
            }
            let written = glommio::timer::timeout(write_deadline, async {
                writer.write_all(&frame).await.map_err(glommio::GlommioError::IoError)
            })
            .await;
            healthy = written.is_ok();
        }
        if healthy {
            let _ = writer.flush().await;
            let _ = writer.close().await;
        }
    });
    let mut buf = BytesMut::new();
    loop {
        let idle = async {
            glommio::timer::sleep(Duration::from_millis(ctx.config.idle_ms)).await;
            Frame::Closed
        };
        let stopped = async {
            node.stopped().await;
            Frame::Closed
        };
        let next = futures_lite::future::or(
            read_frame(&mut reader, ctx.config.request_bytes_max, &mut buf),
            futures_lite::future::or(idle, stopped),
        );
        let body = match next.await {
            Frame::Body(b) => b,
            Frame::Closed => break,
            Frame::Refused(why) => {
                tracing::info!(peer = ?peer.addr, %why, "closing Kafka connection");
                break;
            }
        };
        let task = match handlers::decode(body) {
            Err(why) => {
                tracing::info!(peer = ?peer.addr, %why, "closing Kafka connection: undecodable request");
                break;
            }
            Ok(Decoded::Immediate(frame)) => glommio::spawn_local(async move { Some(frame) }),
            Ok(Decoded::Request(req)) => {
                // The ordered part (queueing appends) runs here; the rest as a task.
                let prepared = handlers::prepare(&node, &ctx, &peer, req).await;
                let (node, ctx, peer) = (node.clone(), ctx.clone(), peer.clone());
                glommio::spawn_local(async move { handlers::finish(&node, &ctx, &peer, prepared).await })
            }
        };
        if queue.send(task).await.is_err() {
            break;
        }
    }
    drop(queue);
    writer_task.await;
}
