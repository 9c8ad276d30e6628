//! DescribeConfigs: a topic's settings (and a few broker ones), by Kafka's names.

use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{code, str_bytes};
use crate::server::node::Node;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Config sources (DescribeConfigs v1+): dynamic topic config, and the default.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;
/// Config types (v3+).
const TYPE_STRING: i8 = 2;
const TYPE_LONG: i8 = 5;

pub async fn handle(node: &Node, version: i16, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let mut results = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let mut r = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone())
            .with_error_message(None);
        let wanted =
            |name: &str| res.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|k| k.as_str() == name));
        let entries: Vec<(String, String, bool)> = match res.resource_type {
            RESOURCE_TOPIC => match node.log.topic(res.resource_name.as_str()) {
                Some(t) => t.settings().into_iter().map(|(k, v, d)| (k.to_string(), v, d)).collect(),
                None => {
                    r.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                    r.error_message =
                        Some(str_bytes(&format!("topic '{}' does not exist", res.resource_name.as_str())));
                    results.push(r);
                    continue;
                }
            },
            RESOURCE_BROKER => vec![
                ("auto.create.topics.enable".into(), "false".into(), true),
                ("num.partitions".into(), "1".into(), true),
                ("default.replication.factor".into(), "1".into(), true),
            ],
            other => {
                r.error_code = code::INVALID_REQUEST;
                r.error_message = Some(str_bytes(&format!("resource type {other} is not supported")));
                results.push(r);
                continue;
            }
        };
        r.configs = entries
            .into_iter()
            .filter(|(k, _, _)| wanted(k))
            .map(|(name, value, is_default)| {
                let numeric = value.parse::<i64>().is_ok();
                let mut c = DescribeConfigsResourceResult::default()
                    .with_name(str_bytes(&name))
                    .with_value(Some(str_bytes(&value)))
                    .with_read_only(true);
                if version >= 1 {
                    c.config_source = if is_default { SOURCE_DEFAULT } else { SOURCE_TOPIC };
                }
                if version >= 3 {
                    c.config_type = if numeric { TYPE_LONG } else { TYPE_STRING };
                }
                c
            })
            .collect();
        results.push(r);
    }
    DescribeConfigsResponse::default().with_results(results)
}
