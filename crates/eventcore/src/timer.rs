//! The portable timer structure every backend uses.
//!
//! An indexed binary min-heap of `(deadline, sequence, timer index)`. Each
//! timer's position in the heap is kept in `pos`, indexed by the timer's slot
//! index, so re-arming or stopping a timer is an O(log n) sift without a search
//! and without allocating once the vectors have grown. Equal deadlines fire in
//! the order they were armed (the sequence number breaks ties), so one timer
//! cannot starve another with the same deadline.
//!
//! A heap rather than a hierarchical wheel: arming, re-arming and cancelling are
//! O(log n) with no cascades, no overflow list for far deadlines (> 72 h), and
//! no tick granularity, so the wait can be computed to the microsecond. The
//! benchmark's `million_timers` scenario measures it against libuv (also a heap).

use std::time::{Duration, Instant};

const NOT_QUEUED: u32 = u32::MAX;

/// A heap entry: 16 bytes, so a million armed timers cost 16 MB of heap.
#[derive(Clone, Copy)]
struct Node {
    /// Nanoseconds after the queue's base instant (584 years of range).
    deadline: u64,
    /// Arming order, compared with wrap-around: it only breaks ties between
    /// equal deadlines, which are armed within 2^31 arms of each other.
    seq: u32,
    timer: u32,
}

impl Node {
    fn before(&self, other: &Node) -> bool {
        self.deadline < other.deadline
            || (self.deadline == other.deadline && (self.seq.wrapping_sub(other.seq) as i32) < 0)
    }
}

/// Deadlines of armed timers, keyed by timer slot index.
pub(crate) struct TimerQueue {
    base: Instant,
    heap: Vec<Node>,
    pos: Vec<u32>,
    seq: u32,
}

impl Default for TimerQueue {
    fn default() -> TimerQueue {
        TimerQueue {
            base: Instant::now(),
            heap: Vec::new(),
            pos: Vec::new(),
            seq: 0,
        }
    }
}

