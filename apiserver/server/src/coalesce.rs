//! Write coalescing for HTTP/2 connections.
//!
//! hyper's HTTP/2 server writes a connection's frames whenever its task runs, and that task is
//! woken by every stream that has data: an event fanned out to 250 watches multiplexed on one
//! connection went out as 250 writes of one small frame each (250 TLS records, 250 `writev`s,
//! 250 loopback segments and reader wake-ups) — as many as 250 HTTP/1.1 connections cost.
//! [`Coalesce`] buffers what the connection writes and, on a flush, first lets the work
//! already woken run (it yields: the task is queued behind the ones already woken, such as the
//! other watches' stream tasks), again as long as that added frames (up to 16 times or 64 KiB),
//! then writes everything buffered in one go. Under load the frames of many streams share a
//! few records and one syscall; alone, a frame waits one pass of the scheduler's queue.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Buffered bytes past which writes go through without waiting for a flush (a TLS record is
/// 16 KiB; a few records per syscall).
const CAP: usize = 64 * 1024;
/// Yields of one flush at most (each while frames keep coming).
const MAX_YIELDS: u8 = 16;
/// Buffer capacity a connection keeps between bursts.
const KEEP: usize = 8 * 1024;

/// See the module documentation.
pub struct Coalesce<S> {
    inner: S,
    buf: Vec<u8>,
    /// Bytes of `buf` already written to `inner`.
    sent: usize,
    /// How many times this flush yielded, and the buffered length at its last yield.
    yields: u8,
    len_at_yield: usize,
}

impl<S> Coalesce<S> {
    /// `inner` with coalesced writes.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            sent: 0,
            yields: 0,
            len_at_yield: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes out everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        // A burst's large buffer is not kept by a connection that goes idle.
        if self.buf.capacity() > KEEP {
            self.buf = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() >= CAP {
            ready!(this.poll_drain(cx))?;
        }
        // Below CAP here (drained above), so there is room for at least one byte.
        let room = CAP - this.buf.len();
        let mut taken = 0;
        for b in bufs {
            let n = b.len().min(room - taken);
            this.buf.extend_from_slice(&b[..n]);
            taken += n;
            if taken == room {
                break;
            }
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Let the work already woken run first (it may add frames), again while it does.
        let growing = this.yields == 0 || this.buf.len() > this.len_at_yield;
        if this.sent < this.buf.len() && growing && this.yields < MAX_YIELDS && this.buf.len() < CAP
        {
            this.yields += 1;
            this.len_at_yield = this.buf.len();
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_drain(cx))?;
        this.yields = 0;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// An inner writer that records each write it receives.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }

        fn poll_flush(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn frames_written_before_a_flush_go_out_in_one_write_after_the_yields() {
        let mut c = Coalesce::new(Recorder::default());
        c.write_all(b"frame-1;").await.unwrap();
        c.write_all(b"frame-2;").await.unwrap();
        assert!(c.inner.writes.is_empty(), "nothing written before a flush");
        // The first poll of the flush yields (and wakes itself); the next one writes.
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_pending());
        // More frames came while it yielded: it yields again; none: it writes.
        c.write_all(b"frame-3;").await.unwrap();
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_pending());
        assert!(c.inner.writes.is_empty());
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_ready());
        assert_eq!(c.inner.writes, vec![b"frame-1;frame-2;frame-3;".to_vec()]);
        assert_eq!(c.inner.flushes, 1);
        // Flushing with nothing buffered does not yield.
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_ready());
    }

    #[tokio::test]
    async fn a_flush_yields_a_bounded_number_of_times() {
        let mut c = Coalesce::new(Recorder::default());
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut pending = 0;
        loop {
            c.write_all(b"more;").await.unwrap();
            if Pin::new(&mut c).poll_flush(&mut cx).is_ready() {
                break;
            }
            pending += 1;
            assert!(pending <= usize::from(MAX_YIELDS), "a flush must end");
        }
        assert_eq!(pending, usize::from(MAX_YIELDS));
        assert_eq!(c.inner.writes.len(), 1);
    }

    #[tokio::test]
    async fn a_large_write_goes_through_in_bounded_pieces_and_shutdown_drains() {
        let mut c = Coalesce::new(Recorder::default());
        let big = vec![7u8; 3 * CAP + 5];
        c.write_all(&big).await.unwrap();
        c.write_all(b"tail").await.unwrap();
        c.shutdown().await.unwrap();
        let all: Vec<u8> = c.inner.writes.concat();
        assert_eq!(all.len(), big.len() + 4);
        assert!(all.ends_with(b"tail"));
        assert!(c.inner.writes.iter().all(|w| w.len() <= CAP));
        assert!(c.buf.is_empty());
    }
}
