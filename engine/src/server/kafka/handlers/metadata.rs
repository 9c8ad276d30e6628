//! Metadata: the one broker (the address actually bound) and the topics' partitions.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{code, str_bytes, topic_name};
use crate::log::TopicConfig;
use crate::server::kafka::{KafkaContext, CLUSTER_ID, NODE_ID};
use crate::server::node::Node;

pub async fn handle(node: &Node, ctx: &KafkaContext, version: i16, req: MetadataRequest) -> MetadataResponse {
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(str_bytes(&ctx.advertised.ip().to_string()))
        .with_port(ctx.advertised.port() as i32);
    let mut response = MetadataResponse::default().with_brokers(vec![broker]);
    if version >= 2 {
        response.cluster_id = Some(str_bytes(CLUSTER_ID));
    }
    if version >= 1 {
        response.controller_id = BrokerId(NODE_ID);
    }
    // v0: an empty list means every topic; v1 and later: null means every topic.
    let requested: Option<Vec<String>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t.into_iter().filter_map(|t| t.name.map(|n| n.to_string())).collect()),
    };
    let auto_create = ctx.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let topics = match requested {
        None => node.log.topics().iter().map(|t| describe(t)).collect(),
        Some(names) => {
            // Each topic once, as a broker answers: a name repeated 10,000 times must not
            // describe a 4,096-partition topic 10,000 times.
            let mut seen = std::collections::HashSet::with_capacity(names.len());
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let config = match node.log.topic(&name) {
                    Some(c) => Some(c),
                    None if auto_create => auto_created(node, ctx, &name).await,
                    None => None,
                };
                out.push(match config {
                    Some(c) => describe(&c),
                    None => MetadataResponseTopic::default().with_name(Some(topic_name(&name))).with_error_code(
                        if crate::log::validate_topic_name(&name).is_ok() {
                            code::UNKNOWN_TOPIC_OR_PARTITION
                        } else {
                            code::INVALID_TOPIC_EXCEPTION
                        },
                    ),
                });
            }
            out
        }
    };
    response.topics = topics;
    response
}

async fn auto_created(node: &Node, ctx: &KafkaContext, name: &str) -> Option<std::rc::Rc<TopicConfig>> {
    crate::log::validate_topic_name(name).ok()?;
    let config = TopicConfig::new(name, ctx.config.default_partitions);
    match node.create_topic(config).await {
        Ok(_) => {}
        Err(e) if e.code == crate::server::native::protocol::ErrorCode::TopicExists => {}
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "auto-creating a topic failed");
            return None;
        }
    }
    node.log.topic(name)
}

fn describe(t: &TopicConfig) -> MetadataResponseTopic {
    let partitions = (0..t.partitions as i32)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(BrokerId(NODE_ID))
                .with_leader_epoch(0)
                .with_replica_nodes(vec![BrokerId(NODE_ID)])
                .with_isr_nodes(vec![BrokerId(NODE_ID)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_is_internal(crate::log::is_internal_topic(&t.name))
        .with_partitions(partitions)
}
