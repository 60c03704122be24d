//! The store conformance suite on the embedded sled store.

mod conformance;

use std::sync::Arc;

#[tokio::test]
async fn sled_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = toolgate::store::SledStore::open(dir.path(), &[7u8; 32]).expect("open");
    conformance::all(Arc::new(store)).await;
}

/// A successful invoke of tool `t` with id `id`.
fn call(id: &str) -> toolgate::model::CallRecord {
    use toolgate::model::{Outcome, Source};
    conformance::record(id, "t", Outcome::Success, Source::Invoke)
}

/// Every stored call id, newest first.
async fn listed(store: &toolgate::store::SledStore) -> Vec<String> {
    conformance::newest_ids(store, 50).await
}

/// `open()` once it succeeds. sled's background flusher can hold the directory lock for a
/// moment after the last handle is dropped (seen under a loaded full suite): wait for it rather
/// than fail on timing.
fn when_free<T, E: std::fmt::Display>(mut open: impl FnMut() -> Result<T, E>) -> T {
    let mut tries = 0;
    loop {
        match open() {
            Ok(s) => return s,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("open: {e}; retrying");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => panic!("open: {e}"),
        }
    }
}

/// Open the store in `dir` again (see `when_free`).
fn reopen(dir: &std::path::Path) -> toolgate::store::SledStore {
    when_free(|| toolgate::store::SledStore::open(dir, &[7u8; 32]))
}

fn ids(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| toolgate::model::ids::new_id("call"))
        .collect()
}

#[tokio::test]
async fn the_history_count_is_exact_across_restarts() {
    use toolgate::store::HistoryStore;
    let dir = tempfile::tempdir().unwrap();
    let first = ids(5);
    {
        let store = toolgate::store::SledStore::open(dir.path(), &[7u8; 32]).unwrap();
        let recs: Vec<_> = first.iter().map(|i| call(i)).collect();
        store.insert_calls(&recs, 0, 0).await.unwrap();
    }
    // Reopened, the count is the stored one: one more record at a cap of 5 drops exactly one.
    let store = reopen(dir.path());
    let next = ids(1);
    store.insert_calls(&[call(&next[0])], 5, 0).await.unwrap();
    let kept = listed(&store).await;
    assert_eq!(kept.len(), 5, "{kept:?}");
    assert_eq!(kept[0], next[0]);
    assert!(!kept.contains(&first[0]));
}

#[tokio::test]
async fn a_json_history_is_converted_at_open() {
    use toolgate::store::HistoryStore;
    let dir = tempfile::tempdir().unwrap();
    let old = ids(3);
    {
        // The layout of toolgate before the compact format: JSON under the string id.
        let db = sled::open(dir.path().join("db")).unwrap();
        let calls = db.open_tree("calls").unwrap();
        for i in &old {
            calls
                .insert(i.as_bytes(), serde_json::to_vec(&call(i)).unwrap())
                .unwrap();
        }
        db.flush().unwrap();
    }
    let store = reopen(dir.path());
    let got = listed(&store).await;
    assert_eq!(got, old.iter().rev().cloned().collect::<Vec<_>>());
    assert_eq!(
        store.get_call(&old[1]).await.unwrap().tool.as_deref(),
        Some("t")
    );
    // And counted: a cap of 2 on the next write keeps the newest two of four. The converted
    // chunk stays in sled (inline) and the new one goes to a segment: both are read.
    let next = ids(1);
    store.insert_calls(&[call(&next[0])], 2, 0).await.unwrap();
    assert_eq!(listed(&store).await, vec![next[0].clone(), old[2].clone()]);
    assert_eq!(segment_files(dir.path()).len(), 1);
    // Once retention passes the inline chunk, it goes like any other.
    let more = ids(2);
    let recs: Vec<_> = more.iter().map(|i| call(i)).collect();
    store.insert_calls(&recs, 2, 0).await.unwrap();
    assert_eq!(listed(&store).await, vec![more[1].clone(), more[0].clone()]);
}

