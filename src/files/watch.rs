//! Live reload: `tools/` and `prompts/` are watched, and a change (a file written, added, renamed
//! or removed) is applied within a second, without a restart. A broken file is refused with a log
//! line naming file and field; what it defined before stays live.

use std::path::PathBuf;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::task::JoinHandle;

use crate::AppState;

/// Quiet time after the last file event before a reload: an editor's save is a burst of events
/// (write, rename, metadata), and one reload should see the finished file.
const SETTLE: Duration = Duration::from_millis(150);

/// Apply the config directories now (the definitions service refreshes the catalog); log refused
/// files.
pub async fn reload(state: &AppState) {
    let c = &state.config;
    let synced = super::sync::sync(
        &state.definitions(),
        &[c.tools_dir.as_path(), c.prompts_dir.as_path()],
    )
    .await;
    for e in &synced.errors {
        tracing::error!(error = %e, "config file refused; its previous definitions stay live");
    }
    if synced.changed {
        tracing::info!("config files reloaded");
    }
}

/// Watch the tools and prompts directories that exist until shutdown. `None` when there is
/// nothing to watch (or the platform offers no watcher: then files apply at start only).
pub fn start(state: AppState) -> Option<JoinHandle<()>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, EventKind::Access(_))
        {
            let _ = tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch config directories; changes apply at the next start");
            return None;
        }
    };
    let mut dirs: Vec<PathBuf> = vec![state.config.tools_dir.clone()];
    if state.config.prompts_dir != state.config.tools_dir {
        dirs.push(state.config.prompts_dir.clone());
    }
    let mut watching = 0;
    for d in dirs.iter().filter(|d| d.is_dir()) {
        match watcher.watch(d, RecursiveMode::NonRecursive) {
            Ok(()) => watching += 1,
            Err(e) => tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory"),
        }
    }
    if watching == 0 {
        return None;
    }
    let cancel = state.shutdown.clone();
    Some(tokio::spawn(async move {
        let _watcher = watcher; // dropping it stops the events
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                ev = rx.recv() => if ev.is_none() { break },
            }
            while let Ok(Some(())) = tokio::time::timeout(SETTLE, rx.recv()).await {}
            reload(&state).await;
        }
    }))
}
