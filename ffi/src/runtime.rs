//! The tokio runtime the bindings own: async calls and background sync run here, so an app
//! may call them from any thread (its main thread, a coroutine, a Swift task) without a
//! reactor of its own.

use std::future::Future;
use std::sync::OnceLock;

use crate::error::{RapportError, Result};

static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();

/// The shared runtime, started on first use.
pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("rapport-ffi")
                .enable_all()
                .build()
        })
        .as_ref()
        .map_err(|e| RapportError::Storage(format!("cannot start Rapport's worker threads: {e}")))
}

/// Runs `task` on the runtime and waits for it from whatever executor polls the result
/// (Kotlin coroutines, Swift concurrency, Python asyncio).
pub(crate) async fn run<T, F>(task: F) -> Result<T>
where
    F: Future<Output = rapport_core::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let handle = runtime()?.spawn(task);
    match handle.await {
        Ok(result) => result.map_err(RapportError::from),
        Err(e) => Err(RapportError::Sync(format!(
            "the operation was interrupted: {e}"
        ))),
    }
}
