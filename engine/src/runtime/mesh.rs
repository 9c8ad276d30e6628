//! Bounded queues between every pair of shards (glommio's channel mesh). A full queue
//! suspends the sender: backpressure crosses shards with the messages.

use std::rc::Rc;

use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use glommio::channels::shared_channel::ConnectedReceiver;

/// The builder handed to every shard before it starts; each shard joins it once.
pub struct MeshSetup<M: Send + 'static> {
    builder: MeshBuilder<M, Full>,
}

impl<M: Send + 'static> Clone for MeshSetup<M> {
    fn clone(&self) -> Self {
        MeshSetup { builder: self.builder.clone() }
    }
}

impl<M: Send + 'static> MeshSetup<M> {
    pub fn new(shards: usize, depth: usize) -> Self {
        MeshSetup { builder: MeshBuilder::full(shards, depth) }
    }

    /// Joins the mesh from the current shard. Returns the sending side and one receiver
    /// per peer shard.
    pub async fn join(self) -> Result<(ShardSender<M>, Vec<(usize, ConnectedReceiver<M>)>), String> {
        let (senders, mut receivers) =
            self.builder.join().await.map_err(|_| "joining the shard mesh failed".to_string())?;
        let streams = receivers.streams();
        Ok((ShardSender { senders: Rc::new(senders) }, streams))
    }
}

/// Sends to other shards. Cheap to clone within a shard.
pub struct ShardSender<M: Send> {
    senders: Rc<Senders<M>>,
}

impl<M: Send> Clone for ShardSender<M> {
    fn clone(&self) -> Self {
        ShardSender { senders: self.senders.clone() }
    }
}

impl<M: Send> ShardSender<M> {
    /// Sends to shard `to` (never this shard), waiting while its queue is full. Fails
    /// if that shard has gone; the message is dropped (so its reply channel closes).
    pub async fn send_to(&self, to: usize, msg: M) -> Result<(), ()> {
        self.senders.send_to(to, msg).await.map_err(|_| ())
    }

    pub fn shard(&self) -> usize {
        self.senders.peer_id()
    }
}
