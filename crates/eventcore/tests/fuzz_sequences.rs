//! A randomised API-sequence tester: random steps on one driver — timers,
//! events (local and through `Remote`), `run_in_owner_thread`, TCP and UDP on
//! 127.0.0.1, `add_ref` / `release_ref` (stale and double releases
//! included), cancels, and `process_events` with zero and short timeouts —
//! against a model of what the documentation promises.
//!
//! What the model checks:
//!
//! - every callback runs at most once, never inside the call that started it,
//!   never after a cancel that withdrew it, never after its handle was
//!   released, never after the call that registered it returned `Err`, and on
//!   the driver's thread;
//! - the callbacks that must run do: timer and event waits once the drain at
//!   the end stops every timer and triggers every event, operations refused
//!   at once (stale handle, busy slot, a socket that is connecting or closed:
//!   with exactly that status), and every `run_in_owner_thread` closure;
//! - every closure is dropped exactly once (each captures a guard whose
//!   `Drop` counts);
//! - stale handles give `Err(InvalidHandle)` (or `false`, `None`, `Closed`)
//!   and never reach the resource that reused their slot;
//! - the bytes of every TCP connection arrive in order and unchanged, also
//!   across partial and cancelled transfers, and datagrams arrive whole and
//!   at most once;
//! - `OutOfWaiters` only when the model has nothing pending; after releasing
//!   everything the loop runs out of waiters and `leak_report` is empty.
//!
//! Each run is seeded and printed; `EVENTCORE_FUZZ_SEED=N` replays one run
//! (the same steps; the timing of the OS may still differ),
//! `EVENTCORE_FUZZ_SECONDS=N` runs seeds for N seconds per backend (default
//! 3), `EVENTCORE_FUZZ_STEPS=N` sets the steps per seed (default 2000).
//! `cargo xtask fuzz --seconds N [--seed S]` runs this binary in release mode
//! inside the test namespace.

#![cfg(target_os = "linux")]

mod util;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use eventcore::{
    BackendKind, Cancelled, ConnectionState, DatagramOptions, DatagramSocket, Driver, Error, EventId, EventWait,
    ExitReason, IoMode, ListenOptions, Remote, SocketAddress, Status, StreamListener, StreamSocket, TimerId,
};

// ------------------------------------------------------------------ the PRNG

/// SplitMix64: small, fast, and every seed gives a good sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.below(items.len())])
        }
    }

    fn mode(&mut self) -> IoMode {
        match self.below(3) {
            0 => IoMode::Immediate,
            1 => IoMode::Once,
            _ => IoMode::All,
        }
    }
}

// ------------------------------------------- guards: runs and drops, counted

/// What every guard reports to; shared with the remote thread.
#[derive(Default)]
struct Ledger {
    /// Per guard: (times its callback ran, times it was dropped).
    guards: Mutex<Vec<(u32, u32)>>,
    /// Violations found where the model cannot be reached (drops, remote work).
    violations: Mutex<Vec<String>>,
}

impl Ledger {
    fn violation(&self, text: String) {
        self.violations.lock().unwrap().push(text);
    }
}

/// Captured by every callback: counts the callback's runs and the closure's drops.
struct Guard {
    id: usize,
    ledger: Arc<Ledger>,
}

impl Guard {
    fn ran(&self) -> u32 {
        let mut g = self.ledger.guards.lock().unwrap();
        g[self.id].0 += 1;
        g[self.id].0
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let drops = {
            let mut g = self.ledger.guards.lock().unwrap();
            g[self.id].1 += 1;
            g[self.id].1
        };
        if drops > 1 {
            self.ledger
                .violation(format!("closure of callback #{} dropped {drops} times", self.id));
        }
    }
}

thread_local! {
    /// Set while the tester is inside a driver call (not `process_events`).
    static IN_API: Cell<bool> = const { Cell::new(false) };
    /// Set on the driver's thread.
    static OWNER: Cell<bool> = const { Cell::new(false) };
}

/// Runs one driver call with [`IN_API`] set: a callback that runs inside it
/// breaks the rule that callbacks run only from `process_events`.
fn api<T>(f: impl FnOnce() -> T) -> T {
    let outer = IN_API.with(|c| c.replace(true));
    let r = f();
    IN_API.with(|c| c.set(outer));
    r
}

// ------------------------------------------------------------------ the model

/// What the model expects of one callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Has not run; may or must still run.
    Pending,
    /// Ran.
    Done,
    /// Withdrawn by a cancel: must never run.
    Cancelled,
    /// Its handle was released while it was pending: must never run.
    Abandoned,
    /// The call that registered it returned `Err`: must never run.
    Rejected,
    /// May or may not run (the model cannot know which); at most once.
    Uncertain,
}

struct Rec {
    what: &'static str,
    st: St,
    /// Must run by the end of the drain (unless cancelled or abandoned).
    must_run: bool,
    /// The status the callback must report (an operation refused at once).
    expect: Option<Status>,
    /// The timer wait must report `fired` with this value.
    expect_fired: Option<bool>,
    /// A repeating callback (accept): may run many times.
    repeating: bool,
}

struct TimerR {
    id: TimerId,
    refs: u32,
    /// The wait registered on an armed timer, as far as the model knows.
    registered: Option<usize>,
    /// Every wait of this timer that has not run.
    pending: Vec<usize>,
    /// Armed for sure (set, not stopped); false can also mean "unknown".
    armed: bool,
    /// Not armed for sure (never set, or stopped since).
    unarmed: bool,
}

struct EventR {
    id: EventId,
    refs: u32,
    /// Waits no local trigger has chosen, in registration order.
    fifo: VecDeque<(usize, EventWait)>,
    /// Waits a local trigger chose, not run yet.
    woken: Vec<(usize, EventWait)>,
    /// Remote triggers sent that no waiter has been seen to consume.
    remote_pending: u32,
}

/// One direction of a TCP connection, named by the writer's (local, peer) ports.
type Tag = (u16, u16);

struct StreamR {
    id: StreamSocket,
    refs: u32,
    connecting: bool,
    usable: bool,
    read: Option<usize>,
    write: Option<usize>,
    /// The tag of the bytes this side writes; the peer reads them.
    out_tag: Option<Tag>,
    in_tag: Option<Tag>,
    /// Offset of the next byte to write / expected next byte to read.
    sent: u64,
    received: u64,
    /// `shutdown` of the writing side succeeded.
    shut_write: bool,
}

struct ListenerR {
    id: StreamListener,
    refs: u32,
    port: u16,
    accept: usize,
}

struct DgramR {
    id: DatagramSocket,
    refs: u32,
    port: u16,
    recv: Option<usize>,
    send: Option<usize>,
}

/// Work for the remote thread.
enum RemoteCmd {
    Trigger(EventId),
    Run(Guard),
    Done(mpsc::Sender<()>),
}

struct State {
    rng: Rng,
    ledger: Arc<Ledger>,
    recs: Vec<Rec>,
    violations: Vec<String>,
    trace: VecDeque<String>,
    timers: Vec<TimerR>,
    events: Vec<EventR>,
    streams: Vec<StreamR>,
    listeners: Vec<ListenerR>,
    dgrams: Vec<DgramR>,
    stale_timers: Vec<TimerId>,
    stale_events: Vec<EventId>,
    stale_streams: Vec<StreamSocket>,
    stale_listeners: Vec<StreamListener>,
    stale_dgrams: Vec<DatagramSocket>,
    /// Ports of released listeners: connecting there is refused (or reaches
    /// a newer listener of this run).
    old_ports: Vec<u16>,
    /// Directions whose bytes can no longer be checked (a cancel could not
    /// say how much moved).
    tainted: HashSet<Tag>,
    /// Datagrams received: (sender port, sequence number).
    delivered: HashSet<(u16, u32)>,
    next_seq: u32,
    remote_tx: mpsc::Sender<RemoteCmd>,
    callbacks_run: u64,
    steps: u64,
    /// Set while the end of the run drains and releases: callbacks stop
    /// doing nested steps.
    ending: bool,
    me: std::rc::Weak<RefCell<State>>,
}

type Shared = Rc<RefCell<State>>;

/// The state, from a callback. The tester holds it during every driver call
/// it makes, so a callback that runs inside one finds it taken.
fn lock(shared: &Shared) -> std::cell::RefMut<'_, State> {
    shared
        .try_borrow_mut()
        .expect("a callback ran inside a driver call (callbacks must run only from process_events)")
}

/// At most this many live stream sockets (both ends count).
const MAX_STREAMS: usize = 40;