#[tokio::test]
async fn the_cap_hides_part_of_the_oldest_chunk_and_that_survives_a_restart() {
    use toolgate::store::{CallFilter, HistoryStore};
    let dir = tempfile::tempdir().unwrap();
    // One batch: one chunk of 10.
    let first = ids(10);
    {
        let store = toolgate::store::SledStore::open(dir.path(), &[7u8; 32]).unwrap();
        let recs: Vec<_> = first.iter().map(|i| call(i)).collect();
        store.insert_calls(&recs, 0, 0).await.unwrap();
        // At a cap of 8, two more hide the chunk's four oldest: they are neither listed nor
        // found by id, though the chunk still holds them.
        let two = ids(2);
        let recs: Vec<_> = two.iter().map(|i| call(i)).collect();
        store.insert_calls(&recs, 8, 0).await.unwrap();
        let kept = listed(&store).await;
        assert_eq!(kept.len(), 8, "{kept:?}");
        assert_eq!(&kept[..2], &[two[1].clone(), two[0].clone()]);
        for hidden in &first[..4] {
            assert!(!kept.contains(hidden));
            assert!(store.get_call(hidden).await.is_err(), "{hidden} is hidden");
        }
        assert!(store.get_call(&first[4]).await.is_ok());
        // A page that starts inside the hidden part is empty.
        let page = store
            .list_calls(&CallFilter {
                limit: 50,
                before: Some(first[3].clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.is_empty(), "{page:?}");
    }
    // Reopened: the same eight, and the count is exact (one more at the cap hides exactly one).
    let store = reopen(dir.path());
    let kept = listed(&store).await;
    assert_eq!(kept.len(), 8);
    assert!(store.get_call(&first[3]).await.is_err());
    let next = ids(1);
    store.insert_calls(&[call(&next[0])], 8, 0).await.unwrap();
    let now = listed(&store).await;
    assert_eq!(now.len(), 8);
    assert_eq!(now[0], next[0]);
    assert!(!now.contains(&first[4]) && now.contains(&first[5]));
    // Past the chunk's end, the excess takes the rest of it whole and trims into the next.
    let burst = ids(7);
    let recs: Vec<_> = burst.iter().map(|i| call(i)).collect();
    store.insert_calls(&recs, 8, 0).await.unwrap();
    let now = listed(&store).await;
    assert_eq!(now.len(), 8);
    assert!(first.iter().all(|f| !now.contains(f)));
    assert_eq!(now[7], next[0]);
}

#[tokio::test]
async fn the_age_limit_hides_the_old_part_of_a_chunk() {
    use toolgate::store::HistoryStore;
    let dir = tempfile::tempdir().unwrap();
    let store = toolgate::store::SledStore::open(dir.path(), &[7u8; 32]).unwrap();
    let old = ids_at(now_secs() - 2 * 86_400, 3);
    let new = ids(3);
    // One chunk: three records two days old, then three new ones.
    let recs: Vec<_> = old.iter().chain(&new).map(|i| call(i)).collect();
    store.insert_calls(&recs, 0, 0).await.unwrap();
    assert_eq!(listed(&store).await.len(), 6);
    let next = ids(1);
    store
        .insert_calls(&[call(&next[0])], 0, 86_400)
        .await
        .unwrap();
    let kept = listed(&store).await;
    let expect: Vec<String> = next.iter().chain(new.iter().rev()).cloned().collect();
    assert_eq!(kept, expect);
    // Counted: a cap of 4 on the next write hides exactly the oldest visible one.
    let more = ids(1);
    store
        .insert_calls(&[call(&more[0])], 4, 86_400)
        .await
        .unwrap();
    let kept = listed(&store).await;
    assert_eq!(
        kept,
        vec![
            more[0].clone(),
            next[0].clone(),
            new[2].clone(),
            new[1].clone()
        ]
    );
}

/// The `.seg` files in the store's history folder.
fn segment_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("history"))
        .expect("history folder")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

/// A call whose arguments hold 4 KB of random hex (about 2 KB once compressed), so a few
/// batches fill more than one segment.
fn bulky_call(id: &str) -> toolgate::model::CallRecord {
    use std::fmt::Write;
    // splitmix64, seeded by the id: no two records alike.
    let mut x = id.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3)
    });
    let mut noise = String::with_capacity(4096);
    for _ in 0..256 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let _ = write!(noise, "{:016x}", z ^ (z >> 31));
    }
    let mut c = call(id);
    c.arguments = serde_json::json!({ "noise": noise });
    c
}

