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
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("bad config {}: {e}", path.display()))
    }
}