fn pattern(tag: Tag, offset: u64) -> u8 {
    let t = (u64::from(tag.0) << 16) | u64::from(tag.1);
    let x = ((offset / 8) ^ (t << 20)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ offset as u8
}

fn local_port(drv: &mut Driver, s: StreamSocket) -> Option<Tag> {
    let l = api(|| drv.sockets().local_address(s)).ok()?.as_inet()?;
    let r = api(|| drv.sockets().remote_address(s)).ok()?.as_inet()?;
    Some((l.port(), r.port()))
}

impl State {
    fn log(&mut self, text: String) {
        if self.trace.len() == 400 {
            self.trace.pop_front();
        }
        self.trace.push_back(text);
    }

    fn bad(&mut self, text: String) {
        self.log(format!("VIOLATION: {text}"));
        self.violations.push(text);
    }

    fn check(&mut self, ok: bool, text: impl FnOnce() -> String) {
        if !ok {
            let t = text();
            self.bad(t);
        }
    }

    /// A new callback record and its guard.
    fn guard(&mut self, what: &'static str) -> (usize, Guard) {
        let id = self.recs.len();
        self.recs.push(Rec {
            what,
            st: St::Pending,
            must_run: false,
            expect: None,
            expect_fired: None,
            repeating: false,
        });
        self.ledger.guards.lock().unwrap().push((0, 0));
        (
            id,
            Guard {
                id,
                ledger: self.ledger.clone(),
            },
        )
    }

    fn shared(&self) -> Shared {
        self.me.upgrade().expect("state lives")
    }

    /// The checks every callback makes when it starts; false if it must not go on.
    fn enter(&mut self, id: usize, guard: &Guard) -> bool {
        self.callbacks_run += 1;
        let runs = guard.ran();
        if IN_API.with(Cell::get) {
            self.bad(format!(
                "callback #{id} ({}) ran inside a driver call",
                self.recs[id].what
            ));
        }
        if !OWNER.with(Cell::get) {
            self.bad(format!("callback #{id} ran off the driver's thread"));
        }
        let rec = &self.recs[id];
        let what = rec.what;
        if rec.repeating {
            if rec.st != St::Pending {
                let st = rec.st;
                self.bad(format!("repeating callback #{id} ({what}) ran in state {st:?}"));
                return false;
            }
            return true;
        }
        let st = rec.st;
        self.log(format!("  callback #{id} {what} runs"));
        match st {
            St::Pending | St::Uncertain => {}
            _ => self.bad(format!("callback #{id} ({what}) ran in state {st:?} (run {runs})")),
        }
        self.recs[id].st = St::Done;
        matches!(st, St::Pending | St::Uncertain)
    }

    fn check_status<T>(&mut self, id: usize, r: &eventcore::Result<T>) {
        if let Some(want) = self.recs[id].expect {
            let got = r.as_ref().err().map(Error::status);
            let what = self.recs[id].what;
            self.check(got == Some(want), || {
                format!("callback #{id} ({what}) got {got:?}, expected {want:?}")
            });
        }
    }

    /// Marks callbacks that can no longer run because their handle went away.
    fn abandon(&mut self, ids: impl IntoIterator<Item = usize>) {
        for id in ids {
            if matches!(self.recs[id].st, St::Pending | St::Uncertain) {
                self.recs[id].st = St::Abandoned;
            }
        }
    }

    fn cancelled(&mut self, id: usize) {
        if matches!(self.recs[id].st, St::Pending | St::Uncertain) {
            self.recs[id].st = St::Cancelled;
        }
    }

    /// Runs a nested step from inside a callback, now and then.
    fn maybe_nested(&mut self, drv: &mut Driver) {
        if !self.ending && self.rng.chance(6) {
            self.log("  nested:".into());
            step(self, drv);
        }
    }

    fn stream_mut(&mut self, s: StreamSocket) -> Option<&mut StreamR> {
        self.streams.iter_mut().find(|r| r.id == s)
    }

    /// Checks bytes read from a stream whose incoming tag is known.
    fn verify_read(&mut self, s: StreamSocket, buf: &[u8], n: usize) {
        let Some(r) = self.stream_mut(s) else { return };
        let Some(tag) = r.in_tag else {
            // Bytes before the tag is known (a read racing the connect
            // callback cannot happen: reads on a connecting socket fail).
            r.received += n as u64;
            return;
        };
        let start = r.received;
        r.received += n as u64;
        if self.tainted.contains(&tag) {
            return;
        }
        if let Some(i) = (0..n).find(|&i| buf[i] != pattern(tag, start + i as u64)) {
            self.bad(format!(
                "stream {s:?} (tag {tag:?}): byte {} of the stream is {:#04x}, expected {:#04x}",
                start + i as u64,
                buf[i],
                pattern(tag, start + i as u64)
            ));
            self.tainted.insert(tag);
        }
    }
}

// ------------------------------------------------------------------- actions

fn step(st: &mut State, drv: &mut Driver) {
    st.steps += 1;
    match st.rng.below(100) {
        0..=5 => timer_create(st, drv),
        6..=11 => timer_set(st, drv),
        12..=14 => timer_stop(st, drv),
        15..=21 => timer_wait(st, drv),
        22..=23 => timer_cancel_wait(st, drv),
        24..=27 => event_create(st, drv),
        28..=33 => event_wait(st, drv),
        34..=37 => event_trigger(st, drv),
        38..=39 => event_cancel_wait(st, drv),
        40..=41 => remote_trigger(st, drv),
        42..=43 => remote_run(st, drv),
        44..=45 => listen(st, drv),
        46..=50 => connect(st, drv),
        51..=56 => stream_read(st, drv),
        57..=62 => stream_write(st, drv),
        63..=65 => stream_cancel(st, drv),
        66 => stream_shutdown(st, drv),
        67 => cancel_connect(st, drv),
        68..=69 => dgram_create(st, drv),
        70..=72 => dgram_send(st, drv),
        73..=75 => dgram_receive(st, drv),
        76 => dgram_cancel(st, drv),
        77..=78 => add_ref(st, drv),
        79..=86 => release(st, drv),
        87..=89 => stale_use(st, drv),
        _ => {
            // process_events is the caller's; a nested step does a harmless read-only call.
            let w = api(|| drv.waiter_count());
            st.log(format!("waiter_count = {w}"));
        }
    }
}

fn timer_create(st: &mut State, drv: &mut Driver) {
    if st.timers.len() >= 12 {
        return;
    }
    let id = api(|| drv.timers().create());
    st.log(format!("timer create {id:?}"));
    st.check(!st.timers.iter().any(|t| t.id == id), || {
        format!("{id:?} handed out twice")
    });
    st.timers.push(TimerR {
        id,
        refs: 1,
        registered: None,
        pending: Vec::new(),
        armed: false,
        unarmed: true,
    });
}

fn timer_set(st: &mut State, drv: &mut Driver) {
    let Some(i) = pick_index(&mut st.rng, st.timers.len()) else {
        return;
    };
    let timeout = Duration::from_micros(st.rng.below(3000) as u64);
    let repeat = if st.rng.chance(3) {
        Duration::from_micros(200 + st.rng.below(3000) as u64)
    } else {
        Duration::ZERO
    };
    let id = st.timers[i].id;
    let r = api(|| drv.timers().set(id, timeout, repeat));
    st.log(format!("timer set {id:?} {timeout:?} {repeat:?} -> {r:?}"));
    st.check(r.is_ok(), || format!("set of live {id:?}: {r:?}"));
    let t = &mut st.timers[i];
    t.armed = true;
    t.unarmed = false;
    let periodic = api(|| drv.timers().is_periodic(id));
    st.check(periodic != repeat.is_zero(), || {
        format!("is_periodic({id:?}) = {periodic}")
    });
}

fn timer_stop(st: &mut State, drv: &mut Driver) {
    let Some(i) = pick_index(&mut st.rng, st.timers.len()) else {
        return;
    };
    let id = st.timers[i].id;
    let r = api(|| drv.timers().stop(id));
    st.log(format!("timer stop {id:?} -> {r:?}"));
    st.check(r.is_ok(), || format!("stop of live {id:?}: {r:?}"));
    let pending = api(|| drv.timers().is_pending(id));
    st.check(!pending, || format!("{id:?} still pending after stop"));
    let t = &mut st.timers[i];
    t.armed = false;
    t.unarmed = true;
    if let Some(w) = t.registered.take() {
        // Taken by the stop (fired = false), unless it fired before.
        let _ = w;
    }
}

fn timer_wait(st: &mut State, drv: &mut Driver) {
    let Some(i) = pick_index(&mut st.rng, st.timers.len()) else {
        return;
    };
    let id = st.timers[i].id;
    let (rec, guard) = st.guard("timer wait");
    let shared = st.shared();
    let r = api(|| {
        drv.timers().wait(id, move |drv, t, fired| {
            let mut s = lock(&shared);
            if !s.enter(rec, &guard) {
                return;
            }
            s.check(t == id, || format!("timer wait #{rec} got {t:?}, registered on {id:?}"));
            if let Some(want) = s.recs[rec].expect_fired {
                s.check(fired == want, || {
                    format!("timer wait #{rec}: fired = {fired}, expected {want}")
                });
            }
            if let Some(t) = s.timers.iter_mut().find(|t| t.id == id) {
                t.pending.retain(|&p| p != rec);
                if t.registered == Some(rec) {
                    t.registered = None;
                }
            }
            s.maybe_nested(drv);
        })
    });
    st.log(format!("timer wait {id:?} #{rec} -> {r:?}"));
    let t = &mut st.timers[i];
    match r {
        Ok(()) => {
            st.recs[rec].must_run = true;
            if t.unarmed {
                // Queued at once with fired = false.
                st.recs[rec].expect_fired = Some(false);
            } else {
                t.registered = Some(rec);
            }
            // A wait the model thought registered has fired meanwhile.
            t.pending.push(rec);
        }
        Err(e) => {
            st.recs[rec].st = St::Rejected;
            let busy_possible = t.registered.is_some();
            st.check(e.status() == Status::Busy && busy_possible, || {
                format!("wait on live {id:?} refused with {e:?} (model: registered = {busy_possible})")
            });
        }
    }
}

fn timer_cancel_wait(st: &mut State, drv: &mut Driver) {
    let Some(i) = pick_index(&mut st.rng, st.timers.len()) else {
        return;
    };
    let id = st.timers[i].id;
    let withdrew = api(|| drv.timers().cancel_wait(id));
    st.log(format!("timer cancel_wait {id:?} -> {withdrew}"));
    st.timers[i].registered = None;
    let pending = st.timers[i].pending.clone();
    let certain = pending.iter().any(|&p| st.recs[p].st == St::Pending);
    if pending.is_empty() {
        st.check(!withdrew, || {
            format!("cancel_wait({id:?}) withdrew a wait the model does not have")
        });
    } else if certain {
        st.check(withdrew, || {
            format!("cancel_wait({id:?}) withdrew nothing, waits pending: {pending:?}")
        });
    }
    if withdrew && pending.len() == 1 {
        st.cancelled(pending[0]);
        st.timers[i].pending.clear();
    } else if withdrew {
        // The registered wait, or every queued one: which, the model
        // cannot tell.
        for &p in &pending {
            st.recs[p].st = St::Uncertain;
        }
    }
}

fn event_create(st: &mut State, drv: &mut Driver) {
    if st.events.len() >= 8 {
        return;
    }
    let id = api(|| drv.events().create());
    st.log(format!("event create {id:?}"));
    st.events.push(EventR {
        id,
        refs: 1,
        fifo: VecDeque::new(),
        woken: Vec::new(),
        remote_pending: 0,
    });
}

fn event_wait(st: &mut State, drv: &mut Driver) {
    let Some(i) = pick_index(&mut st.rng, st.events.len()) else {
        return;
    };
    let id = st.events[i].id;
    let (rec, guard) = st.guard("event wait");
    let shared = st.shared();
    let r = api(|| {
        drv.events().wait(id, move |drv, e| {
            let mut s = lock(&shared);
            if !s.enter(rec, &guard) {
                return;
            }
            s.check(e == id, || format!("event wait #{rec} got {e:?}, registered on {id:?}"));
            let problem = match s.events.iter_mut().find(|ev| ev.id == id) {
                Some(ev) => {
                    if let Some(p) = ev.woken.iter().position(|w| w.0 == rec) {
                        ev.woken.remove(p);
                        None
                    } else if ev.remote_pending > 0 {
                        // Woken by a remote trigger: that takes the first waiter.
                        ev.remote_pending -= 1;
                        let head = ev.fifo.front().map(|w| w.0);
                        ev.fifo.retain(|w| w.0 != rec);
                        (head != Some(rec))
                            .then(|| format!("event wait #{rec} woken remotely, but the first waiter was {head:?}"))
                    } else {
                        Some(format!("event wait #{rec} on {id:?} ran without a trigger"))
                    }
                }
                None => Some(format!("event wait #{rec} ran for an event the model released")),
            };
            if let Some(p) = problem {
                s.bad(p);
            }
            s.maybe_nested(drv);
        })
    });
    st.log(format!("event wait {id:?} #{rec} -> {:?}", r.as_ref().map(drop)));
    match r {
        Ok(w) => {
            st.recs[rec].must_run = true;
            st.events[i].fifo.push_back((rec, w));
        }
        Err(e) => {
            st.recs[rec].st = St::Rejected;
            st.bad(format!("wait on live {id:?}: {e:?}"));
        }
    }
}

fn event_trigger(st: &mut State, drv: &mut Driver) {
    let Some(i) = pick_index(&mut st.rng, st.events.len()) else {
        return;
    };
    let id = st.events[i].id;
    let all = st.rng.chance(3);
    let r = api(|| drv.events().trigger(id, all));
    st.log(format!("event trigger {id:?} all={all} -> {r:?}"));
    st.check(r.is_ok(), || format!("trigger of live {id:?}: {r:?}"));
    let ev = &mut st.events[i];
    if all {
        ev.woken.extend(ev.fifo.drain(..));
    } else if let Some(w) = ev.fifo.pop_front() {
        ev.woken.push(w);
    }
}

fn event_cancel_wait(st: &mut State, drv: &mut Driver) {
    let Some(i) = pick_index(&mut st.rng, st.events.len()) else {
        return;
    };
    let ev = &st.events[i];
    let id = ev.id;
    let all: Vec<(usize, EventWait)> = ev.fifo.iter().chain(ev.woken.iter()).copied().collect();
    let Some((rec, w)) = st.rng.pick(&all) else { return };
    // Now and then through another (live) event: must not withdraw it.
    if st.rng.chance(4) {
        if let Some(other) = st.events.iter().map(|e| e.id).find(|&e| e != id) {
            let r = api(|| drv.events().cancel_wait(other, w));
            st.log(format!("event cancel_wait #{rec} through {other:?} -> {r}"));
            st.check(!r, || {
                format!("cancel_wait of #{rec} through the wrong event {other:?} withdrew it")
            });
            return;
        }
    }
    let r = api(|| drv.events().cancel_wait(id, w));
    st.log(format!("event cancel_wait {id:?} #{rec} -> {r}"));
    st.check(r, || {
        format!("cancel_wait({id:?}, #{rec}) of a pending wait returned false")
    });
    st.cancelled(rec);
    let ev = &mut st.events[i];
    ev.fifo.retain(|x| x.0 != rec);
    ev.woken.retain(|x| x.0 != rec);
    // Withdrawn again: nothing left.
    let again = api(|| drv.events().cancel_wait(id, w));
    st.check(!again, || format!("second cancel_wait of #{rec} returned true"));
}

fn remote_trigger(st: &mut State, _drv: &mut Driver) {
    let Some(i) = pick_index(&mut st.rng, st.events.len()) else {
        return;
    };
    let id = st.events[i].id;
    st.events[i].remote_pending += 1;
    st.log(format!("remote trigger {id:?}"));
    st.remote_tx.send(RemoteCmd::Trigger(id)).expect("remote thread");
}

fn remote_run(st: &mut State, _drv: &mut Driver) {
    let (rec, guard) = st.guard("run_in_owner_thread");
    // Must run before the loop runs out of waiters (checked through its guard).
    st.log(format!("remote run #{rec}"));
    st.remote_tx.send(RemoteCmd::Run(guard)).expect("remote thread");
}

fn listen(st: &mut State, drv: &mut Driver) {
    if st.listeners.len() >= 3 {
        return;
    }
    let (rec, guard) = st.guard("accept");
    st.recs[rec].repeating = true;
    let shared = st.shared();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let options = ListenOptions {
        backlog: 64,
        ..ListenOptions::default()
    };
    let r = api(|| {
        drv.sockets().listen(addr, options, move |drv, l, res| {
            let mut s = lock(&shared);
            if !s.enter(rec, &guard) {
                return;
            }
            s.log(format!("  accept on {l:?}: {:?}", res.as_ref().map(|x| x.0)));
            let known = s.listeners.iter().any(|x| x.id == l && x.accept == rec);
            s.check(known, || {
                format!("accept callback #{rec} ran for {l:?}, which the model does not have")
            });
            if let Ok((sock, _peer)) = res {
                add_stream(&mut s, drv, sock, false);
                if s.streams.len() > MAX_STREAMS {
                    release_stream_fully(&mut s, drv, sock);
                }
            }
            s.maybe_nested(drv);
        })
    });
    match r {
        Ok(l) => {
            let port = api(|| drv.sockets().local_address(l))
                .ok()
                .and_then(|a| a.as_inet())
                .map_or(0, |a| a.port());
            st.log(format!("listen {l:?} on port {port} (accept #{rec})"));
            st.listeners.push(ListenerR {
                id: l,
                refs: 1,
                port,
                accept: rec,
            });
        }
        Err(e) => {
            st.recs[rec].st = St::Rejected;
            st.bad(format!("listen on 127.0.0.1:0 failed: {e:?}"));
        }
    }
}

fn add_stream(st: &mut State, drv: &mut Driver, sock: StreamSocket, connecting: bool) {
    st.check(!st.streams.iter().any(|s| s.id == sock), || {
        format!("{sock:?} handed out twice")
    });
    let tag = if connecting { None } else { local_port(drv, sock) };
    st.streams.push(StreamR {
        id: sock,
        refs: 1,
        connecting,
        usable: true,
        read: None,
        write: None,
        out_tag: tag,
        in_tag: tag.map(|(a, b)| (b, a)),
        sent: 0,
        received: 0,
        shut_write: false,
    });
}

fn connect(st: &mut State, drv: &mut Driver) {
    if st.streams.len() >= MAX_STREAMS - 2 {
        return;
    }
    let ports: Vec<u16> = st.listeners.iter().map(|l| l.port).collect();
    let port = match st.rng.pick(&ports) {
        Some(p) if !st.rng.chance(6) => p,
        _ => match st.rng.pick(&st.old_ports.clone()) {
            Some(p) => p,
            None => return,
        },
    };
    let to: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
    let (rec, guard) = st.guard("connect");
    let shared = st.shared();
    let r = api(|| {
        drv.sockets().connect(to, None, move |drv, sock, res| {
            let mut s = lock(&shared);
            if !s.enter(rec, &guard) {
                return;
            }
            s.log(format!("  connect {sock:?}: {res:?}"));
            let tag = if res.is_ok() { local_port(drv, sock) } else { None };
            let state = api(|| drv.sockets().connection_state(sock));
            let mut shut = false;
            match s.stream_mut(sock) {
                Some(r) => {
                    shut = r.shut_write;
                    r.connecting = false;
                    r.usable = res.is_ok();
                    r.write = None;
                    r.out_tag = tag;
                    r.in_tag = tag.map(|(a, b)| (b, a));
                }
                None => s.bad(format!(
                    "connect callback #{rec} for {sock:?}, which the model released"
                )),
            }
            let want = if res.is_ok() && shut {
                ConnectionState::ActiveClose
            } else if res.is_ok() {
                ConnectionState::Connected
            } else {
                ConnectionState::Closed
            };
            s.check(state == want, || {
                format!("{sock:?} after connect {res:?}: state {state:?}")
            });
            s.maybe_nested(drv);
        })
    });
    match r {
        Ok(sock) => {
            st.log(format!("connect {sock:?} to port {port} (#{rec})"));
            add_stream(st, drv, sock, true);
            st.stream_mut(sock).unwrap().write = Some(rec);
            st.recs[rec].must_run = false; // a connect may stay pending
        }
        Err(e) => {
            st.recs[rec].st = St::Rejected;
            st.log(format!("connect to port {port} failed at once: {e:?}"));
        }
    }
}

/// What a read or write on `sock` must end with if it is refused at once.
fn refusal(st: &State, sock: StreamSocket, reading: bool) -> Option<Status> {
    match st.streams.iter().find(|s| s.id == sock) {
        None => Some(Status::InvalidHandle),
        Some(s) if s.connecting || !s.usable => Some(Status::Disconnected),
        Some(s) if (if reading { s.read } else { s.write }).is_some() => Some(Status::Busy),
        Some(_) => None,
    }
}

fn pick_stream(st: &mut State) -> Option<StreamSocket> {
    if !st.stale_streams.is_empty() && st.rng.chance(10) {
        let v = st.stale_streams.clone();
        return st.rng.pick(&v);
    }
    let v: Vec<StreamSocket> = st.streams.iter().map(|s| s.id).collect();
    st.rng.pick(&v)
}

fn buf_len(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0 => 0,
        1..=6 => 1 + rng.below(512),
        7..=8 => 1 + rng.below(8192),
        _ => 65536 + rng.below(200_000),
    }
}

