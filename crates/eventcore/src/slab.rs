//! The generational slab: the handle tables of the driver and the source
//! tables of the backends.
//!
//! Every resource a driver owns lives in a [`Table`] slot addressed by a
//! [`Key`]: the slot index, the slot's generation and the owning driver's id.
//! Releasing a slot bumps its generation, so a key kept after release can never
//! reach the resource that later reuses the slot; a key from another driver is
//! rejected by its driver id. The slots of user-visible handles also carry a
//! reference count ([`Handles`]); the driver's own tables carry nothing more.

use std::fmt;

/// The address of a slot: (index, generation) plus the id of the owning driver.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub(crate) index: u32,
    pub(crate) gen: u32,
    pub(crate) driver: u32,
}

impl Key {
    /// Packs index and generation into one `u64` (the driver id is implied by the
    /// driver that reads it back). Used as the token an OS backend carries.
    pub(crate) fn to_u64(self) -> u64 {
        (u64::from(self.gen) << 32) | u64::from(self.index)
    }

    pub(crate) fn from_u64(v: u64, driver: u32) -> Key {
        Key {
            index: v as u32,
            gen: (v >> 32) as u32,
            driver,
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}v{}@{}", self.index, self.gen, self.driver)
    }
}

/// The per-slot header of a table: `u32` (a reference count) for the tables
/// of user-visible handles, nothing for the driver's own tables (operations,
/// backend sources), whose slots then cost only the generation and the value.
pub(crate) trait Header: Copy {
    /// The header of a new entry.
    const NEW: Self;
}

impl Header for () {
    const NEW: () = ();
}

/// References held by the user: a new handle has one.
impl Header for u32 {
    const NEW: u32 = 1;
}

struct Slot<T, H> {
    gen: u32,
    header: H,
    state: State<T>,
}

/// A slot's content: the resource, or the link of the free list (kept in the
/// vacant slots themselves, so freeing a million entries allocates nothing;
/// the layout shares the value's niche, so this costs no tag either).
enum State<T> {
    Live(T),
    Free { next: u32 },
}

/// The end of the free list.
const NO_FREE: u32 = u32::MAX;

/// The size a table grows by once it is past its first segment.
const SEGMENT_BYTES: usize = 64 << 10;

/// Slots in segments of a fixed size: growing allocates one more segment and
/// never moves or copies a slot, so a large table costs its slots and at most
/// one partly used segment — not the spare half of a doubled vector, nor the
/// copies a reallocation leaves behind — and never a long copy in the middle
/// of a loop turn. The first segment grows by doubling, so a small table stays
/// small.
struct Segments<S> {
    segs: Vec<Vec<S>>,
    len: usize,
}

impl<S> Segments<S> {
    /// log2 of the slots per segment: the largest power of two whose slots
    /// fit in `SEGMENT_BYTES` (at least one).
    const SHIFT: u32 = {
        let per = SEGMENT_BYTES
            / if std::mem::size_of::<S>() == 0 {
                1
            } else {
                std::mem::size_of::<S>()
            };
        if per <= 1 {
            0
        } else {
            usize::BITS - 1 - per.leading_zeros()
        }
    };
    const PER: usize = 1 << Self::SHIFT;

