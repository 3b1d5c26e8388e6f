//! A flood of QUIC Initial packets that nobody will answer: what a relay sees when someone
//! sends connection attempts from spoofed addresses. Each packet is a real client's first
//! datagram (made by `quinn-proto` without a socket, so each has its own connection ids),
//! sent from many loopback addresses and never followed up.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use quinn_proto::{Endpoint, EndpointConfig};
use rapport_wire::identity::Identity;

/// `count` distinct Initial datagrams opening connections to the relay at `relay`.
pub fn initials(relay: SocketAddr, fingerprint: [u8; 32], count: usize) -> Result<Vec<Vec<u8>>> {
    let identity = Identity::generate("flood")?;
    let config = rapport_wire::tls::client_config(&identity, fingerprint)?;
    let mut endpoint = Endpoint::new(Arc::new(EndpointConfig::default()), None, false, None);
    let now = Instant::now();
    let mut packets = Vec::with_capacity(count);
    for _ in 0..count {
        let (_, mut connection) = endpoint
            .connect(now, config.clone(), relay, "rapport-relay")
            .context("cannot start a connection attempt")?;
        let mut buf = Vec::new();
        let transmit = connection
            .poll_transmit(now, 1, &mut buf)
            .context("no Initial to send")?;
        buf.truncate(transmit.size);
        packets.push(buf);
    }
    Ok(packets)
}

/// Sends `packets` to `relay`, spread over `sources` loopback addresses (127.0.0.2 on),
/// without reading anything back. Returns the sockets, so the relay's answers reach an
/// open port (and are ignored) for as long as the caller keeps them.
pub async fn send_from_many(
    relay: SocketAddr,
    packets: &[Vec<u8>],
    sources: u8,
) -> Result<Vec<tokio::net::UdpSocket>> {
    let mut sockets = Vec::with_capacity(usize::from(sources));
    for i in 0..sources.max(1) {
        let source = Ipv4Addr::new(127, 0, 0, 2 + i % 250);
        sockets.push(tokio::net::UdpSocket::bind((source, 0)).await?);
    }
    for (i, packet) in packets.iter().enumerate() {
        sockets[i % sockets.len()].send_to(packet, relay).await?;
    }
    Ok(sockets)
}
