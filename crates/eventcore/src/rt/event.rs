//! Events and notifications: [`Event`] (the driver's event, as it is) and
//! [`Notify`] (a permit-counting notification that any thread can send).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use super::executor::{current, Owned};
use super::op::{Completer, Slot};
use crate::{EventId, EventWait, Remote, Result};

/// A driver event: tasks wait for it, and [`Event::notify_one`] /
/// [`Event::notify_all`] (or an [`EventTrigger`] on another thread) wake
/// them in the order they started waiting.
///
/// An event keeps no memory: a notification with nobody waiting is lost
/// (use [`Notify`] for notifications that wait for their waiter). Dropping
/// the event releases it.
pub struct Event {
    h: Owned<EventId>,
}

impl Event {
    /// A new event of the executor running on this thread (panics outside one).
    pub fn new() -> Event {
        let core = current();
        let id = core.with_driver(|drv| drv.events().create());
        Event { h: Owned::new(core, id) }
    }

    /// Waits for the next notification. The wait is registered **now**, not
    /// at the first poll, so a notification sent after this call and before
    /// the first poll is not missed.
    ///
    /// **Cancel safety:** dropping the future withdraws the wait. If a
    /// notification had already chosen it (woken, not yet polled), that
    /// notification is lost with it — it is not passed on to another waiter.
    pub fn wait(&self) -> WaitEvent<'_> {
        let slot = Slot::new();
        let done = Completer(slot.clone());
        let wait = self.h.core.with_driver(|drv| {
            drv.events().wait(self.h.handle, move |_, _| {
                let _ = done.complete(());
            })
        });
        let wait = match wait {
            Ok(w) => Some(w),
            // Cannot happen while `self` lives; complete at once if it does.
            Err(_) => {
                let _ = Completer(slot.clone()).complete(());
                None
            }
        };
        WaitEvent {
            event: self,
            slot,
            wait,
        }
    }

    /// Wakes the first waiter (from the loop, never inside this call).
    pub fn notify_one(&self) {
        self.trigger(false);
    }

    /// Wakes every current waiter; waits registered after this call are not
    /// woken by it.
    pub fn notify_all(&self) {
        self.trigger(true);
    }

    fn trigger(&self, all: bool) {
        self.h.core.with_driver(|drv| {
            // Our own event is live while `self` is.
            let _ = drv.events().trigger(self.h.handle, all);
        });
    }

    /// A `Send + Sync` handle that notifies this event from any thread.
    pub fn trigger_handle(&self) -> EventTrigger {
        EventTrigger {
            remote: self.h.core.with_driver(|drv| drv.remote()),
            id: self.h.handle,
        }
    }

    /// The driver's handle of this event.
    pub fn id(&self) -> EventId {
        self.h.handle
    }
}

impl Default for Event {
    fn default() -> Event {
        Event::new()
    }
}


impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Event").field(&self.h.handle).finish()
    }
}

/// The future of [`Event::wait`].
#[derive(Debug)]
pub struct WaitEvent<'a> {
    event: &'a Event,
    slot: Rc<Slot<()>>,
    /// The registered wait, until it completes.
    wait: Option<EventWait>,
}

impl WaitEvent<'_> {
    /// Whether a notification has chosen this wait (it completes at its next poll).
    pub fn is_notified(&self) -> bool {
        self.slot.is_filled() || self.wait.is_none()
    }
}

impl Future for WaitEvent<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.wait.is_none() {
            return Poll::Ready(());
        }
        std::task::ready!(this.slot.poll(cx));
        this.wait = None;
        Poll::Ready(())
    }
}

impl Drop for WaitEvent<'_> {
    fn drop(&mut self) {
        if let Some(wait) = self.wait.take() {
            if self.slot.take().is_none() {
                let id = self.event.h.handle;
                self.event.h.core.run_or_defer(move |drv| {
                    drv.events().cancel_wait(id, wait);
                });
            }
        }
    }
}

/// Notifies an [`Event`] from any thread, through the driver's [`Remote`].
/// `Send + Sync + Clone`.
#[derive(Clone, Debug)]
pub struct EventTrigger {
    remote: Remote,
    id: EventId,
}

