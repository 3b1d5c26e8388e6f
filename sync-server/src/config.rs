//! The optional TOML configuration file of `rapport-relay serve`; flags override it.
//!
//! ```toml
//! listen = "0.0.0.0:4433"
//! max_connections = 4096
//! rate_per_sec = 200
//! burst = 400
//! max_streams = 32
//! idle_timeout_secs = 60
//! space_max_entries = 2000000     # per space, in its log at once
//! space_max_bytes = 4294967296    # per space: its entries' blobs and its snapshot
//! log_format = "human"   # or "json"
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::server::Config;

/// The file's fields; all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where to listen.
    pub listen: Option<SocketAddr>,
    /// Connection limit.
    pub max_connections: Option<usize>,
    /// Requests per second per device.
    pub rate_per_sec: Option<f64>,
    /// Burst size.
    pub burst: Option<f64>,
    /// Streams per connection.
    pub max_streams: Option<u32>,
    /// Idle timeout.
    pub idle_timeout_secs: Option<u64>,
    /// Entries one space's log may hold at once.
    pub space_max_entries: Option<u64>,
    /// Bytes one space may store (entries and snapshot).
    pub space_max_bytes: Option<u64>,
    /// `human` or `json`.
    pub log_format: Option<String>,
}

impl FileConfig {
    /// Reads a config file; errors name the file and the problem.
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| format!("{} is not a valid relay config: {e}", path.display()))
    }

    /// Applies the file over the defaults.
    pub fn apply(&self, mut config: Config) -> Config {
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(n) = self.max_connections {
            config.max_connections = n;
        }
        if let Some(r) = self.rate_per_sec {
            config.rate_per_sec = r;
        }
        if let Some(b) = self.burst {
            config.burst = b;
        }
        if let Some(s) = self.max_streams {
            config.limits.max_streams = s;
        }
        if let Some(t) = self.idle_timeout_secs {
            config.limits.idle_timeout = Duration::from_secs(t);
        }
        if let Some(n) = self.space_max_entries {
            config.quota.max_entries = n;
        }
        if let Some(n) = self.space_max_bytes {
            config.quota.max_bytes = n;
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_overrides_defaults_and_rejects_typos() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nrate_per_sec = 5\nspace_max_entries = 10\nspace_max_bytes = 4096\n",
        )
        .unwrap();
        let config = FileConfig::load(&path).unwrap().apply(Config::default());
        assert_eq!(config.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.rate_per_sec, 5.0);
        assert_eq!(
            (config.quota.max_entries, config.quota.max_bytes),
            (10, 4096)
        );
        std::fs::write(&path, "listn = \"x\"\n").unwrap();
        let err = FileConfig::load(&path).unwrap_err();
        assert!(err.contains("not a valid relay config"), "{err}");
    }
}