fn stream_read(st: &mut State, drv: &mut Driver) {
    let Some(sock) = pick_stream(st) else { return };
    let len = buf_len(&mut st.rng);
    let mode = st.rng.mode();
    let refused = refusal(st, sock, true);
    let (rec, guard) = st.guard("read");
    let shared = st.shared();
    api(|| {
        drv.sockets()
            .read(sock, Vec::with_capacity(len), mode, move |drv, s2, res, buf| {
                let mut s = lock(&shared);
                if !s.enter(rec, &guard) {
                    return;
                }
                s.log(format!("  read {s2:?} #{rec}: {res:?}"));
                s.check(s2 == sock, || format!("read #{rec} got {s2:?}, started on {sock:?}"));
                s.check(buf.capacity() >= len, || {
                    format!(
                        "read #{rec}: buffer of capacity {} came back, {len} given",
                        buf.capacity()
                    )
                });
                // The buffer's length is what the read moved into it.
                let moved = match &res {
                    Ok(n) => *n,
                    Err(e) => e.transferred(),
                };
                s.check(buf.len() == moved, || {
                    format!("read #{rec}: {moved} bytes read, buffer length {}", buf.len())
                });
                s.check_status(rec, &res);
                if refused.is_none() {
                    if let Some(r) = s.stream_mut(sock) {
                        if r.read == Some(rec) {
                            r.read = None;
                        }
                    }
                    let n = match &res {
                        Ok(n) => {
                            let n = *n;
                            let ok = match mode {
                                IoMode::All => n == len,
                                _ => n <= len && (n > 0 || len == 0),
                            };
                            s.check(ok, || format!("read #{rec} ({mode:?}, {len} bytes) returned Ok({n})"));
                            n
                        }
                        Err(e) => e.transferred(),
                    };
                    if n <= buf.len() {
                        s.verify_read(sock, &buf, n);
                    }
                }
                s.maybe_nested(drv);
            })
    });
    st.log(format!("read {sock:?} {len} {mode:?} #{rec} (refused: {refused:?})"));
    finish_io(st, rec, sock, refused, true);
}

