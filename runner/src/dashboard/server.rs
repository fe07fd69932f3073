//! The dashboard's HTTP server ([`HttpServer`]): the page and its assets, `GET /api/state`,
//! `GET /api/bars/SYMBOL` and `GET /api/events` (HttpServer-Sent Events), on axum over a tokio
//! runtime of its own in the `dashboard-http` thread.
//!
//! Invariants: `GET` (and `HEAD`) only: any other method is a 405, on any path; an unknown
//! path or symbol is a 404 with a message; no handler changes the run (they read the board
//! under its lock and nothing else); a browser's event stream begins with the whole state
//! and then every change after it, in order, and ends after the run's `end`; one that
//! reads too slowly is told `resync` (what it missed is counted) rather than holding anyone
//! up; [`HttpServer::stop`] returns within [`STOP_GRACE`] and a second, whatever the browsers do.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, Method, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::assets::{APP_JS, CHARTS_JS, CHARTS_LICENCE, PAGE, STYLE};
use super::listener::Limited;
use super::shared::Shared;
use super::views::{self, Message};

/// How long a stop waits for the browsers' connections to end by themselves.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(2);

/// The server, running.
pub(crate) struct HttpServer {
    pub(crate) address: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    thread: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` (an error if it cannot) and serves the board of `shared`.
    pub(crate) fn start(addr: SocketAddr, shared: Arc<Shared>) -> Result<HttpServer> {
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("the dashboard cannot listen on {addr}"))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let app = router(shared).layer(axum::middleware::from_fn_with_state(
            Arc::new(Hosts::for_address(address)),
            guard,
        ));
        let thread = std::thread::Builder::new()
            .name("dashboard-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => Limited::new(l),
                        Err(e) => {
                            tracing::error!("dashboard not served: {e}");
                            return;
                        }
                    };
                    let mut graceful = stopped.clone();
                    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                        let _ = graceful.wait_for(|s| *s).await;
                    });
                    let cut_off = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                        tokio::time::sleep(STOP_GRACE).await;
                    };
                    let serve = std::pin::pin!(std::future::IntoFuture::into_future(serve));
                    let cut_off = std::pin::pin!(cut_off);
                    if let futures_util::future::Either::Left((Err(e), _)) =
                        futures_util::future::select(serve, cut_off).await
                    {
                        tracing::warn!("dashboard server: {e}");
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        tracing::info!("dashboard on http://{address}/");
        Ok(HttpServer {
            address,
            stop,
            thread,
        })
    }

    /// Stops serving: the browsers' streams have been told the end; connections still
    /// open after [`STOP_GRACE`] are cut.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }
}

/// The `Host` headers a request may carry: on loopback, only loopback names of the port, so
/// that a web page whose name an attacker points at 127.0.0.1 (DNS rebinding) is refused;
/// on another address, any.
struct Hosts(Option<Vec<String>>);

impl Hosts {
    fn for_address(address: SocketAddr) -> Hosts {
        let port = address.port();
        match address.ip().is_loopback() {
            true => Hosts(Some(vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
                address.to_string(),
            ])),
            false => Hosts(None),
        }
    }

    fn allow(&self, host: Option<&str>) -> bool {
        match (&self.0, host) {
            (None, _) => true,
            (Some(names), Some(host)) => names.iter().any(|n| n.eq_ignore_ascii_case(host)),
            (Some(_), None) => false,
        }
    }
}

/// Refuses a request whose `Host` is not the dashboard's own (see [`Hosts`]).
async fn guard(
    State(hosts): State<Arc<Hosts>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !hosts.allow(host) {
        return problem(
            StatusCode::FORBIDDEN,
            format!(
                "host {:?} is not this dashboard's: open it by its loopback address",
                host.unwrap_or_default()
            ),
        );
    }
    next.run(request).await
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { page(PAGE, "text/html; charset=utf-8") }),
        )
        .route("/app.js", get(|| async { page(APP_JS, "text/javascript") }))
        .route("/style.css", get(|| async { page(STYLE, "text/css") }))
        .route(
            "/lightweight-charts.js",
            get(|| async { page(CHARTS_JS, "text/javascript") }),
        )
        .route(
            "/lightweight-charts.LICENSE",
            get(|| async { page(CHARTS_LICENCE, "text/plain; charset=utf-8") }),
        )
        .route("/api/state", get(state))
        .route("/api/bars/{symbol}", get(bars))
        .route("/api/events", get(events))
        .fallback(fallback)
        .method_not_allowed_fallback(not_allowed)
        .with_state(shared)
}

fn page(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn json(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn problem(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn not_allowed(method: Method) -> Response {
    let mut r = problem(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed: the dashboard is read-only (GET only)"),
    );
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    r
}

async fn fallback(method: Method, uri: axum::http::Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return not_allowed(method).await;
    }
    problem(
        StatusCode::NOT_FOUND,
        format!(
            "no such page: {}; the API is /api/state, /api/bars/SYMBOL and /api/events",
            uri.path()
        ),
    )
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    let body = views::state(&shared.board.lock()).to_string();
    json(body)
}

async fn bars(
    State(shared): State<Arc<Shared>>,
    symbol: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(symbol)) = symbol else {
        return problem(
            StatusCode::NOT_FOUND,
            "malformed symbol in the path: /api/bars/SYMBOL".into(),
        );
    };
    let board = shared.board.lock();
    match views::bars(&board, &symbol) {
        Some(v) => {
            let body = v.to_string();
            drop(board);
            json(body)
        }
        None => {
            let known: Vec<&str> = board.symbols.iter().map(|s| s.symbol.as_str()).collect();
            problem(
                StatusCode::NOT_FOUND,
                format!(
                    "unknown symbol {symbol:?}: the run's symbols are {}",
                    known.join(", ")
                ),
            )
        }
    }
}

/// Where one browser's event stream is.
struct Reader {
    shared: Arc<Shared>,
    first: Option<SseEvent>,
    rx: tokio::sync::broadcast::Receiver<Message>,
    done: bool,
}

fn sse(m: &Message) -> SseEvent {
    SseEvent::default()
        .event(m.name)
        .id(m.seq.to_string())
        .data(&*m.data)
}

async fn events(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (first, rx, ended) = {
        let board = shared.board.lock();
        let first = Message::new(board.seq, "state", views::state(&board));
        // Subscribed under the lock: every change after this state comes, none before.
        (sse(&first), shared.events.subscribe(), board.ended)
    };
    let reader = Reader {
        shared,
        first: Some(first),
        rx,
        done: ended,
    };
    let stream = futures_util::stream::unfold(reader, |mut r| async move {
        if let Some(first) = r.first.take() {
            return Some((Ok(first), r));
        }
        if r.done {
            return None;
        }
        match r.rx.recv().await {
            Ok(m) => {
                r.done = m.name == "end";
                Some((Ok(sse(&m)), r))
            }
            Err(RecvError::Lagged(missed)) => {
                r.shared.board.lock().lagged_events += missed;
                let e = SseEvent::default()
                    .event("resync")
                    .data(serde_json::json!({ "missed": missed }).to_string());
                Some((Ok(e), r))
            }
            Err(RecvError::Closed) => None,
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
