//! Opaque, prefixed, time-ordered identifiers (`wh_…`, `tl_…`, `sec_…`, `call_…`).
//! UUIDv7 underneath, so ids of one kind sort by creation time, which history paging relies on.

/// A fresh id with the given prefix, e.g. `new_id("wh")` → `wh_0190…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}
