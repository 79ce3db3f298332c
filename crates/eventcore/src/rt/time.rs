//! Timers as futures: [`sleep`], [`sleep_until`], [`interval`], [`timeout`].
//!
//! Each [`Sleep`] owns a driver timer from its first poll until it is dropped;
//! dropping it releases the timer, which withdraws the pending wait (its
//! callback never runs). All of these are cancel-safe: dropping them loses
//! nothing but the wait itself.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::executor::{current, Core};
use super::op::{Completer, Slot};
use crate::{Driver, TimerId};

/// A future that completes at a deadline (see [`sleep`] and [`sleep_until`]).
///
/// The deadline is fixed when the `Sleep` is created; the driver timer is
/// armed on the first poll (a deadline already past completes at once,
/// without touching the driver).
///
/// **Cancel safety:** dropping a `Sleep` at any point releases its timer and
/// loses nothing.
#[derive(Debug)]
pub struct Sleep {
    deadline: Instant,
    armed: Option<Armed>,
    done: bool,
}

#[derive(Debug)]
struct Armed {
    core: Rc<Core>,
    timer: TimerId,
    slot: Rc<Slot<bool>>,
}

/// Registers `slot` to learn of the timer's next firing.
fn wait_for(drv: &mut Driver, timer: TimerId, slot: &Rc<Slot<bool>>) {
    let done = Completer(slot.clone());
    // The timer is ours and has no other wait: this cannot fail.
    let _ = drv.timers().wait(timer, move |_, _, fired| {
        let _ = done.complete(fired);
    });
}

/// Completes after `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    let now = Instant::now();
    sleep_until(
        now.checked_add(duration)
            .unwrap_or(now + Duration::from_secs(100 * 365 * 86400)),
    )
}

/// Completes at `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        armed: None,
        done: false,
    }
}

impl Sleep {
    /// The instant this sleep completes at.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has been reached (and observed by a poll).
    pub fn is_elapsed(&self) -> bool {
        self.done
    }

    /// Moves the deadline; a sleep that had completed waits again.
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.done = false;
        if let Some(a) = &self.armed {
            a.core.with_driver(|drv| {
                let _ = drv.timers().set_at(a.timer, deadline, Duration::ZERO);
                // Withdraw the old wait — registered, or fired and queued —
                // and wait for the new deadline.
                drv.timers().cancel_wait(a.timer);
                let _ = a.slot.take();
                wait_for(drv, a.timer, &a.slot);
            });
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(());
        }
        let armed = match &this.armed {
            Some(a) => a,
            None => {
                if this.deadline <= Instant::now() {
                    this.done = true;
                    return Poll::Ready(());
                }
                let core = current();
                let slot = Slot::new();
                let deadline = this.deadline;
                let timer = core.with_driver(|drv| {
                    let timer = drv.timers().create();
                    let _ = drv.timers().set_at(timer, deadline, Duration::ZERO);
                    wait_for(drv, timer, &slot);
                    timer
                });
                this.armed.insert(Armed { core, timer, slot })
            }
        };
        // `false` (the timer was stopped) cannot happen: nobody else has it.
        let _fired = std::task::ready!(armed.slot.poll(cx));
        this.done = true;
        Poll::Ready(())
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.core.release(self.timer);
    }
}

/// A periodic timer (see [`interval`]).
///
/// The driver timer repeats on its own and the interval keeps a wait on it
/// at all times, so firings are counted even while nobody awaits
/// [`Interval::tick`]; periods the driver could not fire on time are skipped
/// (the next firing is the next period boundary).
///
/// **Cancel safety:** `tick` is cancel-safe: a firing that a dropped `tick`
/// did not report is reported by the next one.
pub struct Interval {
    core: Rc<Core>,
    timer: TimerId,
    ticks: Rc<Ticks>,
    period: Duration,
}

#[derive(Default)]
struct Ticks {
    count: Cell<u64>,
    waker: Cell<Option<Waker>>,
}

fn keep_ticking(drv: &mut Driver, timer: TimerId, ticks: Rc<Ticks>) {
    let _ = drv.timers().wait(timer, move |drv, timer, fired| {
        if !fired {
            return;
        }
        ticks.count.set(ticks.count.get() + 1);
        if let Some(w) = ticks.waker.take() {
            w.wake();
        }
        keep_ticking(drv, timer, ticks);
    });
}

/// A timer that fires every `period`, the first time one `period` from now.
/// Must be called inside an executor. Panics if `period` is zero.
pub fn interval(period: Duration) -> Interval {
    assert!(!period.is_zero(), "eventcore::rt::interval: zero period");
    let core = current();
    let ticks = Rc::new(Ticks::default());
    let timer = core.with_driver(|drv| {
        let timer = drv.timers().create();
        let _ = drv.timers().set(timer, period, period);
        keep_ticking(drv, timer, ticks.clone());
        timer
    });
    Interval {
        core,
        timer,
        ticks,
        period,
    }
}

impl Interval {
    /// Waits for the next firing; returns how many firings happened since
    /// the previous `tick` returned (more than one if the caller was late).
    pub async fn tick(&mut self) -> u64 {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for a firing (see [`Interval::tick`]).
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<u64> {
        let n = self.ticks.count.replace(0);
        if n > 0 {
            return Poll::Ready(n);
        }
        self.ticks.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }
}

impl std::fmt::Debug for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interval")
            .field("timer", &self.timer)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl Drop for Interval {
    fn drop(&mut self) {
        self.core.release(self.timer);
    }
}

/// The error of [`timeout`]: the deadline passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// Runs `future` for at most `duration` (counted from this call): its output,
/// or [`Elapsed`] — in which case `future` is dropped, cancelling what it was
/// waiting for.
///
/// **Cancel safety:** as cancel-safe as `future` itself.
pub fn timeout<F: Future>(duration: Duration, future: F) -> impl Future<Output = Result<F::Output, Elapsed>> {
    let mut sleep = sleep(duration);
    async move {
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = future.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
            if Pin::new(&mut sleep).poll(cx).is_ready() {
                return Poll::Ready(Err(Elapsed));
            }
            Poll::Pending
        })
        .await
    }
}
