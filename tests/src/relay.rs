//! A real relay on loopback for end-to-end tests, in its own temporary data directory.

use std::sync::Arc;

use rapport_relay::data::DataDir;
use rapport_relay::server::{Config, Relay};

/// A relay running on a tokio task.
pub struct Running {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Its certificate's fingerprint.
    pub fingerprint: [u8; 32],
    /// Makes a fresh one-time setup code for a practice.
    pub setup_code: Box<dyn Fn() -> String + Send + Sync>,
    /// The relay's data directory (its SQLite file and identity).
    pub dir: tempfile::TempDir,
    /// Send to stop it.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// The task serving; ends after a stop.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts a relay on 127.0.0.1 at a free port. Panics (it is for tests) if it cannot.
pub async fn relay() -> Running {
    relay_with(Config::default()).await
}

/// [`relay`] with its own limits (its `listen` is replaced by a free loopback port).
#[allow(clippy::unwrap_used)]
pub async fn relay_with(config: Config) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::init(dir.path(), "127.0.0.1:1").unwrap();
    let store = data.store().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let relay = Relay::bind(store.clone(), &data.identity, config).unwrap();
    let addr = relay.local_addr().unwrap();
    data.set_public_addr(&addr.to_string()).unwrap();
    let fingerprint = data.identity.fingerprint();
    let data = Arc::new(data);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));
    let codes = data.clone();
    Running {
        addr,
        fingerprint,
        setup_code: Box::new(move || codes.new_setup_code(&store).unwrap().encode()),
        dir,
        stop,
        task,
    }
}