fn finish_io(st: &mut State, rec: usize, sock: StreamSocket, refused: Option<Status>, reading: bool) {
    match refused {
        Some(status) => {
            st.recs[rec].expect = Some(status);
            st.recs[rec].must_run = true;
        }
        None => {
            let r = st.stream_mut(sock).expect("live");
            if reading {
                r.read = Some(rec);
            } else {
                r.write = Some(rec);
            }
        }
    }
}

fn stream_write(st: &mut State, drv: &mut Driver) {
    let Some(sock) = pick_stream(st) else { return };
    let len = buf_len(&mut st.rng);
    let mode = st.rng.mode();
    let refused = refusal(st, sock, false);
    let (tag, start) = match st.streams.iter().find(|s| s.id == sock) {
        Some(s) => (s.out_tag, s.sent),
        None => (None, 0),
    };
    let buf: Vec<u8> = match tag {
        Some(tag) => (0..len as u64).map(|i| pattern(tag, start + i)).collect(),
        None => vec![0xEE; len],
    };
    let (rec, guard) = st.guard("write");
    let shared = st.shared();
    api(|| {
        drv.sockets().write(sock, buf, mode, move |drv, s2, res, buf| {
            let mut s = lock(&shared);
            if !s.enter(rec, &guard) {
                return;
            }
            s.log(format!("  write {s2:?} #{rec}: {res:?}"));
            s.check(s2 == sock, || format!("write #{rec} got {s2:?}, started on {sock:?}"));
            s.check(buf.len() == len, || {
                format!("write #{rec}: buffer of {} came back, {len} given", buf.len())
            });
            s.check_status(rec, &res);
            if refused.is_none() {
                let n = match &res {
                    Ok(n) => {
                        let n = *n;
                        let ok = match mode {
                            IoMode::All => n == len,
                            IoMode::Once => n <= len && (n > 0 || len == 0),
                            IoMode::Immediate => n <= len,
                        };
                        s.check(ok, || format!("write #{rec} ({mode:?}, {len} bytes) returned Ok({n})"));
                        n
                    }
                    Err(e) => e.transferred(),
                };
                if let Some(r) = s.stream_mut(sock) {
                    if r.write == Some(rec) {
                        r.write = None;
                    }
                    r.sent += n as u64;
                }
            }
            s.maybe_nested(drv);
        })
    });
    st.log(format!("write {sock:?} {len} {mode:?} #{rec} (refused: {refused:?})"));
    finish_io(st, rec, sock, refused, false);
}

fn stream_cancel(st: &mut State, drv: &mut Driver) {
    let Some(sock) = pick_stream(st) else { return };
    let reading = st.rng.chance(2);
    let r = api(|| {
        if reading {
            drv.sockets().cancel_read(sock)
        } else {
            drv.sockets().cancel_write(sock)
        }
    });
    st.log(format!(
        "cancel_{} {sock:?} -> {:?}",
        if reading { "read" } else { "write" },
        r.as_ref().map(|c| (c.buffer.as_ref().map(|b| b.len()), c.transferred))
    ));
    let Some(s) = st.stream_mut(sock) else {
        st.check(r.is_none(), || format!("cancel on stale {sock:?} returned something"));
        return;
    };
    if s.connecting && !reading {
        // A connect is not a write: cancel_write must leave it alone.
        let withdrew = r.is_some();
        st.check(!withdrew, || {
            format!("cancel_write on connecting {sock:?} withdrew the connect")
        });
        return;
    }
    let slot = if reading { s.read.take() } else { s.write.take() };
    let (in_tag, out_tag) = (s.in_tag, s.out_tag);
    match (slot, r) {
        (None, None) => {}
        (Some(rec), Some(Cancelled { buffer, transferred })) => {
            st.cancelled(rec);
            match (buffer, reading) {
                (Some(buf), true) => {
                    if transferred <= buf.len() {
                        st.verify_read(sock, &buf[..], transferred);
                    } else {
                        st.bad(format!(
                            "cancel_read {sock:?}: {transferred} transferred into {}",
                            buf.len()
                        ));
                    }
                }
                (Some(_), false) => st.stream_mut(sock).unwrap().sent += transferred as u64,
                (None, true) => {
                    if let Some(t) = in_tag {
                        st.tainted.insert(t);
                    }
                }
                (None, false) => {
                    if let Some(t) = out_tag {
                        st.tainted.insert(t);
                    }
                }
            }
        }
        (slot, r) => st.bad(format!(
            "cancel on {sock:?}: model slot {slot:?}, driver gave {:?}",
            r.map(|c| c.transferred)
        )),
    }
}

