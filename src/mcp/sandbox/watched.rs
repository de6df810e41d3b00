//! A relayed stream that notes when it last moved a byte and how many it moved: what the
//! proxy's idle timeout and the byte counts in `/metrics` read. Tunnels are opaque (TLS end to
//! end), so the bytes themselves are the only activity there is to watch.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The last time any stream watched by it moved a byte (shared by both ends of a relay), and
/// the bytes read from and written to the one end it counts (the destination).
#[derive(Clone)]
pub struct Activity {
    origin: Instant,
    /// Milliseconds from `origin` to the last byte moved.
    last: Arc<AtomicU64>,
    read: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            origin: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
            read: Arc::new(AtomicU64::new(0)),
            written: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Bytes read from and written to the counted end so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.read.load(Ordering::Relaxed),
            self.written.load(Ordering::Relaxed),
        )
    }

    fn touch(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    /// Resolves once no byte has moved for `limit`.
    pub async fn idle(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            let quiet = self.origin.elapsed().saturating_sub(last);
            if quiet >= limit {
                return;
            }
            tokio::time::sleep(limit - quiet).await;
        }
    }

    /// `inner`, its bytes counted and its activity noted.
    pub fn counted<S>(&self, inner: S) -> Watched<S> {
        Watched {
            inner,
            activity: self.clone(),
            counted: true,
        }
    }

    /// `inner`, its activity noted only.
    pub fn watched<S>(&self, inner: S) -> Watched<S> {
        Watched {
            inner,
            activity: self.clone(),
            counted: false,
        }
    }

    fn moved(&self, counter: &AtomicU64, n: usize, counted: bool) {
        if counted {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        self.touch();
    }
}

pub struct Watched<S> {
    inner: S,
    activity: Activity,
    counted: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.activity.moved(&self.activity.read, n, self.counted);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            self.activity.moved(&self.activity.written, n, self.counted);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_are_counted_on_one_end_and_idle_waits_for_quiet_after_the_last() {
        let activity = Activity::new();
        let (a, mut b) = tokio::io::duplex(64);
        let (c, _d) = tokio::io::duplex(64);
        let mut a = activity.counted(a);
        let mut c = activity.watched(c);
        a.write_all(b"hello").await.unwrap();
        b.write_all(b"hi").await.unwrap();
        let mut got = [0u8; 2];
        a.read_exact(&mut got).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.write_all(b"not counted").await.unwrap();
        let last = Instant::now();
        assert_eq!(activity.counts(), (2, 5));
        let limit = Duration::from_millis(300);
        // A hang guard only.
        tokio::time::timeout(Duration::from_secs(30), activity.idle(limit))
            .await
            .unwrap();
        // Never before a whole limit of quiet after the last byte (1 ms for the rounding),
        // though the first bytes are older than that.
        let quiet = last.elapsed();
        assert!(quiet + Duration::from_millis(1) >= limit, "{quiet:?}");
    }
}
