//! A hub on another machine, reached over NATS JetStream: the names both ends use
//! ([`wire`]), and the backend of a remote runner's worker (`RemoteBackend`, with the
//! `nats` feature): requests to the hub's door, live bars from durable consumers of the
//! hub's stream, this client's own events from one more.

#[cfg(feature = "nats")]
mod backend;
#[cfg(feature = "nats")]
mod door;
#[cfg(feature = "nats")]
mod feed;
pub mod wire;

#[cfg(feature = "nats")]
pub use backend::RemoteBackend;
