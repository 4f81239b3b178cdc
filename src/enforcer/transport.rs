//! How the enforcer's requests reach the NAS: a UDP socket, or channels in
//! tests (so that paused tokio time drives retransmissions exactly).

use std::io;
use std::net::SocketAddr;

use async_trait::async_trait;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::radius::packet::MAX_PACKET;

/// Sends requests and receives answers.
#[async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, to: SocketAddr, packet: &[u8]) -> io::Result<()>;
    /// The next datagram and where it came from; `None` when the transport
    /// is gone.
    async fn recv(&mut self) -> Option<(SocketAddr, Vec<u8>)>;
}

/// The UDP socket CoA and Disconnect requests go out on.
pub struct UdpTransport {
    socket: UdpSocket,
    buffer: Vec<u8>,
}

impl UdpTransport {
    /// Binds to `source`, or to any address with a port the system picks.
    pub async fn bind(source: Option<SocketAddr>) -> io::Result<UdpTransport> {
        let address = source.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let socket = UdpSocket::bind(address).await?;
        Ok(UdpTransport {
            socket,
            buffer: vec![0; MAX_PACKET],
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

#[async_trait]
impl Transport for UdpTransport {
    async fn send(&self, to: SocketAddr, packet: &[u8]) -> io::Result<()> {
        self.socket.send_to(packet, to).await.map(drop)
    }

    async fn recv(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        loop {
            match self.socket.recv_from(&mut self.buffer).await {
                Ok((length, from)) => {
                    return Some((from, self.buffer.get(..length)?.to_vec()));
                }
                // An ICMP error from an earlier send: the socket is fine.
                Err(e) => tracing::debug!(error = %e, "enforcement: receive failed"),
            }
        }
    }
}

/// A transport over channels: what the enforcer sends comes out of
/// `sent`, and what is pushed into `replies` arrives as answers.
pub struct ChannelTransport {
    sent: mpsc::UnboundedSender<(SocketAddr, Vec<u8>)>,
    replies: mpsc::UnboundedReceiver<(SocketAddr, Vec<u8>)>,
}

/// The far side of a [`ChannelTransport`]: a NAS in a test.
pub struct ChannelPeer {
    pub sent: mpsc::UnboundedReceiver<(SocketAddr, Vec<u8>)>,
    pub replies: mpsc::UnboundedSender<(SocketAddr, Vec<u8>)>,
}

impl ChannelTransport {
    pub fn pair() -> (ChannelTransport, ChannelPeer) {
        let (sent_tx, sent_rx) = mpsc::unbounded_channel();
        let (replies_tx, replies_rx) = mpsc::unbounded_channel();
        (
            ChannelTransport {
                sent: sent_tx,
                replies: replies_rx,
            },
            ChannelPeer {
                sent: sent_rx,
                replies: replies_tx,
            },
        )
    }
}

#[async_trait]
impl Transport for ChannelTransport {
    async fn send(&self, to: SocketAddr, packet: &[u8]) -> io::Result<()> {
        self.sent
            .send((to, packet.to_vec()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the test NAS is gone"))
    }

    async fn recv(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.replies.recv().await
    }
}
