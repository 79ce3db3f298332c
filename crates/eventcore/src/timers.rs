//! Timers: what they mean, on every backend.
//!
//! A timer is armed with [`Timers::set`] (a timeout and an optional repeat
//! period) and observed with [`Timers::wait`], which registers one callback for
//! the next firing. Armed timers keep the loop alive whether or not anyone
//! waits. A periodic timer skips the periods it missed instead of firing in a
//! burst. Deadlines live in the portable [`TimerQueue`](crate::timer) that every
//! backend shares; backends only sleep until the earliest one.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use crate::driver::Outcome;
use crate::handle::{define_handle, Key};
/// A timer wait's callback, stored inline when small.
pub(crate) type TimerFn = crate::sys::inline_fn::FlagFn<Driver, TimerId>;

/// The timer subsystem's state besides its handle table.
#[derive(Default)]
pub(crate) struct TimerComponent {
    /// Armed timers by deadline.
    pub(crate) queue: crate::timer::TimerQueue,
    /// Timer waits registered or queued (they live in the timers, not in
    /// the driver's `ops`): waiters.
    pub(crate) waits: usize,
}
use crate::{Driver, Error, Result};

define_handle!(
    /// A timer of a [`Driver`].
    TimerId,
    Timer
);

/// A boxed timer callback, for code that stores one before calling
/// [`Timers::wait`] (the driver itself keeps small callbacks inline).
pub type TimerCallback = Box<dyn FnOnce(&mut Driver, TimerId, bool)>;

/// A timer's slot: 40 bytes, plus the slot's generation and reference count
/// (48), plus a 16-byte heap entry and a 4-byte heap position while armed —
/// no allocation per timer unless its callback captures more than two words.
pub(crate) struct TimerState {
    /// Repeat period in nanoseconds; zero for a one-shot timer.
    repeat: u64,
    /// The registered wait, not yet fired or stopped.
    wait: Option<TimerFn>,
    /// Completions queued for dispatch carry the epoch they were queued in;
    /// `cancel_wait` (with no wait registered) withdraws them all by moving
    /// to the next epoch. Never zero, which gives `Option<TimerState>` a niche.
    epoch: NonZeroU32,
    /// Completions of the current epoch still queued.
    queued: u32,
}

/// Most timers expired per loop turn (see `Driver::expire_timers`).
const EXPIRE_PER_TURN: usize = 1024;

impl TimerState {
    /// Takes the registered wait to be queued, with the epoch it is queued in.
    fn take_wait(&mut self) -> Option<(TimerFn, NonZeroU32)> {
        let callback = self.wait.take()?;
        self.queued += 1;
        Some((callback, self.epoch))
    }
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

    /// Runs a queued timer completion unless the timer was released or its
    /// queued completions were withdrawn since it was queued.
    pub(crate) fn complete_timer(&mut self, key: Key, fired: bool, epoch: NonZeroU32, callback: TimerFn) -> bool {
        let Some(state) = self.tables.timers.get_mut(key) else {
            return false;
        };
        if state.epoch != epoch {
            return false;
        }
        state.queued -= 1;
        self.subsystems.timers.waits -= 1;
        callback.call(self, TimerId(key), fired);
        true
    }

    /// Queues a wait's callback (counted in its timer's `queued` already).
    fn queue_wait(&mut self, key: Key, fired: bool, (callback, epoch): (TimerFn, NonZeroU32)) {
        self.push_ready(key, Outcome::Timer { fired, epoch, callback });
    }

    /// Fires the timers whose deadline has passed, at most
    /// [`EXPIRE_PER_TURN`] of them: re-arms periodic ones for their next
    /// future period and queues their waiters. Timers left over expire in
    /// the next turn, which then does not sleep; meanwhile I/O is polled
    /// and the ready queue stays small.
    pub(crate) fn expire_timers(&mut self, now: Instant) {
        let now_ticks = self.subsystems.timers.queue.now_ticks(now);
        for _ in 0..EXPIRE_PER_TURN {
            let Some((index, prev)) = self.subsystems.timers.queue.pop_expired_ticks(now_ticks) else {
                break;
            };
            let Some((key, state)) = self.tables.timers.at_mut(index) else {
                continue;
            };
            let taken = state.take_wait();
            let repeat = state.repeat;
            if repeat != 0 {
                // Skip missed periods: the next deadline is the first period
                // boundary after `now`, measured from the old deadline.
                let behind = now.saturating_duration_since(prev).as_nanos();
                let periods = behind / u128::from(repeat) + 1;
                let next = u64::try_from(u128::from(repeat) * periods)
                    .ok()
                    .and_then(|step| prev.checked_add(Duration::from_nanos(step)))
                    .unwrap_or(now + Duration::from_nanos(repeat));
                self.subsystems.timers.queue.arm(index, next);
            }
            if let Some(wait) = taken {
                self.queue_wait(key, true, wait);
            }
        }
    }

    pub(crate) fn destroy_timer(&mut self, key: Key) {
        // The wait is dropped with the slot; queued completions find the key
        // stale and are dropped uncalled.
        self.subsystems.timers.queue.disarm(key.index);
        if let Some(state) = self.tables.timers.remove(key) {
            self.subsystems.timers.waits -= usize::from(state.wait.is_some()) + state.queued as usize;
        }
    }
}

