//! Waiting that ends early when the service stops.

use std::time::Duration;
use tokio::sync::watch;

/// Sleep for `d`; true when stopped meanwhile.
pub(crate) async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}