#[tokio::test]
async fn chunk_bodies_live_in_segments_that_retention_deletes_whole() {
    use toolgate::store::HistoryStore;
    let dir = tempfile::tempdir().unwrap();
    let cap = 300;
    let mut all = Vec::new();
    {
        let store = toolgate::store::SledStore::open(dir.path(), &[7u8; 32]).unwrap();
        let mut most_files = 0;
        for _ in 0..12 {
            let batch = ids(200);
            let recs: Vec<_> = batch.iter().map(|i| bulky_call(i)).collect();
            store.insert_calls(&recs, cap, 0).await.unwrap();
            all.extend(batch);
            most_files = most_files.max(segment_files(dir.path()).len());
        }
        // 2,400 records of about 1 KB compressed went through 1 MiB segments; at a cap of 300
        // the ones retention passed were deleted as it went.
        let files = segment_files(dir.path());
        assert!(
            (2..=3).contains(&most_files),
            "segments roll over, the old ones go: {most_files} at once"
        );
        assert!(
            !files.contains(&"0000000000000001.seg".to_string()),
            "{files:?}"
        );
        let kept = conformance::newest_ids(&store, 1000).await;
        let newest: Vec<String> = all.iter().rev().take(cap).cloned().collect();
        assert_eq!(kept, newest);
        let oldest_kept = &all[all.len() - cap];
        assert!(store.get_call(oldest_kept).await.is_ok());
        assert!(store.get_call(&all[all.len() - cap - 1]).await.is_err());
        // sled holds references, not bodies: its files stay far smaller than the history.
        let history_bytes: u64 = files
            .iter()
            .map(|f| {
                std::fs::metadata(dir.path().join("history").join(f))
                    .unwrap()
                    .len()
            })
            .sum();
        assert!(history_bytes > 1024 * 1024, "{history_bytes}");
    }
    // A segment a crash left behind (its chunks' removal durable, the file not yet deleted) is
    // deleted at open; the history reads the same and the count is still exact.
    let leftover = dir.path().join("history").join("0000000000000001.seg");
    std::fs::write(&leftover, b"bytes of chunks retention removed").unwrap();
    let store = reopen(dir.path());
    assert!(
        !leftover.exists(),
        "an unreferenced segment survived the open"
    );
    let newest: Vec<String> = all.iter().rev().take(cap).cloned().collect();
    assert_eq!(conformance::newest_ids(&store, 1000).await, newest);
    let one = ids(1);
    store
        .insert_calls(&[bulky_call(&one[0])], cap, 0)
        .await
        .unwrap();
    let kept = conformance::newest_ids(&store, 1000).await;
    assert_eq!(kept.len(), cap);
    assert_eq!(kept[0], one[0]);
    assert!(!kept.contains(&all[all.len() - cap]));
}

#[tokio::test]
async fn a_filtered_page_skips_chunks_that_cannot_match_and_finds_those_that_do() {
    use toolgate::model::{Outcome, OutcomeFilter, Source};
    use toolgate::store::{CallFilter, HistoryStore};
    let dir = tempfile::tempdir().unwrap();
    let store = toolgate::store::SledStore::open(dir.path(), &[7u8; 32]).unwrap();
    // Three batches (three chunks): successes, one timeout among successes of another tool,
    // successes again.
    let mut failed_id = String::new();
    for b in 0..3 {
        let recs: Vec<_> = ids(20)
            .iter()
            .enumerate()
            .map(|(i, id)| {
                if b == 1 && i == 7 {
                    failed_id = id.clone();
                    conformance::record(id, "other", Outcome::Timeout, Source::Chat)
                } else {
                    call(id)
                }
            })
            .collect();
        store.insert_calls(&recs, 0, 0).await.unwrap();
    }
    let page = |outcome, tool: Option<&str>, source| CallFilter {
        outcome,
        tool: tool.map(str::to_string),
        source,
        limit: 50,
        ..Default::default()
    };
    let got = |f: CallFilter| {
        let store = &store;
        async move {
            let recs = store.list_calls(&f).await.unwrap();
            recs.into_iter()
                .map(|r| String::from(r.id))
                .collect::<Vec<_>>()
        }
    };
    let failed = vec![failed_id.clone()];
    assert_eq!(
        got(page(Some(OutcomeFilter::Failed), None, None)).await,
        failed
    );
    assert_eq!(got(page(None, Some("other"), None)).await, failed);
    assert_eq!(got(page(None, None, Some(Source::Chat))).await, failed);
    assert_eq!(got(page(None, Some("t"), None)).await.len(), 50);
    assert!(
        got(page(Some(OutcomeFilter::Is(Outcome::Blocked)), None, None))
            .await
            .is_empty()
    );
}