fn after_cancel_connect(st: &mut State, sock: StreamSocket, withdrew: bool) {
    let s = st.stream_mut(sock).unwrap();
    let rec = s.write.take();
    s.connecting = false;
    s.usable = false;
    st.check(withdrew && rec.is_some(), || {
        format!("cancel of the connect of {sock:?} withdrew nothing")
    });
    if let Some(rec) = rec {
        st.cancelled(rec);
    }
}

fn cancel_connect(st: &mut State, drv: &mut Driver) {
    let Some(sock) = pick_stream(st) else { return };
    let r = api(|| drv.sockets().cancel_connect(sock));
    st.log(format!("cancel_connect {sock:?} -> {r}"));
    let connecting = st.stream_mut(sock).map(|s| s.connecting);
    match connecting {
        Some(true) => {
            after_cancel_connect(st, sock, r);
            let state = api(|| drv.sockets().connection_state(sock));
            st.check(state == ConnectionState::Closed, || {
                format!("{sock:?} after cancel_connect: {state:?}")
            });
        }
        _ => st.check(!r, || {
            format!("cancel_connect({sock:?}) with no connect pending returned true")
        }),
    }
}

fn stream_shutdown(st: &mut State, drv: &mut Driver) {
    let Some(sock) = pick_stream(st) else { return };
    let (read, write) = (st.rng.chance(3), st.rng.chance(2));
    let r = api(|| drv.sockets().shutdown(sock, read, write));
    st.log(format!("shutdown {sock:?} read={read} write={write} -> {r:?}"));
    if write && r.is_ok() {
        if let Some(s) = st.stream_mut(sock) {
            s.shut_write = true;
        }
    }
    if st.stream_mut(sock).is_none() {
        st.check(
            r.as_ref().err().map(Error::status) == Some(Status::InvalidHandle),
            || format!("shutdown of stale {sock:?}: {r:?}"),
        );
    }
}

fn dgram_create(st: &mut State, drv: &mut Driver) {
    if st.dgrams.len() >= 4 {
        return;
    }
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let r = api(|| drv.sockets().create_datagram(addr, DatagramOptions::default()));
    match r {
        Ok(d) => {
            let port = api(|| drv.sockets().local_address(d))
                .ok()
                .and_then(|a| a.as_inet())
                .map_or(0, |a| a.port());
            st.log(format!("datagram {d:?} on port {port}"));
            st.dgrams.push(DgramR {
                id: d,
                refs: 1,
                port,
                recv: None,
                send: None,
            });
        }
        Err(e) => st.bad(format!("create_datagram on 127.0.0.1:0: {e:?}")),
    }
}

fn pick_dgram(st: &mut State) -> Option<DatagramSocket> {
    if !st.stale_dgrams.is_empty() && st.rng.chance(10) {
        let v = st.stale_dgrams.clone();
        return st.rng.pick(&v);
    }
    let v: Vec<DatagramSocket> = st.dgrams.iter().map(|s| s.id).collect();
    st.rng.pick(&v)
}

fn dgram_send(st: &mut State, drv: &mut Driver) {
    let Some(d) = pick_dgram(st) else { return };
    let ports: Vec<u16> = st.dgrams.iter().map(|x| x.port).collect();
    let Some(to_port) = st.rng.pick(&ports) else { return };
    let (from_port, refused) = match st.dgrams.iter().find(|x| x.id == d) {
        None => (0, Some(Status::InvalidHandle)),
        Some(x) if x.send.is_some() => (x.port, Some(Status::Busy)),
        Some(x) => (x.port, None),
    };
    let seq = st.next_seq;
    st.next_seq += 1;
    let len = 6 + st.rng.below(1400);
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&from_port.to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend((6..len as u64).map(|i| pattern((from_port, seq as u16), i)));
    let mode = st.rng.mode();
    let (rec, guard) = st.guard("send");
    let shared = st.shared();
    let to = SocketAddress::from(SocketAddr::from(([127, 0, 0, 1], to_port)));
    api(|| {
        drv.sockets().send(d, buf, Some(to), mode, move |drv, d2, res, buf| {
            let mut s = lock(&shared);
            if !s.enter(rec, &guard) {
                return;
            }
            s.log(format!("  send {d2:?} #{rec}: {res:?}"));
            s.check(d2 == d && buf.len() == len, || {
                format!("send #{rec}: handle or buffer changed")
            });
            s.check_status(rec, &res);
            if refused.is_none() {
                if let Some(x) = s.dgrams.iter_mut().find(|x| x.id == d) {
                    if x.send == Some(rec) {
                        x.send = None;
                    }
                }
                match res {
                    Ok(n) => {
                        s.check(n == len, || format!("send #{rec} of {len} bytes sent {n}"));
                    }
                    Err(e) => s.check(e.status() == Status::WouldBlock, || format!("send #{rec}: {e:?}")),
                }
            }
            s.maybe_nested(drv);
        })
    });
    st.log(format!(
        "send {d:?} -> port {to_port} seq {seq} {mode:?} #{rec} (refused: {refused:?})"
    ));
    match refused {
        Some(status) => {
            st.recs[rec].expect = Some(status);
            st.recs[rec].must_run = true;
        }
        None => st.dgrams.iter_mut().find(|x| x.id == d).unwrap().send = Some(rec),
    }
}

fn dgram_receive(st: &mut State, drv: &mut Driver) {
    let Some(d) = pick_dgram(st) else { return };
    let (my_port, refused) = match st.dgrams.iter().find(|x| x.id == d) {
        None => (0, Some(Status::InvalidHandle)),
        Some(x) if x.recv.is_some() => (x.port, Some(Status::Busy)),
        Some(x) => (x.port, None),
    };
    let mode = st.rng.mode();
    let (rec, guard) = st.guard("receive");
    let shared = st.shared();
    api(|| {
        drv.sockets()
            .receive(d, Vec::with_capacity(2048), mode, move |drv, d2, res, buf| {
                let mut s = lock(&shared);
                if !s.enter(rec, &guard) {
                    return;
                }
                s.log(format!("  receive {d2:?} #{rec}: {:?}", res.as_ref().map(|x| x.0)));
                s.check(d2 == d, || format!("receive #{rec} got {d2:?}"));
                s.check_status(rec, &res);
                if refused.is_none() {
                    if let Some(x) = s.dgrams.iter_mut().find(|x| x.id == d) {
                        if x.recv == Some(rec) {
                            x.recv = None;
                        }
                    }
                    match res {
                        Ok((n, from)) => check_datagram(&mut s, rec, my_port, &buf[..n.min(buf.len())], from),
                        Err(e) => s.check(e.status() == Status::WouldBlock, || format!("receive #{rec}: {e:?}")),
                    }
                }
                s.maybe_nested(drv);
            })
    });
    st.log(format!("receive {d:?} {mode:?} #{rec} (refused: {refused:?})"));
    match refused {
        Some(status) => {
            st.recs[rec].expect = Some(status);
            st.recs[rec].must_run = true;
        }
        None => st.dgrams.iter_mut().find(|x| x.id == d).unwrap().recv = Some(rec),
    }
}

fn check_datagram(s: &mut State, rec: usize, my_port: u16, data: &[u8], from: SocketAddress) {
    if data.len() < 6 {
        return s.bad(format!(
            "receive #{rec} on port {my_port}: a datagram of {} bytes",
            data.len()
        ));
    }
    let port = u16::from_le_bytes([data[0], data[1]]);
    let seq = u32::from_le_bytes([data[2], data[3], data[4], data[5]]);
    let from = from.as_inet();
    s.check(from.map(|a| a.port()) == Some(port), || {
        format!("receive #{rec}: datagram of port {port} came from {from:?}")
    });
    let fresh = s.delivered.insert((port, seq));
    s.check(fresh, || {
        format!("receive #{rec}: datagram ({port}, {seq}) delivered twice")
    });
    if let Some(i) = (6..data.len()).find(|&i| data[i] != pattern((port, seq as u16), i as u64)) {
        s.bad(format!("receive #{rec}: datagram ({port}, {seq}) corrupt at byte {i}"));
    }
}