impl EventTrigger {
    /// Wakes the event's first waiter. Each call wakes a waiter of its own,
    /// however the OS coalesces wake-ups. `Err(DriverGone)` once the driver
    /// is gone; a released event ignores it.
    pub fn notify_one(&self) -> Result<()> {
        self.remote.trigger(self.id, false)
    }

    /// Wakes every current waiter of the event.
    pub fn notify_all(&self) -> Result<()> {
        self.remote.trigger(self.id, true)
    }
}

/// A notification with permits, for waking tasks from any thread.
///
/// Each [`Notify::notify_one`] (or [`NotifyHandle::notify_one`] on another
/// thread) adds one permit and wakes one waiter; each completed
/// [`Notify::notified`] takes one permit. A permit sent while nobody waits is
/// kept, so a notification is never lost, whichever of sender and waiter
/// comes first. (Built on an [`Event`] plus an atomic permit count.)
pub struct Notify {
    event: Event,
    permits: Arc<AtomicUsize>,
}

fn take_permit(permits: &AtomicUsize) -> bool {
    permits
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

impl Notify {
    /// A new notification of the executor running on this thread (panics
    /// outside one), without permits.
    pub fn new() -> Notify {
        Notify {
            event: Event::new(),
            permits: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Waits until a permit is available and takes it.
    ///
    /// **Cancel safety:** cancel-safe: a dropped `notified` takes no permit,
    /// and if a notification had already woken it, the wake-up is passed on
    /// to the next waiter.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            wait: None,
        }
    }

    /// Adds a permit and wakes one waiter.
    pub fn notify_one(&self) {
        self.permits.fetch_add(1, Ordering::AcqRel);
        self.event.notify_one();
    }

    /// Permits not taken yet.
    pub fn permits(&self) -> usize {
        self.permits.load(Ordering::Acquire)
    }

    /// A `Send + Sync` handle that notifies from any thread.
    pub fn handle(&self) -> NotifyHandle {
        NotifyHandle {
            trigger: self.event.trigger_handle(),
            permits: self.permits.clone(),
        }
    }
}

impl Default for Notify {
    fn default() -> Notify {
        Notify::new()
    }
}

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notify")
            .field("event", &self.event.h.handle)
            .field("permits", &self.permits())
            .finish()
    }
}

/// The future of [`Notify::notified`].
#[derive(Debug)]
pub struct Notified<'a> {
    notify: &'a Notify,
    wait: Option<WaitEvent<'a>>,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            if take_permit(&this.notify.permits) {
                // Our wait, if a trigger chose it, belonged to the permit we took.
                this.wait = None;
                return Poll::Ready(());
            }
            match &mut this.wait {
                // Registered after the permit check: a sender that adds its
                // permit later also triggers later, and the trigger reaches
                // this wait (triggers run on this thread, in order).
                None => this.wait = Some(this.notify.event.wait()),
                Some(w) => {
                    std::task::ready!(Pin::new(w).poll(cx));
                    // Woken: look for the permit again (another task may
                    // have taken it, then wait again).
                    this.wait = None;
                }
            }
        }
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.wait.take() {
            let chosen = w.is_notified();
            drop(w);
            if chosen && self.notify.permits() > 0 {
                // The wake-up meant for a permit goes to the next waiter.
                self.notify.event.notify_one();
            }
        }
    }
}

/// Notifies a [`Notify`] from any thread. `Send + Sync + Clone`.
#[derive(Clone, Debug)]
pub struct NotifyHandle {
    trigger: EventTrigger,
    permits: Arc<AtomicUsize>,
}

impl NotifyHandle {
    /// Adds a permit and wakes one waiter (through the driver's [`Remote`]).
    /// `Err(DriverGone)` once the driver is gone (the permit is still added,
    /// but nobody can take it).
    pub fn notify_one(&self) -> Result<()> {
        self.permits.fetch_add(1, Ordering::AcqRel);
        self.trigger.notify_one()
    }
}
