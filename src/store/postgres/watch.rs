//! The change feed: LISTEN for other nodes' notifications, and check the catalog version every
//! second as the fallback for notifications missed while the listening connection was down.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::CHANNEL;
use crate::store::StoreChange;

/// How often the version is compared, whatever the notifications say.
const VERSION_CHECK: Duration = Duration::from_secs(1);

/// Run the feed until `stop` is cancelled.
pub(super) fn start(
    pool: PgPool,
    node: String,
    out: broadcast::Sender<StoreChange>,
    version: Arc<AtomicI64>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(VERSION_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut listener: Option<PgListener> = None;
        loop {
            if listener.is_none() {
                listener = connect(&pool).await;
                // Whatever happened while we were not listening shows in the version.
                check_version(&pool, &out, &version).await;
            }
            let Some(l) = listener.as_mut() else {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => continue,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                n = l.try_recv() => match n {
                    Ok(Some(n)) => {
                        if let Some(change) = parse(n.payload(), &node) {
                            let _ = out.send(change);
                        }
                    }
                    // The connection was lost: listen again, then compare versions.
                    Ok(None) | Err(_) => listener = None,
                },
                _ = tick.tick() => check_version(&pool, &out, &version).await,
            }
        }
    });
}

async fn connect(pool: &PgPool) -> Option<PgListener> {
    let mut l = PgListener::connect_with(pool).await.ok()?;
    l.listen(CHANNEL).await.ok()?;
    Some(l)
}

/// `node:kind` from another node, as a change.
fn parse(payload: &str, own: &str) -> Option<StoreChange> {
    let (node, kind) = payload.split_once(':')?;
    if node == own {
        return None;
    }
    match kind {
        "definitions" => Some(StoreChange::Definitions),
        "secrets" => Some(StoreChange::Secrets),
        _ => None,
    }
}

async fn check_version(pool: &PgPool, out: &broadcast::Sender<StoreChange>, seen: &AtomicI64) {
    let Ok(now) = sqlx::query_scalar::<_, i64>("SELECT version FROM catalog_version")
        .fetch_one(pool)
        .await
    else {
        return;
    };
    if seen.swap(now, Ordering::AcqRel) != now {
        let _ = out.send(StoreChange::Definitions);
        let _ = out.send(StoreChange::Secrets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_and_unknown_notifications_are_ignored() {
        assert_eq!(
            parse("node_a:definitions", "node_b"),
            Some(StoreChange::Definitions)
        );
        assert_eq!(
            parse("node_a:secrets", "node_b"),
            Some(StoreChange::Secrets)
        );
        assert_eq!(parse("node_b:definitions", "node_b"), None);
        assert_eq!(parse("node_a:other", "node_b"), None);
        assert_eq!(parse("garbage", "node_b"), None);
    }
}