fn dgram_cancel(st: &mut State, drv: &mut Driver) {
    let Some(d) = pick_dgram(st) else { return };
    let recv = st.rng.chance(2);
    let r = api(|| {
        if recv {
            drv.sockets().cancel_receive(d)
        } else {
            drv.sockets().cancel_send(d)
        }
    });
    st.log(format!(
        "cancel_{} {d:?} -> {}",
        if recv { "receive" } else { "send" },
        r.is_some()
    ));
    let slot = st
        .dgrams
        .iter_mut()
        .find(|x| x.id == d)
        .and_then(|x| if recv { x.recv.take() } else { x.send.take() });
    match (slot, r.is_some()) {
        (Some(rec), true) => st.cancelled(rec),
        (None, false) => {}
        (slot, got) => st.bad(format!("cancel on {d:?}: model slot {slot:?}, driver withdrew: {got}")),
    }
}

/// A live handle of any kind, by index into the model's lists.
#[derive(Clone, Copy, Debug)]
enum Any {
    Timer(TimerId),
    Event(EventId),
    Stream(StreamSocket),
    Listener(StreamListener),
    Dgram(DatagramSocket),
}

fn live_handles(st: &State) -> Vec<Any> {
    let mut v: Vec<Any> = Vec::new();
    v.extend(st.timers.iter().map(|x| Any::Timer(x.id)));
    v.extend(st.events.iter().map(|x| Any::Event(x.id)));
    v.extend(st.streams.iter().map(|x| Any::Stream(x.id)));
    v.extend(st.listeners.iter().map(|x| Any::Listener(x.id)));
    v.extend(st.dgrams.iter().map(|x| Any::Dgram(x.id)));
    v
}

fn refs_of(st: &mut State, h: Any) -> &mut u32 {
    match h {
        Any::Timer(id) => &mut st.timers.iter_mut().find(|x| x.id == id).unwrap().refs,
        Any::Event(id) => &mut st.events.iter_mut().find(|x| x.id == id).unwrap().refs,
        Any::Stream(id) => &mut st.streams.iter_mut().find(|x| x.id == id).unwrap().refs,
        Any::Listener(id) => &mut st.listeners.iter_mut().find(|x| x.id == id).unwrap().refs,
        Any::Dgram(id) => &mut st.dgrams.iter_mut().find(|x| x.id == id).unwrap().refs,
    }
}

fn add_ref(st: &mut State, drv: &mut Driver) {
    let Some(h) = st.rng.pick(&live_handles(st)) else {
        return;
    };
    let r = api(|| match h {
        Any::Timer(x) => drv.add_ref(x),
        Any::Event(x) => drv.add_ref(x),
        Any::Stream(x) => drv.add_ref(x),
        Any::Listener(x) => drv.add_ref(x),
        Any::Dgram(x) => drv.add_ref(x),
    });
    st.log(format!("add_ref {h:?} -> {r:?}"));
    st.check(r.is_ok(), || format!("add_ref of live {h:?}: {r:?}"));
    *refs_of(st, h) += 1;
}

fn release(st: &mut State, drv: &mut Driver) {
    let Some(h) = st.rng.pick(&live_handles(st)) else {
        return;
    };
    release_one(st, drv, h);
}

fn release_one(st: &mut State, drv: &mut Driver, h: Any) {
    let r = api(|| match h {
        Any::Timer(x) => drv.release_ref(x),
        Any::Event(x) => drv.release_ref(x),
        Any::Stream(x) => drv.release_ref(x),
        Any::Listener(x) => drv.release_ref(x),
        Any::Dgram(x) => drv.release_ref(x),
    });
    st.log(format!("release_ref {h:?} -> {r:?}"));
    let refs = refs_of(st, h);
    *refs -= 1;
    let lives = *refs > 0;
    st.check(matches!(r, Ok(x) if x == lives), || {
        format!("release_ref of {h:?} (model: still lives = {lives}): {r:?}")
    });
    if lives {
        return;
    }
    match h {
        Any::Timer(id) => {
            let i = st.timers.iter().position(|x| x.id == id).unwrap();
            let t = st.timers.remove(i);
            st.abandon(t.pending);
            st.stale_timers.push(id);
        }
        Any::Event(id) => {
            let i = st.events.iter().position(|x| x.id == id).unwrap();
            let e = st.events.remove(i);
            st.abandon(e.fifo.iter().chain(e.woken.iter()).map(|w| w.0));
            st.stale_events.push(id);
        }
        Any::Stream(id) => {
            let i = st.streams.iter().position(|x| x.id == id).unwrap();
            let s = st.streams.remove(i);
            st.abandon(s.read.into_iter().chain(s.write));
            st.stale_streams.push(id);
        }
        Any::Listener(id) => {
            let i = st.listeners.iter().position(|x| x.id == id).unwrap();
            let l = st.listeners.remove(i);
            st.abandon([l.accept]);
            st.old_ports.push(l.port);
            st.stale_listeners.push(id);
        }
        Any::Dgram(id) => {
            let i = st.dgrams.iter().position(|x| x.id == id).unwrap();
            let d = st.dgrams.remove(i);
            st.abandon(d.recv.into_iter().chain(d.send));
            st.stale_dgrams.push(id);
        }
    }
    // The handle is stale now, whatever reused its slot meanwhile.
    stale_check(st, drv, h);
}

fn release_stream_fully(st: &mut State, drv: &mut Driver, sock: StreamSocket) {
    while st.stream_mut(sock).is_some() {
        release_one(st, drv, Any::Stream(sock));
    }
}

/// Every call on a stale handle must fail and touch nothing else.
fn stale_check(st: &mut State, drv: &mut Driver, h: Any) {
    let invalid = |r: &eventcore::Result<bool>| matches!(r, Err(e) if e.status() == Status::InvalidHandle);
    let (release, add, valid) = api(|| match h {
        Any::Timer(x) => (drv.release_ref(x), drv.add_ref(x), drv.is_valid(x)),
        Any::Event(x) => (drv.release_ref(x), drv.add_ref(x), drv.is_valid(x)),
        Any::Stream(x) => (drv.release_ref(x), drv.add_ref(x), drv.is_valid(x)),
        Any::Listener(x) => (drv.release_ref(x), drv.add_ref(x), drv.is_valid(x)),
        Any::Dgram(x) => (drv.release_ref(x), drv.add_ref(x), drv.is_valid(x)),
    });
    let add_invalid = matches!(&add, Err(e) if e.status() == Status::InvalidHandle);
    st.check(invalid(&release) && add_invalid && !valid, || {
        format!("stale {h:?}: release_ref {release:?}, add_ref {add:?}, is_valid {valid}")
    });
    match h {
        Any::Timer(x) => {
            let (set, stop, cancel, pending, remaining) = api(|| {
                let mut t = drv.timers();
                (
                    t.set(x, Duration::from_millis(1), Duration::ZERO),
                    t.stop(x),
                    t.cancel_wait(x),
                    t.is_pending(x),
                    t.remaining(x),
                )
            });
            let bad_status = |r: &eventcore::Result<()>| !matches!(r, Err(e) if e.status() == Status::InvalidHandle);
            st.check(
                !bad_status(&set) && !bad_status(&stop) && !cancel && !pending && remaining.is_none(),
                || format!("stale {x:?}: set {set:?} stop {stop:?} cancel_wait {cancel} pending {pending}"),
            );
        }
        Any::Event(x) => {
            let r = api(|| drv.events().trigger(x, true));
            st.check(matches!(&r, Err(e) if e.status() == Status::InvalidHandle), || {
                format!("trigger of stale {x:?}: {r:?}")
            });
        }
        Any::Stream(x) => {
            let (state, cr, cw, cc) = api(|| {
                let mut s = drv.sockets();
                (
                    s.connection_state(x),
                    s.cancel_read(x).is_some(),
                    s.cancel_write(x).is_some(),
                    s.cancel_connect(x),
                )
            });
            st.check(state == ConnectionState::Closed && !cr && !cw && !cc, || {
                format!("stale {x:?}: state {state:?}, cancels {cr} {cw} {cc}")
            });
        }
        Any::Listener(x) => {
            let accepting = api(|| drv.sockets().is_accepting(x));
            st.check(!accepting, || format!("stale {x:?} is accepting"));
        }
        Any::Dgram(x) => {
            let (cr, cs) = api(|| {
                let mut s = drv.sockets();
                (s.cancel_receive(x).is_some(), s.cancel_send(x).is_some())
            });
            st.check(!cr && !cs, || format!("stale {x:?}: cancels withdrew something"));
        }
    }
}