impl Timers<'_> {
    /// A new, unarmed timer with one reference.
    #[must_use = "the handle holds the resource until it is released with `release_ref`"]
    pub fn create(&mut self) -> TimerId {
        TimerId(self.drv.tables.timers.insert(TimerState {
            repeat: 0,
            wait: None,
            epoch: NonZeroU32::MIN,
            queued: 0,
        }))
    }

    /// Makes room for `additional` more timers, so that creating and arming
    /// them does not reallocate (a program about to create a million timers
    /// avoids growing the tables step by step).
    pub fn reserve(&mut self, additional: usize) {
        self.drv.tables.timers.reserve(additional);
        let max_index = self.drv.tables.timers.capacity();
        self.drv.subsystems.timers.queue.reserve(additional, max_index);
    }

    /// Arms `timer` to fire after `timeout`, then every `repeat` if `repeat` is
    /// not zero. Re-arming an armed timer moves its deadline; a pending wait
    /// stays registered.
    pub fn set(&mut self, timer: TimerId, timeout: Duration, repeat: Duration) -> Result<()> {
        self.set_repeat(timer, repeat)?;
        self.drv.subsystems.timers.queue.arm_after(timer.0.index, timeout);
        Ok(())
    }

    /// Arms `timer` to fire at `deadline` (at once, from the next
    /// `process_events`, if it has passed), then every `repeat` after it if
    /// `repeat` is not zero — tokio's `sleep_until`. Arming many timers from
    /// one clock reading (`base + timeout` for each) is what libuv does with
    /// its cached loop time, and spares a clock read per timer.
    pub fn set_at(&mut self, timer: TimerId, deadline: Instant, repeat: Duration) -> Result<()> {
        self.set_repeat(timer, repeat)?;
        self.drv.subsystems.timers.queue.arm(timer.0.index, deadline);
        Ok(())
    }

    /// Sets the period of a live timer (the first step of arming it).
    fn set_repeat(&mut self, timer: TimerId, repeat: Duration) -> Result<()> {
        let state = self
            .drv
            .tables
            .timers
            .get_mut(timer.0)
            .ok_or_else(Error::invalid_handle)?;
        state.repeat = u64::try_from(repeat.as_nanos()).unwrap_or(u64::MAX);
        Ok(())
    }

    /// Disarms `timer`. A pending wait is completed with `fired = false` (from
    /// `process_events`, never from inside this call).
    pub fn stop(&mut self, timer: TimerId) -> Result<()> {
        let state = self
            .drv
            .tables.timers
            .get_mut(timer.0)
            .ok_or_else(Error::invalid_handle)?;
        let taken = state.take_wait();
        self.drv.subsystems.timers.queue.disarm(timer.0.index);
        if let Some(wait) = taken {
            self.drv.queue_wait(timer.0, false, wait);
        }
        Ok(())
    }

    /// Whether `timer` is armed (false for an invalid handle).
    pub fn is_pending(&self, timer: TimerId) -> bool {
        self.drv.tables.timers.contains(timer.0) && self.drv.subsystems.timers.queue.is_armed(timer.0.index)
    }

    /// Whether `timer` was set with a repeat period (false for an invalid handle).
    pub fn is_periodic(&self, timer: TimerId) -> bool {
        self.drv.tables.timers.get(timer.0).is_some_and(|s| s.repeat != 0)
    }

    /// Calls `callback` at the timer's next firing (`fired = true`) or when it is
    /// stopped (`fired = false`). If the timer is not armed, the callback runs
    /// from the next `process_events` with `fired = false`. One wait per timer:
    /// a second wait while one is pending is [`Status::Busy`](crate::Status::Busy).
    pub fn wait(&mut self, timer: TimerId, callback: impl FnOnce(&mut Driver, TimerId, bool) + 'static) -> Result<()> {
        let armed = self.drv.subsystems.timers.queue.is_armed(timer.0.index);
        let state = self
            .drv
            .tables.timers
            .get_mut(timer.0)
            .ok_or_else(Error::invalid_handle)?;
        if state.wait.is_some() {
            return Err(Error::new(crate::Status::Busy));
        }
        let callback = TimerFn::new(callback);
        self.drv.subsystems.timers.waits += 1;
        if armed {
            state.wait = Some(callback);
        } else {
            state.queued += 1;
            let epoch = state.epoch;
            self.drv.queue_wait(timer.0, false, (callback, epoch));
        }
        Ok(())
    }

    /// Withdraws the wait of `timer`: the registered one, or — if none is
    /// registered — those whose completion (fired or stopped) is queued but
    /// has not run yet. Their callbacks will not run. Returns whether anything
    /// was withdrawn. The timer itself stays armed.
    pub fn cancel_wait(&mut self, timer: TimerId) -> bool {
        let Some(state) = self.drv.tables.timers.get_mut(timer.0) else {
            return false;
        };
        if state.wait.take().is_some() {
            self.drv.subsystems.timers.waits -= 1;
            return true;
        }
        if state.queued == 0 {
            return false;
        }
        self.drv.subsystems.timers.waits -= state.queued as usize;
        state.queued = 0;
        state.epoch = state.epoch.checked_add(1).unwrap_or(NonZeroU32::MIN);
        true
    }

    /// The remaining time until `timer` fires, if it is armed.
    pub fn remaining(&self, timer: TimerId) -> Option<Duration> {
        if !self.drv.tables.timers.contains(timer.0) {
            return None;
        }
        let d = self.drv.subsystems.timers.queue.deadline(timer.0.index)?;
        Some(d.saturating_duration_since(Instant::now()))
    }
}
