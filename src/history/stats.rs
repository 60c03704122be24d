//! What the history recorder has done, for `GET /metrics`: whether calls waited for it (the one
//! way history can slow calls down), and how its threads shared the writing.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters the writing threads keep without the queue's lock.
#[derive(Default)]
pub(super) struct Written {
    /// Batches stored.
    pub batches: AtomicU64,
    /// Records in them.
    pub records: AtomicU64,
    /// Batches the store refused.
    pub failed_batches: AtomicU64,
    /// Microseconds calls spent waiting for room in a full queue.
    pub waited_us: AtomicU64,
}

impl Written {
    /// Count a batch of `records` the store took (`ok`) or refused.
    pub(super) fn batch(&self, records: usize, ok: bool) {
        if ok {
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.records.fetch_add(records as u64, Ordering::Relaxed);
        } else {
            self.failed_batches.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A snapshot of the recorder's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryStats {
    /// Records waiting to be written now.
    pub queued: u64,
    /// Most records the queue holds before calls wait.
    pub capacity: u64,
    /// Calls that found the queue full and waited for room.
    pub waits_for_room: u64,
    /// Microseconds those calls waited, in all.
    pub waited_us: u64,
    /// Batches stored.
    pub batches: u64,
    /// Records stored.
    pub records: u64,
    /// Batches the store refused (their records are lost; each is logged at ERROR).
    pub failed_batches: u64,
    /// Times the guard took the writing over from a writer that did not get the CPU.
    pub take_overs: u64,
    /// Batches the writer handed to the guard, too late to write them at idle priority.
    pub hand_overs: u64,
    /// Times the writer was moved off a CPU it waited for.
    pub moves: u64,
    /// Times the writer ran a batch in the normal scheduling class.
    pub boosts: u64,
}

impl HistoryStats {
    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        crate::metrics::render_families(&[
            (
                "toolgate_history_queued_records",
                "gauge",
                "Call records waiting to be written.",
                self.queued as f64,
            ),
            (
                "toolgate_history_queue_capacity_records",
                "gauge",
                "Most call records queued before calls wait for room.",
                self.capacity as f64,
            ),
            (
                "toolgate_history_room_waits_total",
                "counter",
                "Calls that found the history queue full and waited for room.",
                self.waits_for_room as f64,
            ),
            (
                "toolgate_history_room_wait_seconds_total",
                "counter",
                "Time calls spent waiting for room in the history queue.",
                self.waited_us as f64 / 1e6,
            ),
            (
                "toolgate_history_batches_total",
                "counter",
                "History batches stored.",
                self.batches as f64,
            ),
            (
                "toolgate_history_records_total",
                "counter",
                "Call records stored.",
                self.records as f64,
            ),
            (
                "toolgate_history_failed_batches_total",
                "counter",
                "History batches the store refused (their records are lost).",
                self.failed_batches as f64,
            ),
            (
                "toolgate_history_guard_take_overs_total",
                "counter",
                "Times the guard thread took the writing over from an idle-class writer that did not get the CPU.",
                self.take_overs as f64,
            ),
            (
                "toolgate_history_hand_overs_total",
                "counter",
                "Batches the writer handed to the guard, too late to write them at idle priority.",
                self.hand_overs as f64,
            ),
            (
                "toolgate_history_writer_moves_total",
                "counter",
                "Times the writer was moved off a CPU it waited for.",
                self.moves as f64,
            ),
            (
                "toolgate_history_writer_boosts_total",
                "counter",
                "Batches the writer ran in the normal scheduling class.",
                self.boosts as f64,
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_type_and_one_sample() {
        let s = HistoryStats {
            queued: 3,
            capacity: 4096,
            waits_for_room: 2,
            waited_us: 1_500_000,
            batches: 5,
            records: 700,
            ..HistoryStats::default()
        };
        let text = s.render();
        assert!(
            text.contains("toolgate_history_queued_records 3\n"),
            "{text}"
        );
        assert!(text.contains("toolgate_history_room_waits_total 2\n"));
        assert!(text.contains("toolgate_history_room_wait_seconds_total 1.5\n"));
        assert!(text.contains("toolgate_history_records_total 700\n"));
        assert!(text.contains("# TYPE toolgate_history_queue_capacity_records gauge\n"));
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        let types = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!((samples, types), (11, 11), "{text}");
    }
}