fn stale_use(st: &mut State, drv: &mut Driver) {
    let mut v: Vec<Any> = Vec::new();
    v.extend(st.stale_timers.iter().map(|&x| Any::Timer(x)));
    v.extend(st.stale_events.iter().map(|&x| Any::Event(x)));
    v.extend(st.stale_streams.iter().map(|&x| Any::Stream(x)));
    v.extend(st.stale_listeners.iter().map(|&x| Any::Listener(x)));
    v.extend(st.stale_dgrams.iter().map(|&x| Any::Dgram(x)));
    let Some(h) = st.rng.pick(&v) else { return };
    st.log(format!("stale use {h:?}"));
    stale_check(st, drv, h);
    match h {
        Any::Timer(x) => {
            let (rec, guard) = st.guard("timer wait (stale)");
            let r = api(|| {
                drv.timers().wait(x, move |_, _, _| {
                    guard.ran();
                })
            });
            st.recs[rec].st = St::Rejected;
            st.check(matches!(&r, Err(e) if e.status() == Status::InvalidHandle), || {
                format!("wait on stale {x:?}: {r:?}")
            });
        }
        Any::Event(x) => {
            let (rec, guard) = st.guard("event wait (stale)");
            let r = api(|| {
                drv.events().wait(x, move |_, _| {
                    guard.ran();
                })
            });
            st.recs[rec].st = St::Rejected;
            st.check(matches!(&r, Err(e) if e.status() == Status::InvalidHandle), || {
                format!("wait on stale {x:?}: {:?}", r.map(drop))
            });
        }
        _ => {}
    }
}

fn pick_index(rng: &mut Rng, n: usize) -> Option<usize> {
    if n == 0 {
        None
    } else {
        Some(rng.below(n))
    }
}

// ---------------------------------------------------------------- one run

/// What one seeded run did.
struct RunStats {
    steps: u64,
    callbacks: u64,
}

fn remote_thread(remote: Remote, rx: mpsc::Receiver<RemoteCmd>, ledger: Arc<Ledger>) {
    for cmd in rx {
        match cmd {
            RemoteCmd::Trigger(e) => {
                if let Err(err) = remote.trigger(e, false) {
                    ledger.violation(format!("remote trigger of {e:?}: {err:?}"));
                }
            }
            RemoteCmd::Run(guard) => {
                let id = guard.id;
                let r = remote.run_in_owner_thread(move |_drv| {
                    let runs = guard.ran();
                    if runs != 1 {
                        guard
                            .ledger
                            .violation(format!("run_in_owner_thread #{} ran {runs} times", guard.id));
                    }
                    if !OWNER.with(Cell::get) {
                        guard
                            .ledger
                            .violation(format!("run_in_owner_thread #{} off the owner thread", guard.id));
                    }
                    if IN_API.with(Cell::get) {
                        guard
                            .ledger
                            .violation(format!("run_in_owner_thread #{} inside a driver call", guard.id));
                    }
                });
                if let Err(err) = r {
                    ledger.violation(format!("run_in_owner_thread #{id}: {err:?}"));
                }
            }
            RemoteCmd::Done(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

fn fail(st: &State, kind: BackendKind, seed: u64, what: &str) -> ! {
    eprintln!("---- last steps of seed {seed} on {} ----", kind.name());
    for line in &st.trace {
        eprintln!("{line}");
    }
    panic!(
        "fuzz_sequences on {}: {what}\n  seed {seed}, step {}; replay with EVENTCORE_FUZZ_SEED={seed}",
        kind.name(),
        st.steps
    );
}

fn collect_violations(st: &mut State) {
    let remote: Vec<String> = std::mem::take(&mut *st.ledger.violations.lock().unwrap());
    st.violations.extend(remote);
}

fn process(st: &Shared, drv: &mut Driver, timeout: Duration) -> ExitReason {
    let r = drv.process_events(Some(timeout)).expect("process_events");
    if r == ExitReason::OutOfWaiters {
        let mut s = st.borrow_mut();
        let waiters = drv.waiter_count();
        let pending: Vec<usize> = (0..s.recs.len())
            .filter(|&i| {
                let r = &s.recs[i];
                r.st == St::Pending && !r.repeating && r.what != "run_in_owner_thread"
            })
            .collect();
        let listeners = s.listeners.len();
        // Work the helper thread was asked to send may reach the driver
        // after `process_events` found nothing left: it counts as a waiter
        // from then on, which is no violation.
        let in_flight = s.events.iter().map(|e| e.remote_pending as usize).sum::<usize>()
            + (0..s.recs.len())
                .filter(|&i| s.recs[i].st == St::Pending && s.recs[i].what == "run_in_owner_thread")
                .count();
        if waiters > in_flight || !pending.is_empty() || listeners != 0 {
            s.bad(format!(
                "OutOfWaiters with waiter_count {waiters}, {listeners} listeners and callbacks pending: {pending:?}"
            ));
        }
    }
    r
}

fn run_seed(kind: BackendKind, seed: u64, steps: u64) -> RunStats {
    let mut drv = Driver::with_backend(kind).expect("driver");
    OWNER.with(|c| c.set(true));
    let ledger = Arc::new(Ledger::default());
    let (tx, rx) = mpsc::channel();
    let remote = drv.remote();
    let thread_ledger = ledger.clone();
    let helper = std::thread::spawn(move || remote_thread(remote, rx, thread_ledger));
    let st: Shared = Rc::new_cyclic(|me| {
        RefCell::new(State {
            rng: Rng(seed),
            ledger: ledger.clone(),
            recs: Vec::new(),
            violations: Vec::new(),
            trace: VecDeque::new(),
            timers: Vec::new(),
            events: Vec::new(),
            streams: Vec::new(),
            listeners: Vec::new(),
            dgrams: Vec::new(),
            stale_timers: Vec::new(),
            stale_events: Vec::new(),
            stale_streams: Vec::new(),
            stale_listeners: Vec::new(),
            stale_dgrams: Vec::new(),
            old_ports: Vec::new(),
            tainted: HashSet::new(),
            delivered: HashSet::new(),
            next_seq: 0,
            remote_tx: tx,
            callbacks_run: 0,
            steps: 0,
            ending: false,
            me: me.clone(),
        })
    });

    // The random steps.
    for _ in 0..steps {
        let timeout = {
            let mut s = st.borrow_mut();
            let which = s.rng.below(4);
            if which == 0 {
                Some(if s.rng.chance(4) {
                    Duration::from_micros(200 + s.rng.below(2000) as u64)
                } else {
                    Duration::ZERO
                })
            } else {
                step(&mut s, &mut drv);
                None
            }
        };
        if let Some(t) = timeout {
            st.borrow_mut().log(format!("process_events({t:?})"));
            let r = process(&st, &mut drv, t);
            st.borrow_mut().log(format!("  -> {r:?}"));
        }
        let mut s = st.borrow_mut();
        collect_violations(&mut s);
        if !s.violations.is_empty() {
            let v = s.violations.join("\n  ");
            fail(&s, kind, seed, &v);
        }
    }

    // The drain: every timer stopped, every event triggered for all waiters,
    // the remote thread's work delivered; then the waits that must run have.
    {
        let mut s = st.borrow_mut();
        s.ending = true;
        s.log("drain".into());
        let timers: Vec<TimerId> = s.timers.iter().map(|t| t.id).collect();
        for t in timers {
            let r = api(|| drv.timers().stop(t));
            s.check(r.is_ok(), || format!("drain: stop {t:?}: {r:?}"));
        }
        for t in &mut s.timers {
            t.registered = None;
        }
        let events: Vec<EventId> = s.events.iter().map(|e| e.id).collect();
        for e in events {
            let r = api(|| drv.events().trigger(e, true));
            s.check(r.is_ok(), || format!("drain: trigger {e:?}: {r:?}"));
        }
        for e in &mut s.events {
            let fifo: Vec<_> = e.fifo.drain(..).collect();
            e.woken.extend(fifo);
            e.remote_pending = 0;
        }
        let (done_tx, done_rx) = mpsc::channel();
        s.remote_tx.send(RemoteCmd::Done(done_tx)).unwrap();
        drop(s);
        done_rx.recv().expect("remote thread");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let open: Vec<usize> = {
            let s = st.borrow();
            (0..s.recs.len())
                .filter(|&i| s.recs[i].must_run && s.recs[i].st == St::Pending)
                .collect()
        };
        if open.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let mut s = st.borrow_mut();
            let list: Vec<String> = open.iter().map(|&i| format!("#{i} {}", s.recs[i].what)).collect();
            let text = format!("callbacks that must run never ran: {}", list.join(", "));
            s.bad(text.clone());
            fail(&s, kind, seed, &text);
        }
        process(&st, &mut drv, Duration::from_millis(10));
    }

    // Release everything; the loop must run out of waiters.
    {
        let mut s = st.borrow_mut();
        s.log("release everything".into());
        while let Some(h) = live_handles(&s).first().copied() {
            release_one(&mut s, &mut drv, h);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = process(&st, &mut drv, Duration::from_millis(50));
        if r == ExitReason::OutOfWaiters {
            break;
        }
        if Instant::now() > deadline {
            let s = st.borrow();
            fail(
                &s,
                kind,
                seed,
                &format!("no OutOfWaiters after releasing everything: {}", drv.leak_report()),
            );
        }
    }
    let report = drv.leak_report();
    let stats = {
        let mut s = st.borrow_mut();
        collect_violations(&mut s);
        if !report.is_empty() {
            s.bad(format!("leak report after releasing everything: {report}"));
        }
        if !s.violations.is_empty() {
            let v = s.violations.join("\n  ");
            fail(&s, kind, seed, &v);
        }
        RunStats {
            steps: s.steps,
            callbacks: s.callbacks_run,
        }
    };

    // The remote thread ends with its channel; then the driver goes.
    let (tx2, _) = mpsc::channel();
    let old_tx = std::mem::replace(&mut st.borrow_mut().remote_tx, tx2);
    drop(old_tx);
    helper.join().expect("remote thread");
    drop(drv);
    OWNER.with(|c| c.set(false));

    // Every closure dropped exactly once; every callback at most once, and
    // as the model says.
    let s = st.borrow();
    let guards = ledger.guards.lock().unwrap();
    let mut problems = Vec::new();
    for (i, &(runs, drops)) in guards.iter().enumerate() {
        let rec = &s.recs[i];
        if drops != 1 {
            problems.push(format!("closure #{i} ({}) dropped {drops} times", rec.what));
        }
        let ran_ok = match rec.st {
            _ if rec.repeating => true,
            St::Done => runs == 1,
            St::Pending if rec.what == "run_in_owner_thread" => runs == 1,
            St::Pending | St::Uncertain => runs == 0 || runs == 1,
            St::Cancelled | St::Abandoned | St::Rejected => runs == 0,
        };
        if !ran_ok {
            problems.push(format!(
                "callback #{i} ({}) in state {:?} ran {runs} times",
                rec.what, rec.st
            ));
        }
    }
    drop(guards);
    let more: Vec<String> = std::mem::take(&mut *ledger.violations.lock().unwrap());
    problems.extend(more);
    if !problems.is_empty() {
        fail(&s, kind, seed, &problems.join("\n  "));
    }
    stats
}

// ------------------------------------------------------------- the harness

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not `{text}`")),
    )
}

/// Held by each backend's instance: the two share the machine's two cores,
/// and a run's figures mean more without the other running.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn fuzz(kind: BackendKind) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let steps = env_u64("EVENTCORE_FUZZ_STEPS").unwrap_or(2000);
    let seconds = env_u64("EVENTCORE_FUZZ_SECONDS").unwrap_or(3);
    let fixed = env_u64("EVENTCORE_FUZZ_SEED");
    // A watchdog: a hang fails the test with the seed instead of the whole run.
    let current = Arc::new(Mutex::new(0u64));
    let finished = {
        let current = current.clone();
        util::abort_unless_done(Duration::from_secs(seconds + 60), move || {
            let seed = *current.lock().unwrap();
            format!("watchdog: fuzz_sequences on {} hung; seed {seed}", kind.name())
        })
    };
    let started = Instant::now();
    let base = fixed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(t ^ u64::from(std::process::id())).next()
    });
    let (mut runs, mut total_steps, mut total_callbacks) = (0u64, 0u64, 0u64);
    let mut seeds: HashMap<u64, ()> = HashMap::new();
    loop {
        let seed = if fixed.is_some() {
            base
        } else {
            Rng(base.wrapping_add(runs)).next()
        };
        seeds.insert(seed, ());
        *current.lock().unwrap() = seed;
        println!("fuzz_sequences on {}: seed {seed} ({steps} steps)", kind.name());
        let stats = run_seed(kind, seed, steps);
        runs += 1;
        total_steps += stats.steps;
        total_callbacks += stats.callbacks;
        if fixed.is_some() || started.elapsed() >= Duration::from_secs(seconds) {
            break;
        }
    }
    finished.store(true, Ordering::Release);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fuzz_sequences on {}: {runs} seeds, {total_steps} steps ({:.0}/s), {total_callbacks} callbacks ({:.0}/s) in {secs:.1} s",
        kind.name(),
        total_steps as f64 / secs,
        total_callbacks as f64 / secs,
    );
    assert!(total_steps > 0 && total_callbacks > 0, "the fuzzer did nothing");
}

