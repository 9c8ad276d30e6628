//! The server's configuration file (TOML). Flags override it; it overrides the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub data_dir: Option<PathBuf>,
    pub native_addr: Option<SocketAddr>,
    pub shards: Option<usize>,
    pub pin: Option<bool>,
    pub frame_bytes_max: Option<usize>,
    pub connections_max: Option<usize>,
    pub idle_ms: Option<u64>,
    pub kafka_addr: Option<SocketAddr>,
    /// `false` turns the Kafka listener off.
    pub kafka_enabled: Option<bool>,
    #[serde(default)]
    pub kafka: KafkaSection,
    pub http_addr: Option<SocketAddr>,
    /// `false` turns the HTTP listener off.
    pub http_enabled: Option<bool>,
    pub http_body_bytes_max: Option<usize>,
    pub checkpoint_interval_ms: Option<u64>,
    pub pg_addr: Option<SocketAddr>,
    /// `false` turns the Postgres listener off.
    pub pg_enabled: Option<bool>,
}

/// `[kafka]`: the Kafka listener's limits and group settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    pub request_bytes_max: Option<usize>,
    pub decompressed_bytes_max: Option<usize>,
    pub auto_create_topics: Option<bool>,
    pub default_partitions: Option<u32>,
    pub group_initial_rebalance_delay_ms: Option<u64>,
    pub group_session_timeout_min_ms: Option<i32>,
    pub group_session_timeout_max_ms: Option<i32>,
    pub idle_ms: Option<u64>,
    pub advertised_addr: Option<SocketAddr>,
}

impl KafkaSection {
    pub fn apply(&self, k: &mut sluice::server::kafka::KafkaConfig) -> Result<(), String> {
        use sluice::limits::{CONFIG_BYTES_LIMIT_MAX, CONFIG_BYTES_LIMIT_MIN};
        let bytes_limit = |name: &str, v: usize| {
            if (CONFIG_BYTES_LIMIT_MIN..=CONFIG_BYTES_LIMIT_MAX).contains(&v) {
                Ok(v)
            } else {
                Err(format!(
                    "kafka.{name} must be between {CONFIG_BYTES_LIMIT_MIN} and {CONFIG_BYTES_LIMIT_MAX}, not {v}"
                ))
            }
        };
        if let Some(v) = self.request_bytes_max {
            k.request_bytes_max = bytes_limit("request_bytes_max", v)?;
        }
        if let Some(v) = self.decompressed_bytes_max {
            k.decompressed_bytes_max = bytes_limit("decompressed_bytes_max", v)?;
        }
        if let Some(v) = self.auto_create_topics {
            k.auto_create_topics = v;
        }
        if let Some(v) = self.default_partitions {
            if v == 0 || v > sluice::limits::PARTITIONS_MAX {
                return Err(format!(
                    "kafka.default_partitions must be between 1 and {}",
                    sluice::limits::PARTITIONS_MAX
                ));
            }
            k.default_partitions = v;
        }
        if let Some(v) = self.group_initial_rebalance_delay_ms {
            k.group_initial_rebalance_delay_ms = v;
        }
        if let Some(v) = self.group_session_timeout_min_ms {
            k.group_session_timeout_min_ms = v;
        }
        if let Some(v) = self.group_session_timeout_max_ms {
            k.group_session_timeout_max_ms = v;
        }
        if k.group_session_timeout_min_ms <= 0 || k.group_session_timeout_min_ms > k.group_session_timeout_max_ms {
            return Err("kafka.group_session_timeout_min_ms must be positive and at most the maximum".into());
        }
        if let Some(v) = self.idle_ms {
            k.idle_ms = v;
        }
        if let Some(a) = self.advertised_addr {
            k.advertised_addr = Some(a);
        }
        Ok(())
    }
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("bad config {}: {e}", path.display()))
    }
}
