//! FindCoordinator: every group's coordinator is this broker (the shard behind it is
//! found by the node on each group request).

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{code, str_bytes};
use crate::server::kafka::{KafkaContext, NODE_ID};

/// Key type of a transactional coordinator (Sluice has none).
const KEY_TYPE_TRANSACTION: i8 = 1;

pub fn handle(ctx: &KafkaContext, version: i16, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let host = str_bytes(&ctx.advertised.ip().to_string());
    let port = ctx.advertised.port() as i32;
    let refused = req.key_type == KEY_TYPE_TRANSACTION;
    let (error, message) = if refused {
        (code::COORDINATOR_NOT_AVAILABLE, Some(str_bytes("transactions are not supported")))
    } else {
        (code::NONE, None)
    };
    if version < 4 {
        let mut r = FindCoordinatorResponse::default().with_error_code(error);
        if version >= 1 {
            r.error_message = message;
        }
        if !refused {
            r = r.with_node_id(BrokerId(NODE_ID)).with_host(host).with_port(port);
        } else {
            r = r.with_node_id(BrokerId(-1)).with_host(str_bytes("")).with_port(-1);
        }
        return r;
    }
    let coordinators = req
        .coordinator_keys
        .into_iter()
        .map(|key| {
            let c = Coordinator::default().with_key(key).with_error_code(error).with_error_message(message.clone());
            if refused {
                c.with_node_id(BrokerId(-1)).with_host(str_bytes("")).with_port(-1)
            } else {
                c.with_node_id(BrokerId(NODE_ID)).with_host(host.clone()).with_port(port)
            }
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}
