//! One client connection: read frames, run each request as its own task (pipelining),
//! write replies as they complete. A frame larger than the limit is refused before
//! anything is allocated for it, with an error reply, and the connection is closed.

use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rkyv::util::AlignedVec;

use super::handler::{error_reply, handle_frame};
use super::protocol::{ApiError, ErrorCode, REQUEST_HEADER_BYTES};
use crate::limits::{CONNECTION_INFLIGHT_MAX, REPLY_WRITE_MS_MAX};
use crate::server::node::Node;

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub frame_bytes_max: usize,
    pub idle_ms: u64,
}

enum ReadOutcome {
    Frame(AlignedVec),
    Closed,
    Refused(Vec<u8>),
}

async fn read_frame<R: futures_lite::AsyncRead + Unpin>(reader: &mut R, limits: ConnectionLimits) -> ReadOutcome {
    let mut len = [0u8; 4];
    if reader.read_exact(&mut len).await.is_err() {
        return ReadOutcome::Closed;
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > limits.frame_bytes_max {
        let err = ApiError::new(
            ErrorCode::FrameTooLarge,
            format!("frame of {len} bytes exceeds the limit of {} bytes", limits.frame_bytes_max),
        );
        return ReadOutcome::Refused(error_reply(0, &err));
    }
    if len < REQUEST_HEADER_BYTES {
        let err = ApiError::new(ErrorCode::MalformedRequest, format!("frame of {len} bytes is shorter than a header"));
        return ReadOutcome::Refused(error_reply(0, &err));
    }
    let mut body = AlignedVec::new();
    match crate::server::frame::read_body(reader, &mut body, len).await {
        Ok(()) => ReadOutcome::Frame(body),
        Err(_) => ReadOutcome::Closed,
    }
}

/// Serves a connection until the client leaves, idles too long, misbehaves, or the shard stops.
pub async fn serve_connection(node: Rc<Node>, stream: TcpStream, limits: ConnectionLimits) {
    let _ = stream.set_nodelay(true);
    // Buffered: one receive usually brings a frame's length and body (and the next frames).
    let (mut reader, mut writer) = futures_lite::io::split(stream.buffered());
    let (replies, pending) = glommio::channels::local_channel::new_bounded::<Vec<u8>>(CONNECTION_INFLIGHT_MAX);
    let write_deadline = Duration::from_millis(limits.idle_ms.min(REPLY_WRITE_MS_MAX));
    let writer_task = glommio::spawn_local(async move {
        while let Some(frame) = pending.recv().await {
            // A client that stops reading must not hold its replies (and shutdown) forever.
            let written = glommio::timer::timeout(write_deadline, async {
                writer.write_all(&frame).await.map_err(glommio::GlommioError::IoError)
            })
            .await;
            if written.is_err() {
                // The client went away: keep draining so request tasks never block.
                while pending.recv().await.is_some() {}
                return;
            }
        }
        let _ = writer.flush().await;
        let _ = writer.close().await;
    });
    let replies = Rc::new(replies);
    let inflight = Rc::new(glommio::sync::Semaphore::new(CONNECTION_INFLIGHT_MAX as u64));
    loop {
        let idle = async {
            glommio::timer::sleep(Duration::from_millis(limits.idle_ms)).await;
            ReadOutcome::Closed
        };
        let stopped = async {
            node.stopped().await;
            ReadOutcome::Closed
        };
        let next = futures_lite::future::or(read_frame(&mut reader, limits), futures_lite::future::or(idle, stopped));
        match next.await {
            ReadOutcome::Closed => break,
            ReadOutcome::Refused(reply) => {
                let _ = replies.send(reply).await;
                break;
            }
            ReadOutcome::Frame(body) => {
                let Ok(permit) = inflight.clone().acquire_static_permit(1).await else { break };
                let (node, replies) = (node.clone(), replies.clone());
                glommio::spawn_local(async move {
                    let reply = handle_frame(&node, body).await;
                    let _ = replies.send(reply).await;
                    drop(permit);
                })
                .detach();
            }
        }
    }
    // Finish what is in flight before closing: every request read gets its reply.
    let _ = inflight.acquire(CONNECTION_INFLIGHT_MAX as u64).await;
    drop(replies);
    writer_task.await;
}
