//! Events: a FIFO of waiters woken by `trigger`, locally or from other threads.
//!
//! A trigger moves the waiters it wakes out of the event at once and queues
//! their callbacks, so a waiter registered later — even from inside one of
//! those callbacks — is not woken by that same trigger, for notify-one and
//! notify-all alike. Cross-thread triggers arrive through [`Remote`](crate::Remote),
//! one message each, so a single notification always wakes exactly one waiter.

use std::collections::VecDeque;

use crate::driver::{Op, Outcome};
use crate::handle::{define_handle, Key};
/// An event wait's callback, stored inline when small.
pub(crate) type EventFn = crate::sys::inline_fn::HandleFn<Driver, EventId>;
use crate::{Driver, Error, Result};

define_handle!(
    /// An event of a [`Driver`]; may be triggered from any thread through a
    /// [`Remote`](crate::Remote).
    EventId,
    Event
);

/// Identifies one pending [`Events::wait`], for [`Events::cancel_wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventWait(Key);

pub(crate) struct EventState {
    waiters: VecDeque<Key>,
}

pub(crate) struct EventOp {
    event: EventId,
    callback: EventFn,
}

/// The event view of a driver (see [`Driver::events`]).
pub struct Events<'a> {
    drv: &'a mut Driver,
}

impl Driver {
    /// Events: create, wait, trigger.
    pub fn events(&mut self) -> Events<'_> {
        Events { drv: self }
    }

    pub(crate) fn complete_event(&mut self, key: Key) -> bool {
        let Some(Op::Event(op)) = self.ops.remove(key) else {
            return false;
        };
        // Released after a trigger chose this waiter: the wait died with it.
        if !self.tables.events.contains(op.event.0) {
            return false;
        }
        op.callback.call(self, op.event);
        true
    }

    /// Wakes the first waiter of `event`, or all of them. A stale handle is
    /// ignored (a remote trigger may race with the event's release).
    pub(crate) fn trigger_event(&mut self, event: EventId, notify_all: bool) -> bool {
        let Some(state) = self.tables.events.get_mut(event.0) else {
            return false;
        };
        if notify_all {
            let woken = std::mem::take(&mut state.waiters);
            for op in woken {
                self.push_ready(op, Outcome::Event);
            }
        } else if let Some(op) = state.waiters.pop_front() {
            self.push_ready(op, Outcome::Event);
        }
        true
    }

    pub(crate) fn destroy_event(&mut self, key: Key) {
        if let Some(entry) = self.tables.events.remove(key) {
            for op in entry.waiters {
                self.ops.remove(op);
            }
        }
    }
}

impl Events<'_> {
    /// A new event with one reference and no waiters.
    #[must_use = "the handle holds the resource until it is released with `release_ref`"]
    pub fn create(&mut self) -> EventId {
        EventId(self.drv.tables.events.insert(EventState {
            waiters: VecDeque::new(),
        }))
    }

    /// Queues `callback` to run when `event` is next triggered (waiters are woken
    /// in the order they registered). The wait counts as a waiter of the loop.
    pub fn wait(&mut self, event: EventId, callback: impl FnOnce(&mut Driver, EventId) + 'static) -> Result<EventWait> {
        if !self.drv.tables.events.contains(event.0) {
            return Err(Error::invalid_handle());
        }
        let key = self.drv.ops.insert(Op::Event(EventOp {
            event,
            callback: EventFn::new(callback),
        }));
        self.drv
            .tables.events
            .get_mut(event.0)
            .expect("checked above")
            .waiters
            .push_back(key);
        Ok(EventWait(key))
    }

    /// Withdraws a wait; its callback will not run, also if a trigger already
    /// chose it. Returns whether the wait was still pending.
    pub fn cancel_wait(&mut self, event: EventId, wait: EventWait) -> bool {
        match self.drv.ops.get(wait.0) {
            Some(Op::Event(op)) if op.event == event => {}
            _ => return false,
        }
        if let Some(state) = self.drv.tables.events.get_mut(event.0) {
            if let Some(i) = state.waiters.iter().position(|k| *k == wait.0) {
                state.waiters.remove(i);
            }
        }
        self.drv.ops.remove(wait.0).is_some()
    }

    /// Wakes the first waiter (`notify_all = false`) or every current waiter.
    /// Callbacks run from `process_events`, never inside this call. Returns
    /// `Err(InvalidHandle)` for a stale event.
    pub fn trigger(&mut self, event: EventId, notify_all: bool) -> Result<()> {
        if self.drv.trigger_event(event, notify_all) {
            Ok(())
        } else {
            Err(Error::invalid_handle())
        }
    }
}