    fn new() -> Segments<S> {
        Segments {
            segs: Vec::new(),
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, i: usize) -> Option<&S> {
        self.segs.get(i >> Self::SHIFT)?.get(i & (Self::PER - 1))
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut S> {
        self.segs.get_mut(i >> Self::SHIFT)?.get_mut(i & (Self::PER - 1))
    }

    fn push(&mut self, slot: S) {
        let seg = self.len >> Self::SHIFT;
        if seg == self.segs.len() {
            self.segs.push(if seg == 0 {
                Vec::new()
            } else {
                Vec::with_capacity(Self::PER)
            });
        }
        self.segs[seg].push(slot);
        self.len += 1;
    }

    /// Slots that can be pushed without allocating.
    fn capacity(&self) -> usize {
        self.segs.iter().map(|s| s.capacity().min(Self::PER)).sum()
    }

    fn reserve(&mut self, additional: usize) {
        let want = self.len.saturating_add(additional);
        if let Some(first) = self.segs.first_mut() {
            let room = want.min(Self::PER).saturating_sub(first.len());
            first.reserve_exact(room);
        } else if want > 0 {
            self.segs.push(Vec::with_capacity(want.min(Self::PER)));
        }
        while self.capacity() < want {
            self.segs.push(Vec::with_capacity(Self::PER));
        }
    }

    fn iter(&self) -> impl Iterator<Item = &S> {
        self.segs.iter().flatten()
    }
}

/// A generational slab. Insert, look-up and removal are O(1); freed slots are
/// reused (LIFO) without allocating once the table has grown.
pub(crate) struct Table<T, H: Header = ()> {
    driver: u32,
    slots: Segments<Slot<T, H>>,
    /// The most recently freed slot, or `NO_FREE`.
    free: u32,
    live: usize,
}

/// The table of a user-visible handle kind: every slot has a reference count.
pub(crate) type Handles<T> = Table<T, u32>;

impl<T, H: Header> Table<T, H> {
    pub fn new(driver: u32) -> Table<T, H> {
        Table {
            driver,
            slots: Segments::new(),
            free: NO_FREE,
            live: 0,
        }
    }

    /// Makes room for `additional` more entries without reallocating.
    pub fn reserve(&mut self, additional: usize) {
        let vacant = self.slots.len() - self.live;
        self.slots.reserve(additional.saturating_sub(vacant));
    }

    /// Slots the table holds without reallocating.
    pub fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// Stores `value` (with a new header: one reference) and returns its key.
    pub fn insert(&mut self, value: T) -> Key {
        // The common case, a freed slot to reuse, in a small frame; growing
        // the table and skipping retired slots out of line. An empty free
        // list (`NO_FREE`) names no slot: no table reaches that index.
        let index = self.free;
        if let Some(slot) = self.slots.get_mut(index as usize) {
            if let State::Free { next } = slot.state {
                if slot.gen != 0 {
                    self.free = next;
                    self.live += 1;
                    slot.header = H::NEW;
                    slot.state = State::Live(value);
                    return Key {
                        index,
                        gen: slot.gen,
                        driver: self.driver,
                    };
                }
            }
        }
        self.insert_slow(value)
    }

    /// `insert` when the free list's head cannot be reused: retired slots
    /// leave the list, then the next freed slot is taken or one appended.
    #[cold]
    #[inline(never)]
    fn insert_slow(&mut self, value: T) -> Key {
        while self.free != NO_FREE {
            let slot = self.slots.get(self.free as usize).expect("free slots exist");
            let State::Free { next } = slot.state else {
                unreachable!("the free list links vacant slots only");
            };
            if slot.gen != 0 {
                return self.insert(value);
            }
            // A freed slot has generation 0 only when its generations
            // wrapped: it is retired (left vacant, off the list), so no
            // stale key can ever name a new resource.
            self.free = next;
        }
        let index = u32::try_from(self.slots.len())
            .ok()
            .filter(|&i| i != NO_FREE)
            .expect("more than 2^32 - 1 handles");
        self.slots.push(Slot {
            gen: 0,
            header: H::NEW,
            state: State::Live(value),
        });
        self.live += 1;
        Key {
            index,
            gen: 0,
            driver: self.driver,
        }
    }

    /// The key the next [`insert`](Table::insert) returns (so that a
    /// caller can record it before the value exists).
    pub fn next_key(&self) -> Key {
        let mut free = self.free;
        while free != NO_FREE {
            let slot = self.slots.get(free as usize).expect("free slots exist");
            match slot.state {
                // Retired slots (generation 0 on the list) are skipped by
                // `insert` too.
                State::Free { next } if slot.gen == 0 => free = next,
                _ => {
                    return Key {
                        index: free,
                        gen: slot.gen,
                        driver: self.driver,
                    }
                }
            }
        }
        Key {
            index: self.slots.len() as u32,
            gen: 0,
            driver: self.driver,
        }
    }

    fn slot_mut(&mut self, key: Key) -> Option<(&mut H, &mut T)> {
        if key.driver != self.driver {
            return None;
        }
        let slot = self.slots.get_mut(key.index as usize)?;
        match &mut slot.state {
            State::Live(value) if slot.gen == key.gen => Some((&mut slot.header, value)),
            _ => None,
        }
    }

    /// The resource behind `key`, if the key is current.
    pub fn get(&self, key: Key) -> Option<&T> {
        if key.driver != self.driver {
            return None;
        }
        let slot = self.slots.get(key.index as usize)?;
        match &slot.state {
            State::Live(value) if slot.gen == key.gen => Some(value),
            _ => None,
        }
    }

    /// The resource behind `key` mutably, if the key is current.
    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        self.slot_mut(key).map(|(_, value)| value)
    }

    /// The header and the resource behind `key`.
    pub fn header_mut(&mut self, key: Key) -> Option<(&mut H, &mut T)> {
        self.slot_mut(key)
    }

    /// Whether `key` names a live slot.
    pub fn contains(&self, key: Key) -> bool {
        self.get(key).is_some()
    }

    /// Frees the slot and returns its resource; the key (and every copy of
    /// it) is stale from now on. A slot whose generation is used up (2³²
    /// reuses) is retired by `insert` instead of reused, so no stale key can
    /// ever name a later resource.
    pub fn remove(&mut self, key: Key) -> Option<T> {
        self.remove_if(key, |_| true)
    }

    /// Frees the slot and returns its resource if the key is current and
    /// `pred` accepts the resource (one look-up for both); otherwise leaves
    /// the slot as it is.
    #[inline]
    pub fn remove_if(&mut self, key: Key, pred: impl FnOnce(&T) -> bool) -> Option<T> {
        if key.driver != self.driver {
            return None;
        }
        let free = self.free;
        let slot = self.slots.get_mut(key.index as usize)?;
        match &slot.state {
            State::Live(value) if slot.gen == key.gen && pred(value) => {}
            _ => return None,
        }
        let State::Live(value) = std::mem::replace(&mut slot.state, State::Free { next: free }) else {
            unreachable!("checked live above");
        };
        // Generation 0 on the free list means "used up" (see `insert`).
        slot.gen = slot.gen.wrapping_add(1);
        self.free = key.index;
        self.live -= 1;
        Some(value)
    }

    /// Sets the generation of slot `index` (tests only: forces the end of a
    /// slot's generations without 2³² reuses).
    #[cfg(test)]
    pub(crate) fn set_generation(&mut self, index: u32, gen: u32) {
        if let Some(slot) = self.slots.get_mut(index as usize) {
            slot.gen = gen;
        }
    }

    /// The resource in slot `index` and its current key, if the slot is live.
    pub fn at_mut(&mut self, index: u32) -> Option<(Key, &mut T)> {
        let driver = self.driver;
        let slot = self.slots.get_mut(index as usize)?;
        let key = Key {
            index,
            gen: slot.gen,
            driver,
        };
        match &mut slot.state {
            State::Live(value) => Some((key, value)),
            State::Free { .. } => None,
        }
    }

    /// Number of live slots.
    pub fn len(&self) -> usize {
        self.live
    }

    /// The live resources.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // io_uring's look-ups
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|s| match &s.state {
            State::Live(v) => Some(v),
            State::Free { .. } => None,
        })
    }

    /// Keys of all live slots.
    pub fn keys(&self) -> Vec<Key> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.state, State::Live(_)))
            .map(|(i, s)| Key {
                index: i as u32,
                gen: s.gen,
                driver: self.driver,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_key_after_reuse_is_rejected() {
        let mut t: Table<&str> = Table::new(7);
        let a = t.insert("a");
        assert_eq!(t.remove(a), Some("a"));
        let b = t.insert("b");
        assert_eq!(a.index, b.index, "the slot is reused");
        assert!(t.get(a).is_none(), "the old key must not reach the new resource");
        assert_eq!(t.get(b), Some(&"b"));
        assert!(t.remove(a).is_none(), "double release is a no-op");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_slot_is_retired_before_its_generation_wraps() {
        let mut t: Table<&str> = Table::new(7);
        let first = t.insert("first");
        t.remove(first);
        // As if the slot had been reused 2^32 - 1 times since.
        t.set_generation(first.index, u32::MAX);
        let last = t.insert("last");
        assert_eq!((last.index, last.gen), (first.index, u32::MAX));
        assert_eq!(t.remove(last), Some("last"));
        let next = t.insert("next");
        assert_ne!(next.index, first.index, "a used-up slot is never reused");
        assert!(!t.contains(first) && !t.contains(last), "stale keys stay stale");
        assert!(t.remove(first).is_none());
        assert_eq!(t.get(next), Some(&"next"));
        assert_eq!(t.len(), 1);
        // The free list goes on past the retired slot.
        let other = t.insert("other");
        t.remove(other);
        assert_eq!(t.insert("again").index, other.index);
    }

    #[test]
    fn key_of_another_driver_is_rejected() {
        let mut t1: Table<i32> = Table::new(1);
        let mut t2: Table<i32> = Table::new(2);
        let a = t1.insert(1);
        let _ = t2.insert(2);
        assert!(t2.get(a).is_none());
        assert!(t2.remove(a).is_none());
    }

    #[test]
    fn freed_slots_are_reused_last_freed_first() {
        let mut t: Table<u32> = Table::new(0);
        let keys: Vec<_> = (0..4).map(|i| t.insert(i)).collect();
        t.remove(keys[1]);
        t.remove(keys[3]);
        assert_eq!(t.insert(10).index, 3);
        assert_eq!(t.insert(11).index, 1);
        assert_eq!(t.insert(12).index, 4, "the free list is empty again");
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn tables_grow_by_segments_without_moving_slots() {
        let mut t: Table<[u64; 100]> = Table::new(0);
        let per = Segments::<Slot<[u64; 100], ()>>::PER;
        assert!(per >= 64 && per.is_power_of_two());
        let keys: Vec<Key> = (0..3 * per + 5).map(|i| t.insert([i as u64; 100])).collect();
        let first = t.get(keys[0]).unwrap() as *const _;
        for k in keys.iter().skip(1).take(per) {
            t.remove(*k);
        }
        t.insert([7; 100]);
        assert_eq!(t.get(keys[0]).unwrap() as *const _, first, "growing never moves a slot");
        assert_eq!(t.get(keys[3 * per + 4]).unwrap()[0], (3 * per + 4) as u64);
        assert_eq!(t.keys().len(), 2 * per + 6);
        assert_eq!(t.slots.segs.len(), 4);
        assert!(t.slots.segs.iter().skip(1).all(|s| s.capacity() == per));

        let mut r: Table<u64> = Table::new(0);
        r.reserve(10 * Segments::<Slot<u64, ()>>::PER + 1);
        let cap = r.capacity();
        assert!(cap > 10 * Segments::<Slot<u64, ()>>::PER);
        for i in 0..cap {
            r.insert(i as u64);
        }
        assert_eq!(r.capacity(), cap, "reserved room is used without allocating");
    }

    #[test]
    fn a_timer_slot_is_forty_eight_bytes() {
        assert_eq!(std::mem::size_of::<Slot<crate::timers::TimerState, u32>>(), 48);
    }

    #[test]
    fn token_round_trip() {
        let mut t: Table<()> = Table::new(3);
        for _ in 0..5 {
            let k = t.insert(());
            t.remove(k);
        }
        let k = t.insert(());
        assert_eq!(Key::from_u64(k.to_u64(), 3), k);
    }

    #[test]
    fn slots_are_reused_without_growth() {
        let mut t: Table<i32> = Table::new(0);
        let keys: Vec<_> = (0..100).map(|i| t.insert(i)).collect();
        for k in &keys {
            t.remove(*k);
        }
        for i in 0..100 {
            t.insert(i);
        }
        assert_eq!(t.slots.len(), 100);
        assert_eq!(t.keys().len(), 100);
    }
}
