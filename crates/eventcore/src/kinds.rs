//! The handle kinds, declared once.
//!
//! One list names every kind of user-visible handle with its table, the
//! driver method that destroys one (the last `release_ref`), whether the
//! driver closes the kind's live handles itself when it is dropped (those
//! with OS registrations to withdraw first), and how the leak report counts
//! it. From that list come [`HandleKind`], the driver's [`Tables`], the
//! reference counting of every kind, [`LeakReport`] and its text, the kind
//! dispatch of a release and the order in which a dropped driver closes
//! what is left. A new kind of handle is one line here (and its
//! `define_handle!` and `destroy_*`).

macro_rules! handle_kinds {
    ($(
        $(#[$doc:meta])*
        $kind:ident => $table:ident: $state:ty, destroy: $destroy:ident, close_on_drop: $close:literal, counted_as: $label:literal;
    )*) => {
        /// Which table a handle lives in.
        #[doc(hidden)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum HandleKind {
            $($kind,)*
        }

        /// The table of every handle kind, each named as the leak report
        /// counts it.
        #[cfg(eventcore_backend)]
        pub(crate) struct Tables {
            $(pub(crate) $table: crate::handle::Handles<$state>,)*
        }

        #[cfg(eventcore_backend)]
        impl Tables {
            pub(crate) fn new(driver: u32) -> Tables {
                Tables {
                    $($table: crate::handle::Table::new(driver),)*
                }
            }

            /// The reference count of a live handle.
            pub(crate) fn refs_mut(&mut self, kind: HandleKind, key: crate::handle::Key) -> Option<&mut u32> {
                match kind {
                    $(HandleKind::$kind => self.$table.header_mut(key).map(|(refs, _)| refs),)*
                }
            }
        }

        /// Live handles and pending operations of a driver (see
        /// [`Driver::leak_report`](crate::Driver::leak_report)).
        #[cfg(eventcore_backend)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct LeakReport {
            $($(#[$doc])* pub $table: usize,)*
            /// Pending operations (callbacks that have not run).
            pub operations: usize,
        }

        #[cfg(eventcore_backend)]
        impl LeakReport {
            pub(crate) fn of(tables: &Tables, operations: usize) -> LeakReport {
                LeakReport {
                    $($table: tables.$table.len(),)*
                    operations,
                }
            }

            /// Whether nothing is open.
            pub fn is_empty(&self) -> bool {
                *self == LeakReport::default()
            }
        }

        #[cfg(eventcore_backend)]
        impl std::fmt::Display for LeakReport {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                $(write!(f, "{} {}, ", self.$table, $label)?;)*
                write!(f, "{} pending operations", self.operations)
            }
        }

        #[cfg(eventcore_backend)]
        impl crate::Driver {
            /// Destroys the resource of a handle whose last reference went.
            pub(crate) fn destroy(&mut self, kind: HandleKind, key: crate::handle::Key) {
                match kind {
                    $(HandleKind::$kind => self.$destroy(key),)*
                }
            }

            /// Closes the live handles of the kinds that must withdraw OS
            /// registrations before their tables are dropped (the driver is
            /// being dropped), in the order of the list.
            pub(crate) fn close_all(&mut self) {
                $(
                    if $close {
                        for key in self.tables.$table.keys() {
                            self.$destroy(key);
                        }
                    }
                )*
            }
        }
    };
}

handle_kinds! {
    /// Live timers.
    Timer => timers: crate::timers::TimerState, destroy: destroy_timer, close_on_drop: false, counted_as: "timers";
    /// Live events.
    Event => events: crate::events::EventState, destroy: destroy_event, close_on_drop: false, counted_as: "events";
    /// Live stream sockets (TCP and Unix).
    Stream => streams: crate::sockets::StreamState, destroy: destroy_stream, close_on_drop: true, counted_as: "streams";
    /// Live listening sockets.
    Listener => listeners: crate::sockets::ListenerState, destroy: destroy_listener, close_on_drop: true,
        counted_as: "listeners";
    /// Live datagram sockets.
    Datagram => datagrams: crate::sockets::DatagramState, destroy: destroy_datagram, close_on_drop: true,
        counted_as: "datagram sockets";
    /// Live pipes.
    Pipe => pipes: crate::pipes::PipeState, destroy: destroy_pipe, close_on_drop: true, counted_as: "pipes";
    /// Live signal listeners.
    Signal => signals: crate::signals::SignalState, destroy: destroy_signal, close_on_drop: true,
        counted_as: "signal listeners";
    /// Live process handles.
    Process => processes: crate::processes::ProcessState, destroy: destroy_process, close_on_drop: true,
        counted_as: "processes";
    /// Open files.
    File => files: crate::files::FileState, destroy: destroy_file, close_on_drop: false, counted_as: "files";
    /// Active directory watchers.
    Watcher => watchers: crate::watchers::WatcherState, destroy: destroy_watcher, close_on_drop: true,
        counted_as: "watchers";
    /// Registered foreign descriptors (and Windows kernel objects).
    Poll => polls: crate::poll::PollState, destroy: destroy_poll, close_on_drop: true,
        counted_as: "foreign descriptors";
}
