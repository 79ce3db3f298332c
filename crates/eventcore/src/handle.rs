//! The generational handle table.
//!
//! Every resource a driver owns lives in a [`Table`] slot addressed by a
//! [`Key`]: the slot index, the slot's generation and the owning driver's id.
//! Releasing a slot bumps its generation, so a key kept after release can never
//! reach the resource that later reuses the slot; a key from another driver is
//! rejected by its driver id. Slots carry a reference count and the user's data.

use std::any::Any;
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

/// A live slot: the resource plus its bookkeeping.
pub(crate) struct Entry<T> {
    /// References held by the user (a new handle has one).
    pub refs: u32,
    /// Per-handle user data, dropped with the handle.
    pub user: Option<Box<dyn Any>>,
    /// The resource itself.
    pub value: T,
}

struct Slot<T> {
    gen: u32,
    entry: Option<Entry<T>>,
}

/// A generational slab. Insert, look-up and removal are O(1); freed slots are
/// reused (LIFO) without allocating once the table has grown.
pub(crate) struct Table<T> {
    driver: u32,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    live: usize,
}

impl<T> Table<T> {
    pub fn new(driver: u32) -> Table<T> {
        Table {
            driver,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    /// Stores `value` with one reference and returns its key.
    pub fn insert(&mut self, value: T) -> Key {
        let entry = Entry {
            refs: 1,
            user: None,
            value,
        };
        self.live += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.entry = Some(entry);
            Key {
                index,
                gen: slot.gen,
                driver: self.driver,
            }
        } else {
            let index = u32::try_from(self.slots.len()).expect("more than 2^32 handles");
            self.slots.push(Slot {
                gen: 0,
                entry: Some(entry),
            });
            Key {
                index,
                gen: 0,
                driver: self.driver,
            }
        }
    }

    /// The entry behind `key`, if the key is current.
    pub fn entry(&self, key: Key) -> Option<&Entry<T>> {
        if key.driver != self.driver {
            return None;
        }
        let slot = self.slots.get(key.index as usize)?;
        if slot.gen != key.gen {
            return None;
        }
        slot.entry.as_ref()
    }

    /// The entry behind `key` mutably, if the key is current.
    pub fn entry_mut(&mut self, key: Key) -> Option<&mut Entry<T>> {
        if key.driver != self.driver {
            return None;
        }
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.gen != key.gen {
            return None;
        }
        slot.entry.as_mut()
    }

    /// The resource behind `key`.
    pub fn get(&self, key: Key) -> Option<&T> {
        self.entry(key).map(|e| &e.value)
    }

    /// The resource behind `key`, mutably.
    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        self.entry_mut(key).map(|e| &mut e.value)
    }

    /// Whether `key` names a live slot.
    pub fn contains(&self, key: Key) -> bool {
        self.entry(key).is_some()
    }

    /// Frees the slot and returns its entry; the key (and every copy of it) is
    /// stale from now on.
    pub fn remove(&mut self, key: Key) -> Option<Entry<T>> {
        if key.driver != self.driver {
            return None;
        }
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.gen != key.gen {
            return None;
        }
        let entry = slot.entry.take()?;
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(key.index);
        self.live -= 1;
        Some(entry)
    }

    /// The current key of slot `index`, if the slot is live.
    pub fn key_at(&self, index: u32) -> Option<Key> {
        let slot = self.slots.get(index as usize)?;
        slot.entry.as_ref()?;
        Some(Key {
            index,
            gen: slot.gen,
            driver: self.driver,
        })
    }

    /// Number of live slots.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Keys of all live slots.
    pub fn keys(&self) -> Vec<Key> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.entry.is_some())
            .map(|(i, s)| Key {
                index: i as u32,
                gen: s.gen,
                driver: self.driver,
            })
            .collect()
    }
}

/// Implemented by every typed handle ([`TimerId`](crate::TimerId),
/// [`StreamSocket`](crate::StreamSocket) …) so reference counting and user data
/// work the same way for all of them.
pub trait Handle: Copy + fmt::Debug + sealed::Sealed {
    #[doc(hidden)]
    fn kind(self) -> HandleKind;
    #[doc(hidden)]
    fn key(self) -> Key;
}

/// Which table a handle lives in.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleKind {
    Timer,
    Event,
    Stream,
    Listener,
    Datagram,
    Pipe,
    Signal,
    Process,
    File,
    Watcher,
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

macro_rules! define_handle {
    ($(#[$meta:meta])* $name:ident, $kind:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub(crate) $crate::handle::Key);

        impl $crate::handle::sealed::Sealed for $name {}

        impl $crate::handle::Handle for $name {
            fn kind(self) -> $crate::handle::HandleKind {
                $crate::handle::HandleKind::$kind
            }
            fn key(self) -> $crate::handle::Key {
                self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.0)
            }
        }
    };
}
#[allow(unused_imports)] // Unused on targets without a backend yet.
pub(crate) use define_handle;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_key_after_reuse_is_rejected() {
        let mut t = Table::new(7);
        let a = t.insert("a");
        assert_eq!(t.remove(a).map(|e| e.value), Some("a"));
        let b = t.insert("b");
        assert_eq!(a.index, b.index, "the slot is reused");
        assert!(t.get(a).is_none(), "the old key must not reach the new resource");
        assert_eq!(t.get(b), Some(&"b"));
        assert!(t.remove(a).is_none(), "double release is a no-op");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn key_of_another_driver_is_rejected() {
        let mut t1 = Table::new(1);
        let mut t2 = Table::new(2);
        let a = t1.insert(1);
        let _ = t2.insert(2);
        assert!(t2.get(a).is_none());
        assert!(t2.remove(a).is_none());
    }

    #[test]
    fn token_round_trip() {
        let mut t = Table::new(3);
        for _ in 0..5 {
            let k = t.insert(());
            t.remove(k);
        }
        let k = t.insert(());
        assert_eq!(Key::from_u64(k.to_u64(), 3), k);
    }

    #[test]
    fn slots_are_reused_without_growth() {
        let mut t = Table::new(0);
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