/// The database in `dir` opened with sled directly, once the store that had it let it go.
fn raw_db(dir: &std::path::Path) -> sled::Db {
    when_free(|| sled::open(dir.join("db")))
}

/// Write the store's `schema_version` with sled directly.
fn set_schema_version(dir: &std::path::Path, version: &str) {
    let db = raw_db(dir);
    let meta = db.open_tree("meta").unwrap();
    meta.insert("schema_version", version).unwrap();
    db.flush().unwrap();
}

/// The `schema_version` the store in `dir` holds, read with sled directly.
fn stored_schema_version(dir: &std::path::Path) -> String {
    let db = raw_db(dir);
    let v = db.open_tree("meta").unwrap().get("schema_version").unwrap();
    String::from_utf8(v.expect("a schema version").to_vec()).unwrap()
}

#[tokio::test]
async fn an_older_layout_is_taken_up_and_a_newer_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(reopen(dir.path()));
    // A store written by a version-1 toolgate (history chunks inline in sled).
    set_schema_version(dir.path(), "1");
    drop(reopen(dir.path()));
    assert_eq!(stored_schema_version(dir.path()), "2");
    set_schema_version(dir.path(), "3");
    // Refused for its version (sled's lock may still be let go of first: see `when_free`).
    let mut tries = 0;
    let err = loop {
        match toolgate::store::SledStore::open(dir.path(), &[7u8; 32]) {
            Ok(_) => panic!("a newer layout was opened"),
            Err(e) if e.to_string().contains("newer") => break e,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("open: {e}; retrying");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => panic!("open: {e}"),
        }
    };
    assert!(err.to_string().contains("schema version 3"), "{err}");
}

/// Seconds since the epoch.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `n` call ids made at `secs` after the epoch, in order.
fn ids_at(secs: u64, n: u32) -> Vec<String> {
    (0..n)
        .map(|i| {
            // A millisecond apart: a UUIDv7 orders by its milliseconds only.
            let ts = uuid::Timestamp::from_unix(uuid::NoContext, secs, i * 1_000_000);
            toolgate::model::CallId::from_bits(uuid::Uuid::new_v7(ts).as_u128()).to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_segment_stays_while_a_later_chunk_refers_to_it_after_the_clock_went_back() {
    use toolgate::store::HistoryStore;
    let dir = tempfile::tempdir().unwrap();
    let store = toolgate::store::SledStore::open(dir.path(), &[7u8; 32]).unwrap();
    let now = now_secs();
    // Two batches of about 600 KB fill segment 1 past its size; the third, made after the
    // clock was set back, goes to segment 2 with keys between the first two batches'.
    let (first, second, third) = (
        ids_at(now - 300, 300),
        ids_at(now - 100, 300),
        ids_at(now - 200, 300),
    );
    for batch in [&first, &second] {
        let recs: Vec<_> = batch.iter().map(|i| bulky_call(i)).collect();
        store.insert_calls(&recs, 600, 0).await.unwrap();
    }
    assert_eq!(segment_files(dir.path()), ["0000000000000001.seg"]);
    let recs: Vec<_> = third.iter().map(|i| bulky_call(i)).collect();
    store.insert_calls(&recs, 600, 0).await.unwrap();
    // The cap removed the first batch's chunk: by key the oldest chunk is now the third batch's
    // (segment 2), but the second batch's still refers to segment 1, which must stay.
    assert_eq!(
        segment_files(dir.path()),
        ["0000000000000001.seg", "0000000000000002.seg"]
    );
    let kept = conformance::newest_ids(&store, 1000).await;
    let expect: Vec<String> = second
        .iter()
        .rev()
        .chain(third.iter().rev())
        .cloned()
        .collect();
    assert_eq!(kept, expect);
    assert!(store.get_call(&second[0]).await.is_ok());
    // And after a restart, where the references are counted afresh.
    drop(store);
    let store = reopen(dir.path());
    assert_eq!(conformance::newest_ids(&store, 1000).await, expect);
}
