//! Virtio split rings, driver side, over one identity-mapped arena.
//!
//! [`arena`] is the memory (rings and packet buffers) that the device —
//! kernel vhost-net or vtap's userspace backend — reads and writes;
//! [`split`] is the ring protocol itself.

pub mod arena;
pub mod split;

pub use arena::Arena;
pub use split::{DriverQueue, RingAddrs, RingState, Segment};
