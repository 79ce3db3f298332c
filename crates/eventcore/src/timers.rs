//! Timers: what they mean, on every backend.
//!
//! A timer is armed with [`Timers::set`] (a timeout and an optional repeat
//! period) and observed with [`Timers::wait`], which registers one callback for
//! the next firing. Armed timers keep the loop alive whether or not anyone
//! waits. A periodic timer skips the periods it missed instead of firing in a
//! burst. Deadlines live in the portable [`TimerQueue`](crate::timer) that every
//! backend shares; backends only sleep until the earliest one.

use std::time::{Duration, Instant};

use crate::driver::{Op, Outcome};
use crate::handle::{define_handle, Key};
use crate::{Driver, Error, Result};

define_handle!(
    /// A timer of a [`Driver`].
    TimerId,
    Timer
);

/// The callback of [`Timers::wait`]: `fired` is `true` when the timer fired,
/// `false` when it was stopped (or was not armed when the wait began).
pub type TimerCallback = Box<dyn FnOnce(&mut Driver, TimerId, bool)>;

pub(crate) struct TimerState {
    repeat: Duration,
    /// The registered wait, not yet completed.
    wait: Option<Key>,
    /// Waits whose completion is queued but has not run yet; releasing the
    /// timer or `cancel_wait` still withdraws them.
    queued: Queued,
}

/// The queued waits of a timer: nearly always none or one, so the first is
/// kept inline and only further ones (a wait stopped, re-registered and
/// stopped again before the loop ran) allocate — a firing timer must not cost
/// an allocation.
#[derive(Default)]
struct Queued {
    first: Option<Key>,
    more: Vec<Key>,
}

impl Queued {
    fn extend(&mut self, key: Option<Key>) {
        let Some(key) = key else {
            return;
        };
        if self.first.is_none() {
            self.first = Some(key);
        } else {
            self.more.push(key);
        }
    }

    fn remove(&mut self, key: Key) {
        if self.first == Some(key) {
            self.first = if self.more.is_empty() {
                None
            } else {
                Some(self.more.remove(0))
            };
        } else {
            self.more.retain(|k| *k != key);
        }
    }

    fn take_all(&mut self) -> Vec<Key> {
        let mut all: Vec<Key> = self.first.take().into_iter().collect();
        all.append(&mut self.more);
        all
    }
}

pub(crate) struct TimerOp {
    timer: TimerId,
    callback: TimerCallback,
}

/// The timer view of a driver (see [`Driver::timers`]).
pub struct Timers<'a> {
    drv: &'a mut Driver,
}

impl Driver {
    /// Timers: create, arm, stop and wait.
    pub fn timers(&mut self) -> Timers<'_> {
        Timers { drv: self }
    }

    pub(crate) fn complete_timer(&mut self, key: Key, outcome: Outcome) -> bool {
        let Some(crate::handle::Entry {
            value: Op::Timer(op), ..
        }) = self.ops.remove(key)
        else {
            return false;
        };
        // The wait stays registered until now, so that releasing the timer or
        // cancelling the wait still withdraws a completion already queued.
        let Some(state) = self.timer_table.get_mut(op.timer.0) else {
            return false;
        };
        state.queued.remove(key);
        let fired = matches!(outcome, Outcome::Timer(true));
        (op.callback)(self, op.timer, fired);
        true
    }

    /// Fires every timer whose deadline has passed: re-arms periodic ones for
    /// their next future period and queues their waiters.
    pub(crate) fn expire_timers(&mut self, now: Instant) {
        while let Some((index, prev)) = self.timer_queue.pop_expired(now) {
            let Some(key) = self.timer_table.key_at(index) else {
                continue;
            };
            let state = self.timer_table.get_mut(key).expect("armed timer is live");
            let wait = state.wait.take();
            state.queued.extend(wait);
            let repeat = state.repeat;
            if !repeat.is_zero() {
                // Skip missed periods: the next deadline is the first period
                // boundary after `now`, measured from the old deadline.
                let behind = now.saturating_duration_since(prev).as_nanos();
                let periods = behind / repeat.as_nanos() + 1;
                let next = u64::try_from(repeat.as_nanos() * periods)
                    .ok()
                    .and_then(|step| prev.checked_add(Duration::from_nanos(step)))
                    .unwrap_or(now + repeat);
                self.timer_queue.arm(index, next);
            }
            if let Some(op) = wait {
                self.push_ready(op, Outcome::Timer(true));
            }
        }
    }

    pub(crate) fn destroy_timer(&mut self, key: Key) {
        self.timer_queue.disarm(key.index);
        if let Some(entry) = self.timer_table.remove(key) {
            let queued = entry.value.queued;
            for op in entry.value.wait.into_iter().chain(queued.first).chain(queued.more) {
                self.ops.remove(op);
            }
        }
    }
}

