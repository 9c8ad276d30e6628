//! InitProducerId: a producer id for an idempotent producer (transactions are refused).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::code;
use crate::server::node::Node;

pub fn handle(node: &Node, req: InitProducerIdRequest) -> InitProducerIdResponse {
    if req.transactional_id.is_some() {
        return InitProducerIdResponse::default()
            .with_error_code(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    // A producer that asks again with its id (KIP-360) gets the next epoch of the same id;
    // the epoch bump resets its sequences.
    let (id, epoch) = if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX {
        (req.producer_id.0, req.producer_epoch + 1)
    } else {
        (node.allocate_producer_id(), 0)
    };
    InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(epoch)
}
