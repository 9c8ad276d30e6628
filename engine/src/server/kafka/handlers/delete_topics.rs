//! DeleteTopics, by name (topic ids are not assigned).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::{code, code_of, str_bytes};
use crate::server::node::Node;

pub async fn handle(node: &Node, version: i16, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let names: Vec<Option<TopicName>> = if version >= 6 {
        req.topics.into_iter().map(|t| t.name).collect()
    } else {
        req.topic_names.into_iter().map(Some).collect()
    };
    let mut responses = Vec::with_capacity(names.len());
    for name in names {
        let mut r = DeletableTopicResult::default().with_name(name.clone());
        let result = match &name {
            None => Err((code::UNKNOWN_TOPIC_OR_PARTITION, "topic ids are not supported: name the topic".to_string())),
            Some(n) if crate::log::is_internal_topic(n.as_str()) => {
                Err((code::INVALID_REQUEST, format!("'{}' is an internal topic", n.as_str())))
            }
            Some(n) => node.delete_topic(n.as_str()).await.map_err(|e| (code_of(&e), e.message)),
        };
        if let Err((error, message)) = result {
            r.error_code = error;
            if version >= 5 {
                r.error_message = Some(str_bytes(&message));
            }
        }
        responses.push(r);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