impl Timers<'_> {
    /// A new, unarmed timer with one reference.
    pub fn create(&mut self) -> TimerId {
        TimerId(self.drv.timer_table.insert(TimerState {
            repeat: Duration::ZERO,
            wait: None,
            queued: Queued::default(),
        }))
    }

    /// Arms `timer` to fire after `timeout`, then every `repeat` if `repeat` is
    /// not zero. Re-arming an armed timer moves its deadline; a pending wait
    /// stays registered.
    pub fn set(&mut self, timer: TimerId, timeout: Duration, repeat: Duration) -> Result<()> {
        let state = self
            .drv
            .timer_table
            .get_mut(timer.0)
            .ok_or_else(Error::invalid_handle)?;
        state.repeat = repeat;
        let now = Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or(now + Duration::from_secs(100 * 365 * 86400));
        self.drv.timer_queue.arm(timer.0.index, deadline);
        Ok(())
    }

    /// Disarms `timer`. A pending wait is completed with `fired = false` (from
    /// `process_events`, never from inside this call).
    pub fn stop(&mut self, timer: TimerId) -> Result<()> {
        let state = self
            .drv
            .timer_table
            .get_mut(timer.0)
            .ok_or_else(Error::invalid_handle)?;
        let wait = state.wait.take();
        state.queued.extend(wait);
        self.drv.timer_queue.disarm(timer.0.index);
        if let Some(op) = wait {
            self.drv.push_ready(op, Outcome::Timer(false));
        }
        Ok(())
    }

    /// Whether `timer` is armed (false for an invalid handle).
    pub fn is_pending(&self, timer: TimerId) -> bool {
        self.drv.timer_table.contains(timer.0) && self.drv.timer_queue.is_armed(timer.0.index)
    }

    /// Whether `timer` was set with a repeat period (false for an invalid handle).
    pub fn is_periodic(&self, timer: TimerId) -> bool {
        self.drv.timer_table.get(timer.0).is_some_and(|s| !s.repeat.is_zero())
    }

    /// Calls `callback` at the timer's next firing (`fired = true`) or when it is
    /// stopped (`fired = false`). If the timer is not armed, the callback runs
    /// from the next `process_events` with `fired = false`. One wait per timer:
    /// a second wait while one is pending is [`Status::Busy`](crate::Status::Busy).
    pub fn wait(&mut self, timer: TimerId, callback: impl FnOnce(&mut Driver, TimerId, bool) + 'static) -> Result<()> {
        let armed = self.drv.timer_queue.is_armed(timer.0.index);
        let state = self
            .drv
            .timer_table
            .get_mut(timer.0)
            .ok_or_else(Error::invalid_handle)?;
        if state.wait.is_some() {
            return Err(Error::new(crate::Status::Busy));
        }
        let key = self.drv.ops.insert(Op::Timer(TimerOp {
            timer,
            callback: Box::new(callback),
        }));
        self.drv.timer_table.get_mut(timer.0).expect("checked above").wait = Some(key);
        if !armed {
            self.drv.push_ready(key, Outcome::Timer(false));
        }
        Ok(())
    }

    /// Withdraws the wait of `timer`: the registered one, or — if none is
    /// registered — those whose completion (fired or stopped) is queued but
    /// has not run yet. Their callbacks will not run. Returns whether anything
    /// was withdrawn. The timer itself stays armed.
    pub fn cancel_wait(&mut self, timer: TimerId) -> bool {
        let Some(state) = self.drv.timer_table.get_mut(timer.0) else {
            return false;
        };
        let ops: Vec<Key> = match state.wait.take() {
            Some(op) => vec![op],
            None => state.queued.take_all(),
        };
        let mut any = false;
        for op in ops {
            any |= self.drv.ops.remove(op).is_some();
        }
        any
    }

    /// The remaining time until `timer` fires, if it is armed.
    pub fn remaining(&self, timer: TimerId) -> Option<Duration> {
        if !self.drv.timer_table.contains(timer.0) {
            return None;
        }
        let d = self.drv.timer_queue.deadline(timer.0.index)?;
        Some(d.saturating_duration_since(Instant::now()))
    }
}