impl TimerQueue {
    /// Nanoseconds from the base to `t` (an instant before the base counts as the base).
    fn ticks(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.base);
        d.as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()))
    }

    fn instant(&self, ticks: u64) -> Instant {
        // Clamped to a century: far enough for "never", near enough that
        // adding it to an `Instant` cannot overflow.
        const CENTURY: u64 = 100 * 365 * 86400 * 1_000_000_000;
        self.base + Duration::from_nanos(ticks.min(CENTURY))
    }

    /// Makes room for `additional` more armed timers (and slot indices up to
    /// `max_index`) without reallocating.
    pub fn reserve(&mut self, additional: usize, max_index: usize) {
        self.heap.reserve(additional);
        self.pos.reserve((max_index + 1).saturating_sub(self.pos.len()));
    }

    /// Arms (or re-arms) timer `timer` for `deadline`.
    pub fn arm(&mut self, timer: u32, deadline: Instant) {
        self.arm_ticks(timer, self.ticks(deadline));
    }

    /// Arms (or re-arms) timer `timer` to expire `timeout` from now (one clock
    /// read, integer arithmetic: the common path of `Timers::set`).
    pub fn arm_after(&mut self, timer: u32, timeout: Duration) {
        let timeout = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let deadline = self.ticks(Instant::now()).saturating_add(timeout);
        self.arm_ticks(timer, deadline);
    }

    fn arm_ticks(&mut self, timer: u32, deadline: u64) {
        let t = timer as usize;
        if self.pos.len() <= t {
            self.pos.resize(t + 1, NOT_QUEUED);
        }
        self.seq = self.seq.wrapping_add(1);
        let node = Node {
            deadline,
            seq: self.seq,
            timer,
        };
        let p = self.pos[t];
        if p == NOT_QUEUED {
            self.heap.push(node);
            let i = self.heap.len() - 1;
            self.pos[t] = i as u32;
            self.sift_up(i);
        } else {
            let i = p as usize;
            self.heap[i] = node;
            self.sift_up(i);
            let i = self.pos[t] as usize;
            self.sift_down(i);
        }
    }

    /// Disarms `timer`; returns whether it was armed.
    pub fn disarm(&mut self, timer: u32) -> bool {
        let t = timer as usize;
        let Some(&p) = self.pos.get(t) else {
            return false;
        };
        if p == NOT_QUEUED {
            return false;
        }
        self.remove_at(p as usize);
        true
    }

    /// Whether `timer` is armed.
    pub fn is_armed(&self, timer: u32) -> bool {
        self.pos.get(timer as usize).is_some_and(|&p| p != NOT_QUEUED)
    }

    /// The deadline of `timer`, if armed.
    pub fn deadline(&self, timer: u32) -> Option<Instant> {
        let p = *self.pos.get(timer as usize)?;
        (p != NOT_QUEUED).then(|| self.instant(self.heap[p as usize].deadline))
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.first().map(|n| self.instant(n.deadline))
    }

    /// Removes and returns the earliest timer and its deadline if that deadline
    /// is at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(u32, Instant)> {
        let now = self.ticks(now);
        self.pop_expired_ticks(now)
    }

    /// `now` in the queue's own units, for
    /// [`pop_expired_ticks`](TimerQueue::pop_expired_ticks): converted once
    /// for a run of pops.
    pub fn now_ticks(&self, now: Instant) -> u64 {
        self.ticks(now)
    }

    /// [`pop_expired`](TimerQueue::pop_expired) with `now` already
    /// converted by [`now_ticks`](TimerQueue::now_ticks).
    pub fn pop_expired_ticks(&mut self, now: u64) -> Option<(u32, Instant)> {
        let first = *self.heap.first()?;
        if first.deadline > now {
            return None;
        }
        self.remove_at(0);
        Some((first.timer, self.instant(first.deadline)))
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    fn remove_at(&mut self, i: usize) {
        let removed = self.heap[i].timer;
        self.pos[removed as usize] = NOT_QUEUED;
        let last = self.heap.pop().expect("non-empty heap");
        if i < self.heap.len() {
            self.heap[i] = last;
            self.pos[last.timer as usize] = i as u32;
            self.sift_up(i);
            let i = self.pos[last.timer as usize] as usize;
            self.sift_down(i);
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i].before(&self.heap[parent]) {
                self.swap(i, parent);
                i = parent;
            } else {
                break;
            }
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let child = if r < n && self.heap[r].before(&self.heap[l]) {
                r
            } else {
                l
            };
            if self.heap[child].before(&self.heap[i]) {
                self.swap(i, child);
                i = child;
            } else {
                break;
            }
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].timer as usize] = a as u32;
        self.pos[self.heap[b].timer as usize] = b as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heap_entry_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Node>(), 16);
    }

    #[test]
    fn equal_deadlines_keep_arming_order_across_the_sequence_wrap() {
        let mut q = TimerQueue {
            seq: u32::MAX - 1,
            ..TimerQueue::default()
        };
        let d = q.base + Duration::from_millis(5);
        for t in 0..4 {
            q.arm(t, d);
        }
        let order: Vec<u32> = std::iter::from_fn(|| q.pop_expired(d).map(|(t, _)| t)).collect();
        assert_eq!(order, vec![0, 1, 2, 3]);
    }

    #[test]
    fn pops_in_deadline_order_with_fifo_ties() {
        let base = Instant::now();
        let mut q = TimerQueue::default();
        q.arm(0, base + Duration::from_millis(30));
        q.arm(1, base + Duration::from_millis(10));
        q.arm(2, base + Duration::from_millis(20));
        q.arm(3, base + Duration::from_millis(10));
        let later = base + Duration::from_secs(1);
        let order: Vec<u32> = std::iter::from_fn(|| q.pop_expired(later).map(|(t, _)| t)).collect();
        assert_eq!(order, vec![1, 3, 2, 0]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn rearm_and_disarm() {
        let base = Instant::now();
        let mut q = TimerQueue::default();
        for i in 0..10 {
            q.arm(i, base + Duration::from_millis(u64::from(i) * 10));
        }
        q.arm(0, base + Duration::from_secs(5));
        assert!(q.disarm(5));
        assert!(!q.disarm(5));
        assert!(!q.is_armed(5));
        assert_eq!(q.next_deadline(), Some(base + Duration::from_millis(10)));
        let got: Vec<u32> =
            std::iter::from_fn(|| q.pop_expired(base + Duration::from_secs(1)).map(|(t, _)| t)).collect();
        assert_eq!(got, vec![1, 2, 3, 4, 6, 7, 8, 9]);
        assert_eq!(q.deadline(0), Some(base + Duration::from_secs(5)));
    }

    #[test]
    fn nothing_expires_early() {
        let base = Instant::now();
        let mut q = TimerQueue::default();
        q.arm(4, base + Duration::from_millis(50));
        assert_eq!(q.pop_expired(base), None);
        assert_eq!(q.pop_expired(base + Duration::from_millis(50)).map(|(t, _)| t), Some(4));
    }

    #[test]
    fn randomized_against_sorting() {
        // A small xorshift keeps the test deterministic without a dependency.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let base = Instant::now();
        let mut q = TimerQueue::default();
        let mut model: Vec<Option<Instant>> = vec![None; 200];
        for _ in 0..5000 {
            let t = (rnd() % 200) as u32;
            if rnd() % 3 == 0 {
                assert_eq!(q.disarm(t), model[t as usize].take().is_some());
            } else {
                let d = base + Duration::from_micros(rnd() % 1_000_000);
                q.arm(t, d);
                model[t as usize] = Some(d);
            }
        }
        let mut expect: Vec<Instant> = model.iter().flatten().copied().collect();
        expect.sort();
        let far = base + Duration::from_secs(10);
        let mut got = Vec::new();
        while let Some((t, _)) = q.pop_expired(far) {
            got.push(model[t as usize].take().unwrap());
        }
        assert_eq!(got, expect);
    }
}
