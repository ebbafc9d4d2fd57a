//! The sandbox's listener and connection type: connections can be cut from inside
//! a handler (so a `timeout` fault drops the connection without writing any
//! response), are closed after a spell of idleness, and are capped in number.
//!
//! Idleness and the cap live here, in the IO type, rather than in hyper: `axum::serve`
//! builds its own `hyper_util` connection builder, sets no timer (without which hyper's
//! `header_read_timeout` does nothing) and exposes neither; and the auto (HTTP/1 or 2)
//! builder it uses first sniffs the protocol version with no timeout at all, so a
//! client that connects and sends nothing would never be dropped by hyper anyway.
//! A byte-level rule also covers a client that stalls in the middle of a body.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Longest idle timeout honoured: deadline arithmetic on `Instant` panics on
/// overflow, and a year is as good as forever for a test server.
const IDLE_CEILING: Duration = Duration::from_secs(365 * 24 * 60 * 60);

#[derive(Default)]
struct ConnState {
    cut: AtomicBool,
    /// Requests the server is working on (latency, a held `timeout` fault): the
    /// client is rightly silent meanwhile, so the connection is not idle.
    busy: AtomicUsize,
}

/// Handed to handlers (as `ConnectInfo`): `cut()` makes every later read or write
/// on the connection fail, so hyper drops it without answering.
#[derive(Clone, Default)]
pub(crate) struct ConnHandle(Arc<ConnState>);

impl ConnHandle {
    pub(crate) fn cut(&self) {
        self.0.cut.store(true, Ordering::Release);
    }

    fn is_cut(&self) -> bool {
        self.0.cut.load(Ordering::Acquire)
    }

    /// Marks the connection as waiting on the server, not the client, until the
    /// guard is dropped.
    pub(crate) fn busy(&self) -> Busy<'_> {
        self.0.busy.fetch_add(1, Ordering::AcqRel);
        Busy(&self.0)
    }

    fn is_busy(&self) -> bool {
        self.0.busy.load(Ordering::Acquire) > 0
    }
}

pub(crate) struct Busy<'a>(&'a ConnState);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "dropped by the sandbox")
}

fn idle_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "idle connection closed by the sandbox",
    )
}

pub(crate) struct CuttableIo {
    inner: TcpStream,
    handle: ConnHandle,
    idle_limit: Duration,
    last_activity: Instant,
    /// Re-armed lazily when it fires rather than on every byte, which keeps the
    /// timer wheel out of the hot path.
    idle_timer: Pin<Box<Sleep>>,
    // Held only to be dropped with the connection: that frees a slot for `accept`.
    _permit: OwnedSemaphorePermit,
}

impl CuttableIo {
    fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    /// Counts bytes written as activity; a write that cannot proceed is
    /// watched for idleness, since a client that stops reading its answers is
    /// as idle as one that stops writing.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }

    /// Called when the socket has nothing to give or take: an error once no byte
    /// moved for `idle_limit` and no request is in the server's hands; else
    /// `Pending`, with the timer registered to wake the task.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.idle_timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            let due = if self.handle.is_busy() {
                now + self.idle_limit
            } else {
                self.last_activity + self.idle_limit
            };
            if due <= now {
                tracing::debug!(
                    "sandbox: closing a connection idle for {:?}",
                    self.idle_limit
                );
                // Later writes fail too, so hyper cannot half-answer on a dead connection.
                self.handle.cut();
                return Poll::Ready(idle_error());
            }
            self.idle_timer.as_mut().reset(due);
        }
    }
}

impl AsyncRead for CuttableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.handle.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for CuttableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.handle.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.handle.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.handle.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub(crate) struct CuttableListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    idle_limit: Duration,
}

impl CuttableListener {
    /// `max_connections` must be in `1..=Semaphore::MAX_PERMITS` (checked with the config).
    pub(crate) fn new(
        inner: TcpListener,
        max_connections: usize,
        idle_timeout: Duration,
    ) -> CuttableListener {
        CuttableListener {
            inner,
            slots: Arc::new(Semaphore::new(max_connections)),
            idle_limit: idle_timeout.min(IDLE_CEILING),
        }
    }
}

impl Listener for CuttableListener {
    type Io = CuttableIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // Waiting for a slot *before* accepting leaves the surplus in the kernel's
        // backlog (and, once that is full, refused) instead of holding their buffers here.
        let Ok(permit) = Arc::clone(&self.slots).acquire_owned().await else {
            // Only a closed semaphore fails, and this one is never closed: accept
            // nothing rather than panic.
            return std::future::pending().await;
        };
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!("sandbox: cannot set TCP_NODELAY: {e}");
                    }
                    let now = Instant::now();
                    let io = CuttableIo {
                        inner: stream,
                        handle: ConnHandle::default(),
                        idle_limit: self.idle_limit,
                        last_activity: now,
                        idle_timer: Box::pin(tokio::time::sleep_until(now + self.idle_limit)),
                        _permit: permit,
                    };
                    return (io, addr);
                }
                Err(e) => {
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) {
                        continue;
                    }
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("sandbox: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl Connected<IncomingStream<'_, CuttableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, CuttableListener>) -> Self {
        stream.io().handle.clone()
    }
}
