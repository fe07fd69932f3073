//! The worker's main loop.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{ErrorKind, Event, Reply, Request};
use bridge::{channel, Incoming, RecvError, Responder, Server, StartError};

use crate::backend::{error, Backend, EventSink};
use crate::options::{BackendOptions, WorkerOptions};
use crate::sim::SimBackend;

/// How long a reply may wait for ring space before the runner is considered stuck.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a worker stopped with an error.
#[derive(Debug)]
#[non_exhaustive]
pub enum WorkerError {
    /// The options in the environment are missing or unreadable.
    Options(String),
    /// Attaching to the runner failed.
    Attach(StartError),
    /// The configured backend is not available in this build.
    Backend(String),
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerError::Options(e) => write!(f, "worker options: {e}"),
            WorkerError::Attach(e) => write!(f, "cannot attach to the runner: {e}"),
            WorkerError::Backend(e) => write!(f, "backend: {e}"),
        }
    }
}

impl std::error::Error for WorkerError {}

/// Runs a worker: reads its options from the environment, attaches to the runner, serves
/// requests until the runner shuts it down, closes, or dies; then disconnects from the broker.
pub fn run() -> Result<(), WorkerError> {
    let text = std::env::var(crate::OPTIONS_ENV)
        .map_err(|_| WorkerError::Options(format!("{} is not set", crate::OPTIONS_ENV)))?;
    let options = WorkerOptions::decode(&text).map_err(|e| WorkerError::Options(e.to_string()))?;
    serve(options)
}

fn serve(options: WorkerOptions) -> Result<(), WorkerError> {
    let cfg = channel::Config {
        heartbeat_interval: Duration::from_millis(options.heartbeat_ms.max(1)),
        hang_timeout: Duration::from_millis(options.hang_timeout_ms.max(1)),
        build_id: options.build_id.clone(),
        ..channel::Config::default()
    };
    let mut server = Server::attach(&cfg, REPLY_TIMEOUT).map_err(WorkerError::Attach)?;
    let responder = server.responder();
    crate::logging::install(responder.clone(), options.log_level);

    let events: EventSink = {
        let responder = responder.clone();
        Arc::new(move |event: Event| {
            if let Err(e) = responder.event(event) {
                tracing::warn!("event not delivered: {e}");
            }
        })
    };
    let backend: Arc<dyn Backend> = match &options.backend {
        BackendOptions::Sim(sim) => {
            Arc::new(SimBackend::new(sim.clone(), options.generation, events))
        }
        BackendOptions::Ibkr(ib) => Arc::new(
            crate::ibkr::IbkrBackend::new(ib.clone(), events).map_err(WorkerError::Backend)?,
        ),
    };
    tracing::info!(
        pid = std::process::id(),
        generation = options.generation,
        backend = backend.name(),
        "worker attached"
    );

    let reply_delay = match &options.backend {
        BackendOptions::Sim(sim) => Duration::from_millis(sim.faults.reply_delay_ms),
        BackendOptions::Ibkr(_) => Duration::ZERO,
    };
    let (work_tx, work_rx) = crossbeam_channel::unbounded::<Incoming>();
    for i in 0..options.handler_threads.max(1) {
        let rx = work_rx.clone();
        let backend = backend.clone();
        let responder = responder.clone();
        let handshake = options.handshake_timeout();
        let spawned = std::thread::Builder::new()
            .name(format!("worker-handler-{i}"))
            .spawn(move || {
                for incoming in rx {
                    if !reply_delay.is_zero() {
                        std::thread::sleep(reply_delay);
                    }
                    handle(&*backend, &responder, incoming, handshake);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start handler thread {i}: {e}");
        }
    }

    let why = loop {
        match server.next(Duration::from_secs(1)) {
            Ok(Some(Incoming {
                id,
                request: Request::Ping { payload },
            })) => {
                // Answered inline: a ping measures the bridge, not the handler pool.
                let _ = responder.reply(id, Reply::Pong { payload });
            }
            Ok(Some(Incoming {
                id,
                request: Request::Shutdown,
            })) => {
                backend.disconnect();
                let _ = responder.reply(id, Reply::ShuttingDown);
                break "shutdown requested".to_string();
            }
            Ok(Some(incoming)) => {
                let _ = work_tx.send(incoming);
            }
            Ok(None) => {}
            Err(RecvError::PeerGone(reason)) => break format!("runner gone: {reason}"),
            Err(e) => break e.to_string(),
        }
    };
    tracing::info!("worker stopping: {why}");
    backend.disconnect();
    drop(work_tx);
    server.control().close();
    Ok(())
}

fn handle(backend: &dyn Backend, responder: &Responder, incoming: Incoming, handshake: Duration) {
    let Incoming { id, request } = incoming;
    let reply = match request {
        Request::Connect => match backend.connect(handshake) {
            Ok((accounts, next_order_id)) => Reply::Connected {
                accounts,
                next_order_id,
            },
            Err(e) => Reply::Error(e),
        },
        Request::Accounts => match backend.accounts() {
            Ok(a) => Reply::Accounts(a),
            Err(e) => Reply::Error(e),
        },
        Request::History(req) => {
            let mut emit = |bars| responder.reply(id, Reply::Bars(bars)).is_ok();
            match backend.history(&req, &mut emit) {
                Ok(count) => Reply::HistoryEnd { count },
                Err(e) => {
                    tracing::debug!(symbol = %req.symbol, "history failed: {e}");
                    Reply::Error(e)
                }
            }
        }
        Request::Subscribe(req) => match backend.subscribe(&req) {
            Ok(()) => Reply::Subscribed,
            Err(e) => Reply::Error(e),
        },
        Request::Unsubscribe { symbol } => match backend.unsubscribe(&symbol) {
            Ok(()) => Reply::Unsubscribed,
            Err(e) => Reply::Error(e),
        },
        Request::Ping { payload } => Reply::Pong { payload },
        Request::Shutdown => Reply::Error(error(ErrorKind::BadRequest, "shutdown is not pooled")),
    };
    if let Err(e) = responder.reply(id, reply) {
        tracing::warn!(id, "reply not delivered: {e}");
    }
}
