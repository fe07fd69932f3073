//! A session as Python holds it ([`Core`]): the configuration, and once connected the
//! runner's supervisor over this library's workers, the pump of live bars and the pool that
//! asynchronous calls wait on.
//!
//! - [`lifecycle`]: the session's one state (idle, connecting, connected, closing, closed,
//!   forgotten) and its transitions;
//! - [`inner`]: the session under its Python object, the steps of a connect, the calls that go
//!   through the supervisor, and close;
//! - [`program`]: how a session starts its workers;
//! - [`subscriptions`]: the symbols streamed, by subscription id;
//! - [`calls`]: how blocking and asynchronous calls wait and answer;
//! - [`trading`]: orders through the runner's trader, with the events of the orders;
//! - [`arguments`]: the checks of what Python passes;
//! - [`methods`]: the Python class and its methods.
//!
//! Invariants: once `close` has returned no worker of the session runs (a connect or a
//! replacement under way stops the worker it started) and the stream has ended; a session
//! dropped unclosed is closed on a thread of its own; a session inherited by a forked child
//! is forgotten there, never closed (its worker is the parent's).

mod arguments;
mod calls;
mod inner;
mod lifecycle;
mod methods;
mod program;
mod subscriptions;
mod trading;

pub(crate) use methods::Core;
pub(crate) use program::remember_image;
