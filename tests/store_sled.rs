//! The store conformance suite on the embedded sled store.

mod conformance;

use std::sync::Arc;

#[tokio::test]
async fn sled_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = toolgate::store::SledStore::open(dir.path(), &[7u8; 32]).expect("open");
    conformance::all(Arc::new(store)).await;
}
