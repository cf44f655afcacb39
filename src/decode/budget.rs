//! A process-wide memory budget for decoding.
//!
//! The pixel limit caps one image; this caps all images being decoded at once. Each decoder,
//! once it has read the image size from the header and before it allocates, reserves its
//! estimated peak (file bytes plus working buffers per pixel). A reservation that does not
//! fit waits until others are released; one larger than the whole budget runs alone. So a
//! folder of huge images is decoded within `[archive] decode-memory-mb` however many cores
//! there are, and small images never wait for each other.

use std::sync::{Condvar, Mutex};

/// Peak bytes a pixel may need while decoding and preprocessing: the decoded samples (up to
/// 4 × 4 bytes), the planar `f32` raster (3 × 4), the stretched bands (3 × 4) and a
/// percentile's scratch copy (4).
pub const PEAK_BYTES_PER_PIXEL: u64 = 44;

/// The default budget when none is configured.
pub const DEFAULT_BYTES: u64 = 2048 << 20;

struct State {
    limit: u64,
    used: u64,
    /// Reservations are served in arrival order, so a large one is not starved by a stream
    /// of small ones that keep fitting.
    next_ticket: u64,
    serving: u64,
}

static STATE: Mutex<State> = Mutex::new(State { limit: DEFAULT_BYTES, used: 0, next_ticket: 0, serving: 0 });
static RELEASED: Condvar = Condvar::new();

/// Sets the budget (bytes) for every later reservation.
pub fn set_limit(bytes: u64) {
    STATE.lock().unwrap_or_else(|e| e.into_inner()).limit = bytes.max(1);
}

/// Bytes reserved now (for tests and reports).
pub fn in_use() -> u64 {
    STATE.lock().unwrap_or_else(|e| e.into_inner()).used
}

/// Memory held by one decode; released when dropped. A clone holds nothing.
#[derive(Debug, Default)]
pub struct Reservation {
    bytes: u64,
}

impl Clone for Reservation {
    fn clone(&self) -> Self {
        Reservation::default()
    }
}

/// Waits for its turn and until `bytes` fit in the budget (or nothing else is reserved),
/// then takes them.
pub fn reserve(bytes: u64) -> Reservation {
    let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let ticket = s.next_ticket;
    s.next_ticket += 1;
    while s.serving != ticket || (s.used > 0 && s.used.saturating_add(bytes) > s.limit) {
        s = RELEASED.wait(s).unwrap_or_else(|e| e.into_inner());
    }
    s.serving += 1;
    s.used += bytes;
    drop(s);
    // The next in line may fit too.
    RELEASED.notify_all();
    Reservation { bytes }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
            s.used -= self.bytes;
            drop(s);
            RELEASED.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn reservations_beyond_the_budget_wait_and_an_oversized_one_runs_alone() {
        // The only test in the crate that touches the global budget.
        set_limit(100);
        let peak = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = [60u64, 60, 60, 250, 10, 10]
            .into_iter()
            .map(|b| {
                let peak = peak.clone();
                std::thread::spawn(move || {
                    let r = reserve(b);
                    let now = in_use();
                    peak.fetch_max(now, Ordering::SeqCst);
                    assert!(now <= 100 || now == b, "{now} reserved with {b} just taken");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    drop(r);
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(in_use(), 0);
        assert_eq!(peak.load(Ordering::SeqCst), 250, "the oversized reservation ran (alone)");
        set_limit(DEFAULT_BYTES);
    }
}
