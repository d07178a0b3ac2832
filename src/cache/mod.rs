//! Cache coherence for the per-node caches: the MESI protocol's transition
//! table (`mesi`), the pure core that the cache controllers (a snooping-bus
//! protocol and a directory protocol) call to decide every state change,
//! and the pieces those controllers build on it.
pub mod bus;
pub mod lines;
pub mod load;
pub mod mesi;
