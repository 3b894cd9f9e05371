//! A TCP proxy in front of one node's peer port, under the test's control. A node
//! advertised at the proxy's address (ADDR) and listening behind it (LISTEN_ADDR)
//! is reached by its peers only through it. The proxy can delay every chunk,
//! cut all traffic, or cut only connections from given source IPs (each node
//! sends its peer calls from its own LISTEN_ADDR IP), which is how a test makes a
//! partition: cut exactly the links that cross it. Cut links either refuse
//! (connections closed at once) or blackhole (bytes silently dropped: timeouts).
//! A link can also lose one direction only (`drop_requests_from`,
//! `drop_replies_to`): the connection stays up and the other direction's bytes
//! still arrive, which is how a one-way cut looks to both ends.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CutMode {
    /// Close connections and refuse new ones: peers see failures at once.
    #[default]
    Refuse,
    /// Accept but drop every byte: peers see timeouts.
    Blackhole,
}

#[derive(Debug, Clone, Default)]
struct Cuts {
    everything: bool,
    sources: HashSet<IpAddr>,
    mode: CutMode,
    /// Connections from these sources lose what they send (the requests).
    requests_lost: HashSet<IpAddr>,
    /// Connections from these sources lose what they are sent (the replies).
    replies_lost: HashSet<IpAddr>,
}

impl Cuts {
    fn cuts(&self, source: IpAddr) -> bool {
        self.everything || self.sources.contains(&source)
    }

    fn loses(&self, source: IpAddr, upstream: bool) -> bool {
        if upstream {
            self.requests_lost.contains(&source)
        } else {
            self.replies_lost.contains(&source)
        }
    }
}

pub struct Proxy {
    pub port: u16,
    delay_ms: Arc<AtomicU64>,
    cuts: watch::Sender<Cuts>,
    task: tokio::task::JoinHandle<()>,
    forwarded: Arc<Mutex<Vec<u8>>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (cuts, cuts_watch) = watch::channel(Cuts::default());
        let forwarded = Arc::new(Mutex::new(Vec::new()));
        let (delay, record) = (delay_ms.clone(), forwarded.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, from)) = listener.accept().await else {
                    return;
                };
                let link = Link {
                    source: from.ip(),
                    delay: delay.clone(),
                    cuts: cuts_watch.clone(),
                    record: record.clone(),
                };
                let target = target.clone();
                tokio::spawn(async move {
                    if link.is_cut() && link.mode() == CutMode::Refuse {
                        return;
                    }
                    if let Ok(outbound) = TcpStream::connect(&target).await {
                        link.forward(inbound, outbound).await;
                    }
                });
            }
        });
        Proxy {
            port,
            delay_ms,
            cuts,
            task,
            forwarded,
        }
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Cuts every connection until `heal`.
    pub fn cut(&self, mode: CutMode) {
        self.cuts.send_modify(|cuts| {
            cuts.everything = true;
            cuts.mode = mode;
        });
    }

    /// Cuts connections from `source` until `heal`.
    pub fn cut_from(&self, source: IpAddr, mode: CutMode) {
        self.cuts.send_modify(|cuts| {
            cuts.sources.insert(source);
            cuts.mode = mode;
        });
    }

    /// Until `heal`, bytes that connections from `source` send towards the
    /// target vanish; the target's bytes back to `source` still arrive.
    pub fn drop_requests_from(&self, source: IpAddr) {
        self.cuts.send_modify(|cuts| {
            cuts.requests_lost.insert(source);
        });
    }

    /// Until `heal`, bytes the target sends back on connections from `source`
    /// vanish; what `source` sends still arrives.
    pub fn drop_replies_to(&self, source: IpAddr) {
        self.cuts.send_modify(|cuts| {
            cuts.replies_lost.insert(source);
        });
    }

    pub fn heal(&self) {
        self.cuts.send_replace(Cuts::default());
    }

    /// Whether `marker` appeared in the bytes sent towards the target (recorded
    /// when read, before any delay).
    pub fn has_seen(&self, marker: &str) -> bool {
        let forwarded = self.forwarded.lock().unwrap();
        forwarded
            .windows(marker.len())
            .any(|window| window == marker.as_bytes())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut(CutMode::Refuse);
    }
}

/// One accepted connection's view of the controls.
#[derive(Clone)]
struct Link {
    source: IpAddr,
    delay: Arc<AtomicU64>,
    cuts: watch::Receiver<Cuts>,
    record: Arc<Mutex<Vec<u8>>>,
}

impl Link {
    fn is_cut(&self) -> bool {
        self.cuts.borrow().cuts(self.source)
    }

    fn mode(&self) -> CutMode {
        self.cuts.borrow().mode
    }

    fn loses(&self, upstream: bool) -> bool {
        self.cuts.borrow().loses(self.source, upstream)
    }

    async fn forward(self, inbound: TcpStream, outbound: TcpStream) {
        // Without this, Nagle's algorithm and delayed ACKs add ~40 ms per hop.
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let (in_read, in_write) = inbound.into_split();
        let (out_read, out_write) = outbound.into_split();
        let up = self.clone().pump(in_read, out_write, true);
        let down = self.pump(out_read, in_write, false);
        let _ = tokio::join!(up, down);
    }

    async fn pump(
        mut self,
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        upstream: bool,
    ) {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = tokio::select! {
                read = from.read(&mut buffer) => read,
                changed = self.cuts.changed() => {
                    if changed.is_err() || (self.is_cut() && self.mode() == CutMode::Refuse) {
                        return;
                    }
                    continue;
                }
            };
            let Ok(count) = read else { return };
            if count == 0 {
                let _ = to.shutdown().await;
                return;
            }
            if self.is_cut() || self.loses(upstream) {
                continue; // blackholed, or this direction lost: the bytes vanish
            }
            if upstream {
                self.record.lock().unwrap().extend_from_slice(&buffer[..count]);
            }
            let pause = self.delay.load(Ordering::SeqCst);
            if pause > 0 {
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            if to.write_all(&buffer[..count]).await.is_err() {
                return;
            }
        }
    }
}