// ------------------------------------- regressions the fuzzer found, minimised

/// A listener on a free loopback port that keeps what it accepts (to be
/// released at the end), and a connect to it.
fn listener_and_connect(
    drv: &mut Driver,
    on_connect: impl FnOnce(&mut Driver, StreamSocket, eventcore::Result<()>) + 'static,
) -> (StreamListener, StreamSocket, Rc<RefCell<Vec<StreamSocket>>>) {
    let accepted: Rc<RefCell<Vec<StreamSocket>>> = Rc::default();
    let keep = accepted.clone();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let l = drv
        .sockets()
        .listen(addr, ListenOptions::default(), move |_, _, r| {
            keep.borrow_mut().push(r.expect("accept").0)
        })
        .expect("listen");
    let to = drv.sockets().local_address(l).unwrap();
    let s = drv.sockets().connect(to, None, on_connect).expect("connect");
    (l, s, accepted)
}

fn release_all(drv: &mut Driver, l: StreamListener, s: StreamSocket, accepted: &RefCell<Vec<StreamSocket>>) {
    drv.release_ref(s).unwrap();
    drv.release_ref(l).unwrap();
    for a in accepted.borrow_mut().drain(..) {
        drv.release_ref(a).unwrap();
    }
    assert_eq!(
        util::run_until_not_idle(drv, Duration::from_secs(5)),
        ExitReason::OutOfWaiters
    );
    util::assert_no_leaks(drv);
}

/// Seed 17812576877584392408 (io_uring): `cancel_write` on a connecting
/// socket withdrew the connect, whose callback then never ran, and the socket
/// stayed `Connecting` for good. A connect is not a write.
fn cancel_write_leaves_a_connect_alone(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let connected = Rc::new(Cell::new(None));
    let flag = connected.clone();
    let (l, s, accepted) = listener_and_connect(&mut drv, move |_, _, r| flag.set(Some(r.is_ok())));
    assert!(
        drv.sockets().cancel_write(s).is_none(),
        "cancel_write withdrew the connect"
    );
    assert_eq!(drv.sockets().connection_state(s), ConnectionState::Connecting);
    util::run_until(&mut drv, Duration::from_secs(5), |_| connected.get().is_some());
    assert_eq!(connected.get(), Some(true));
    assert_eq!(drv.sockets().connection_state(s), ConnectionState::Connected);
    release_all(&mut drv, l, s, &accepted);
}

/// Seed 11355553543471493617 (epoll): a read (or write) refused with
/// `Disconnected` because the socket was still connecting marked that
/// direction closed, so the connected socket reported `PassiveClose`
/// (`ActiveClose`). A refusal says nothing about the connection.
fn refused_io_while_connecting_closes_nothing(kind: BackendKind) {
    let mut drv = util::driver(kind);
    let connected = Rc::new(Cell::new(None));
    let flag = connected.clone();
    let (l, s, accepted) = listener_and_connect(&mut drv, move |_, _, r| flag.set(Some(r.is_ok())));
    let refusals: Rc<RefCell<Vec<Option<Status>>>> = Rc::default();
    let (r1, r2) = (refusals.clone(), refusals.clone());
    drv.sockets()
        .read(s, Vec::with_capacity(4), IoMode::Once, move |_, _, r, _| {
            r1.borrow_mut().push(r.err().map(|e| e.status()))
        });
    drv.sockets().write(s, vec![1; 4], IoMode::Once, move |_, _, r, _| {
        r2.borrow_mut().push(r.err().map(|e| e.status()))
    });
    util::run_until(&mut drv, Duration::from_secs(5), |_| {
        connected.get().is_some() && refusals.borrow().len() == 2
    });
    assert_eq!(connected.get(), Some(true));
    assert_eq!(*refusals.borrow(), [Some(Status::Disconnected); 2]);
    assert_eq!(drv.sockets().connection_state(s), ConnectionState::Connected);
    release_all(&mut drv, l, s, &accepted);
}

mod epoll {
    use eventcore::BackendKind::Epoll;

    #[test]
    fn fuzz_sequences() {
        super::fuzz(Epoll);
    }

    #[test]
    fn cancel_write_leaves_a_connect_alone() {
        crate::util::run(
            Epoll,
            "cancel_write_leaves_a_connect_alone",
            super::cancel_write_leaves_a_connect_alone,
        );
    }

    #[test]
    fn refused_io_while_connecting_closes_nothing() {
        crate::util::run(
            Epoll,
            "refused_io_while_connecting_closes_nothing",
            super::refused_io_while_connecting_closes_nothing,
        );
    }
}

mod uring {
    use eventcore::BackendKind::IoUring;

    #[test]
    fn fuzz_sequences() {
        if crate::util::io_uring_missing("fuzz_sequences") {
            return;
        }
        super::fuzz(IoUring);
    }

    #[test]
    fn cancel_write_leaves_a_connect_alone() {
        if crate::util::io_uring_missing("cancel_write_leaves_a_connect_alone") {
            return;
        }
        crate::util::run(
            IoUring,
            "cancel_write_leaves_a_connect_alone",
            super::cancel_write_leaves_a_connect_alone,
        );
    }

    #[test]
    fn refused_io_while_connecting_closes_nothing() {
        if crate::util::io_uring_missing("refused_io_while_connecting_closes_nothing") {
            return;
        }
        crate::util::run(
            IoUring,
            "refused_io_while_connecting_closes_nothing",
            super::refused_io_while_connecting_closes_nothing,
        );
    }
}
