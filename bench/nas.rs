//! A NAS's CoA / Disconnect port that ACKs everything and counts: how
//! many requests, for how many distinct sessions, when the first and the
//! last came, and the most it received in any one second, to check the
//! enforcer's per-NAS rate limit.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use liberad::radius::packet::{self, Attributes, attr, code};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, clap::Args)]
pub struct NasArgs {
    /// Where to listen, e.g. 127.0.0.1:3799.
    #[arg(long)]
    pub listen: SocketAddr,
    #[arg(long, default_value = "testing123")]
    pub secret: String,
    /// Stop once this many distinct sessions were told.
    #[arg(long)]
    pub expect: Option<u64>,
    /// Stop after this many seconds without a request (once one came).
    #[arg(long, default_value_t = 5.0)]
    pub idle: f64,
    /// Stop after this many seconds in all.
    #[arg(long, default_value_t = 3600.0)]
    pub limit: f64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NasReport {
    pub requests: u64,
    /// Requests seen before (byte-identical retransmissions).
    #[serde(default)]
    pub retransmissions: u64,
    pub sessions: u64,
    /// Requests that did not authenticate with the secret.
    pub invalid: u64,
    /// Wall-clock instants (Unix seconds) of the first and last request.
    pub first_at: f64,
    pub last_at: f64,
    /// New requests (retransmissions apart) in the busiest second, sliding.
    pub max_per_second: u64,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn run(args: &NasArgs) -> std::io::Result<NasReport> {
    let socket = UdpSocket::bind(args.listen)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let secret = args.secret.as_bytes();
    let mut report = NasReport::default();
    let mut sessions: HashSet<Vec<u8>> = HashSet::new();
    let mut seen: HashSet<[u8; 16]> = HashSet::new();
    let mut window: std::collections::VecDeque<Instant> = std::collections::VecDeque::new();
    let started = Instant::now();
    let mut last = None::<Instant>;
    let mut buffer = [0u8; 4096];
    loop {
        let now = Instant::now();
        if now.duration_since(started).as_secs_f64() > args.limit {
            break;
        }
        if let Some(last) = last
            && now.duration_since(last).as_secs_f64() > args.idle
        {
            break;
        }
        if args.expect.is_some_and(|n| sessions.len() as u64 >= n) {
            break;
        }
        let (size, from) = match socket.recv_from(&mut buffer) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => return Err(e),
        };
        let request = &buffer[..size];
        let arrived = Instant::now();
        if report.requests == 0 {
            report.first_at = unix_now();
        }
        report.last_at = unix_now();
        last = Some(arrived);
        report.requests += 1;
        // The rate limit is on new requests: a retransmission is counted
        // apart, not in the window.
        let new = request
            .get(4..20)
            .and_then(|a| <[u8; 16]>::try_from(a).ok())
            .is_none_or(|authenticator| seen.insert(authenticator));
        if !new {
            report.retransmissions += 1;
        } else {
            window.push_back(arrived);
        }
        while window
            .front()
            .is_some_and(|&t| arrived.duration_since(t) >= Duration::from_secs(1))
        {
            window.pop_front();
        }
        report.max_per_second = report.max_per_second.max(window.len() as u64);
        if size < packet::HEADER || !request_authentic(request, secret) {
            report.invalid += 1;
            continue;
        }
        if let Some((_, id)) = Attributes::over(request).find(|(t, _)| *t == attr::ACCT_SESSION_ID)
        {
            sessions.insert(id.to_vec());
        }
        let reply_code = if request[0] == code::DISCONNECT_REQUEST {
            code::DISCONNECT_ACK
        } else {
            code::COA_ACK
        };
        let authenticator: [u8; 16] = request[4..20].try_into().expect("header");
        if let Some(mut reply) = packet::encode(reply_code, request[1], &authenticator, &[]) {
            packet::sign_reply(&mut reply, &authenticator, secret);
            let _ = socket.send_to(&reply, from);
        }
    }
    report.sessions = sessions.len() as u64;
    Ok(report)
}

/// A CoA or Disconnect request's authenticator is MD5 over the packet with
/// a zero authenticator and the secret (RFC 5176 §3.5).
fn request_authentic(request: &[u8], secret: &[u8]) -> bool {
    let mut copy = request.to_vec();
    packet::sign_request(&mut copy, secret);
    copy[4..20] == request[4..20]
}

impl NasReport {
    pub fn print(&self) {
        println!(
            "{} requests ({} of them retransmissions) for {} sessions ({} invalid) over {:.2} s; \
             at most {} new ones in one second",
            self.requests,
            self.retransmissions,
            self.sessions,
            self.invalid,
            self.last_at - self.first_at,
            self.max_per_second
        );
    }
}
