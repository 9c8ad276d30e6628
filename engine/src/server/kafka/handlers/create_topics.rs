//! CreateTopics: partitions, replication factor 1 (one broker), and topic settings by
//! name (`retention.ms`, `sluice.durability`, `sluice.schema`, ...).

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{code, code_of, str_bytes};
use crate::log::TopicConfig;
use crate::server::node::Node;

pub async fn handle(node: &Node, version: i16, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.to_string();
        let mut r = CreatableTopicResult::default().with_name(t.name.clone());
        if version < 5 {
            r.configs = None;
        } else {
            r.num_partitions = -1;
            r.replication_factor = -1;
        }
        let outcome: Result<(), (i16, String)> = async {
            if t.replication_factor > 1 {
                return Err((
                    code::INVALID_REPLICATION_FACTOR,
                    format!("replication factor {} is impossible on one broker: use 1 or -1", t.replication_factor),
                ));
            }
            if !t.assignments.is_empty() {
                return Err((code::INVALID_REPLICA_ASSIGNMENT, "manual replica assignment is not supported".into()));
            }
            let partitions = if t.num_partitions == -1 { 1 } else { t.num_partitions };
            if partitions <= 0 {
                return Err((code::INVALID_PARTITIONS, format!("partition count {partitions} must be positive")));
            }
            let mut config = TopicConfig::new(&name, partitions as u32);
            let settings: Vec<(String, String)> = t
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()).unwrap_or_default()))
                .collect();
            config
                .apply_settings(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| (code::INVALID_CONFIG, e))?;
            config.validate().map_err(|e| (code::INVALID_CONFIG, e))?;
            if node.log.topic(&name).is_some() {
                return Err((code::TOPIC_ALREADY_EXISTS, format!("topic '{name}' already exists")));
            }
            if req.validate_only {
                return Ok(());
            }
            node.create_topic(config).await.map(|_| ()).map_err(|e| (code_of(&e), e.message))
        }
        .await;
        if let Err((error, message)) = outcome {
            r.error_code = error;
            if version >= 1 {
                r.error_message = Some(str_bytes(&message));
            }
        } else if version >= 5 {
            if let Some(c) = node.log.topic(&name) {
                r.num_partitions = c.partitions as i32;
                r.replication_factor = 1;
            }
        }
        topics.push(r);
    }
    CreateTopicsResponse::default().with_topics(topics)
}
