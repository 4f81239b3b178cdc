//! The load generator: an open-loop RADIUS client on one thread, polling
//! non-blocking sockets so that it never waits on the server it measures.
//!
//! Requests go out at a set rate (or as fast as the window of requests in
//! flight allows), over several source sockets (256 identifiers each),
//! for many distinct logins; unanswered ones are retransmitted identically
//! after a timeout, then given up. Each answer is checked (identifier,
//! Response Authenticator, Message-Authenticator) and its latency kept.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use liberad::radius::packet::{self, attr, code};
use serde::{Deserialize, Serialize};

/// What to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Access-Request with PAP and Message-Authenticator.
    Auth,
    /// Accounting-Request: Start, Interim-Update, Stop per session.
    Acct,
}

#[derive(Clone, Debug, clap::Args)]
pub struct LoadArgs {
    /// The server, e.g. 127.0.0.1:1812.
    #[arg(long)]
    pub server: SocketAddr,
    #[arg(long, default_value = "testing123")]
    pub secret: String,
    #[arg(long, value_enum, default_value = "auth")]
    pub kind: Kind,
    /// Distinct logins: user0 .. user(N-1), password pw0 ..
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Requests per second; 0 sends as fast as the window allows.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 512)]
    pub window: usize,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Retransmission timeout, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Sends of one request before it counts as timed out.
    #[arg(long, default_value_t = 3)]
    pub tries: u8,
    /// Source sockets (each carries 256 identifiers).
    #[arg(long, default_value_t = 4)]
    pub sockets: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What one run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub kind: String,
    pub sent: u64,
    pub answered: u64,
    pub accepts: u64,
    pub rejects: u64,
    pub retransmissions: u64,
    pub timeouts: u64,
    /// Replies that did not match a request or did not authenticate.
    pub invalid: u64,
    /// Sends the schedule wanted but the full window held back.
    pub window_full: u64,
    pub seconds: f64,
    /// Answers per second over the run.
    pub rate: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// One request in flight.
struct Flight {
    first_sent: Instant,
    packet: Vec<u8>,
    tries: u8,
}

/// A source socket and its 256 identifiers.
struct Lane {
    socket: UdpSocket,
    slots: Vec<Option<Flight>>,
    /// Bumped at each use of a slot, so that stale deadlines are ignored.
    generations: Vec<u32>,
    next_id: u8,
    busy: usize,
}

impl Lane {
    fn new(server: SocketAddr) -> std::io::Result<Lane> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(server),
            socket2::Type::DGRAM,
            None,
        )?;
        // Large buffers: a burst of replies must not be dropped here.
        let _ = socket.set_recv_buffer_size(8 << 20);
        let _ = socket.set_send_buffer_size(8 << 20);
        let local: SocketAddr = if server.is_ipv4() {
            "127.0.0.1:0".parse().expect("address")
        } else {
            "[::1]:0".parse().expect("address")
        };
        socket.bind(&local.into())?;
        let socket: UdpSocket = socket.into();
        socket.connect(server)?;
        socket.set_nonblocking(true)?;
        Ok(Lane {
            socket,
            slots: (0..256).map(|_| None).collect(),
            generations: vec![0; 256],
            next_id: 0,
            busy: 0,
        })
    }

    fn free_id(&mut self) -> Option<u8> {
        if self.busy == 256 {
            return None;
        }
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            if self.slots[usize::from(id)].is_none() {
                return Some(id);
            }
        }
    }
}

/// A small, fast generator for Request Authenticators (xorshift64*).
struct Random(u64);

impl Random {
    fn seeded() -> Random {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Random(nanos | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn authenticator(&mut self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&self.next().to_be_bytes());
        a[8..].copy_from_slice(&self.next().to_be_bytes());
        a
    }
}

/// Sessions between a session's Start and its Interim-Update, and again to
/// its Stop.
const SESSION_LAG: u64 = 20_000;

/// NAS-Port-Type (Ethernet, as PPPoE has it).
const NAS_PORT_TYPE: u8 = 61;

/// Appends one attribute.
fn push(packet: &mut Vec<u8>, typ: u8, value: &[u8]) {
    packet.push(typ);
    packet.push(u8::try_from(value.len() + 2).expect("short attribute"));
    packet.extend_from_slice(value);
}

/// Builds request number `n`, signed.
fn build(args: &LoadArgs, n: u64, id: u8, random: &mut Random) -> Vec<u8> {
    let secret = args.secret.as_bytes();
    let mut p = Vec::with_capacity(128);
    match args.kind {
        Kind::Auth => {
            let user = n % args.users.max(1);
            let authenticator = random.authenticator();
            p.extend_from_slice(&[code::ACCESS_REQUEST, id, 0, 0]);
            p.extend_from_slice(&authenticator);
            push(&mut p, attr::MESSAGE_AUTHENTICATOR, &[0; 16]);
            push(&mut p, attr::USER_NAME, format!("user{user}").as_bytes());
            let hidden =
                packet::hide_password(format!("pw{user}").as_bytes(), &authenticator, secret);
            push(&mut p, attr::USER_PASSWORD, &hidden);
            push(&mut p, attr::NAS_IP_ADDRESS, &[127, 0, 0, 1]);
            push(&mut p, NAS_PORT_TYPE, &15u32.to_be_bytes());
        }
        Kind::Acct => {
            // Start of session c = n / 3, Interim-Update of session
            // c - LAG and Stop of session c - 2 LAG: a session's three
            // requests never overlap, as a NAS spaces them by minutes.
            let phase = n % 3;
            let session = (n / 3).wrapping_sub(phase * SESSION_LAG);
            let status: u32 = [1, 3, 2][phase as usize];
            let user = session % args.users.max(1);
            p.extend_from_slice(&[code::ACCOUNTING_REQUEST, id, 0, 0]);
            p.extend_from_slice(&[0; 16]);
            push(&mut p, attr::ACCT_STATUS_TYPE, &status.to_be_bytes());
            push(&mut p, attr::USER_NAME, format!("user{user}").as_bytes());
            push(
                &mut p,
                attr::ACCT_SESSION_ID,
                format!("bench-{session:012x}").as_bytes(),
            );
            push(&mut p, attr::NAS_IP_ADDRESS, &[127, 0, 0, 1]);
            let address = 0x6440_0000u32 | (session as u32 & 0x003f_ffff);
            push(&mut p, attr::FRAMED_IP_ADDRESS, &address.to_be_bytes());
            if status != 1 {
                push(&mut p, attr::ACCT_SESSION_TIME, &600u32.to_be_bytes());
                push(&mut p, attr::ACCT_INPUT_OCTETS, &123_456u32.to_be_bytes());
                push(&mut p, attr::ACCT_OUTPUT_OCTETS, &654_321u32.to_be_bytes());
            }
        }
    }
    let length = u16::try_from(p.len()).expect("short packet").to_be_bytes();
    p[2..4].copy_from_slice(&length);
    packet::sign_request(&mut p, secret);
    p
}

/// Runs the load and reports.
pub fn run(args: &LoadArgs) -> std::io::Result<Report> {
    // Each socket at most half full, so that an identifier is not used
    // again right after its answer (FreeRADIUS takes that for a conflict).
    let lanes_wanted = args.sockets.max(args.window.div_ceil(128)).max(1);
    let mut lanes = (0..lanes_wanted)
        .map(|_| Lane::new(args.server))
        .collect::<std::io::Result<Vec<_>>>()?;
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let interval = (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / args.rate as f64));
    let mut random = Random::seeded();
    let mut report = Report {
        kind: format!("{:?}", args.kind).to_lowercase(),
        ..Report::default()
    };
    let mut latencies: Vec<u32> = Vec::with_capacity(1 << 20);
    // (deadline, lane, id, generation), in send order: deadlines only grow.
    let mut deadlines: VecDeque<(Instant, usize, u8, u32)> = VecDeque::new();
    let mut buffer = [0u8; 4096];
    let mut in_flight = 0usize;
    let mut lane_cursor = 0usize;
    let started = Instant::now();
    let stop_sending = started + Duration::from_secs_f64(args.duration.max(0.0));
    let mut next_send = started;
    let mut last_answer = started;
    let mut n = 0u64;
    loop {
        // Answers.
        for lane in &mut lanes {
            loop {
                let size = match lane.socket.recv(&mut buffer) {
                    Ok(size) => size,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                        report.invalid += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let reply = &buffer[..size];
                if size < packet::HEADER {
                    report.invalid += 1;
                    continue;
                }
                let id = usize::from(reply[1]);
                let Some(flight) = lane.slots[id].as_ref() else {
                    report.invalid += 1;
                    continue;
                };
                let authenticator: [u8; 16] = flight.packet[4..20].try_into().expect("header");
                if !packet::reply_valid(reply, &authenticator, args.secret.as_bytes()) {
                    report.invalid += 1;
                    continue;
                }
                match reply[0] {
                    code::ACCESS_ACCEPT | code::ACCOUNTING_RESPONSE => report.accepts += 1,
                    _ => report.rejects += 1,
                }
                let now = Instant::now();
                let micros = now.duration_since(flight.first_sent).as_micros();
                latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                lane.slots[id] = None;
                lane.busy -= 1;
                in_flight -= 1;
                report.answered += 1;
                last_answer = now;
            }
        }
        let now = Instant::now();
        // Retransmissions and timeouts.
        while let Some(&(deadline, l, id, generation)) = deadlines.front() {
            if deadline > now {
                break;
            }
            deadlines.pop_front();
            let lane = &mut lanes[l];
            if lane.generations[usize::from(id)] != generation {
                continue;
            }
            let Some(flight) = lane.slots[usize::from(id)].as_mut() else {
                continue;
            };
            if flight.tries >= args.tries.max(1) {
                lane.slots[usize::from(id)] = None;
                lane.busy -= 1;
                in_flight -= 1;
                report.timeouts += 1;
                continue;
            }
            flight.tries += 1;
            report.retransmissions += 1;
            let _ = lane.socket.send(&flight.packet);
            deadlines.push_back((now + timeout, l, id, generation));
        }
        // New requests.
        if now < stop_sending {
            loop {
                if interval.is_some() && next_send > now {
                    break;
                }
                if in_flight >= args.window {
                    if let Some(step) = interval {
                        report.window_full += 1;
                        next_send += step;
                        continue;
                    }
                    break;
                }
                let Some(l) = (0..lanes.len())
                    .map(|k| (lane_cursor + k) % lanes.len())
                    .find(|&k| lanes[k].busy < 128)
                else {
                    break;
                };
                lane_cursor = (l + 1) % lanes.len();
                let lane = &mut lanes[l];
                let id = lane.free_id().expect("a free identifier");
                let request = build(args, n, id, &mut random);
                n += 1;
                match lane.socket.send(&request) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                let sent = Instant::now();
                let slot = usize::from(id);
                lane.generations[slot] = lane.generations[slot].wrapping_add(1);
                lane.slots[slot] = Some(Flight {
                    first_sent: sent,
                    packet: request,
                    tries: 1,
                });
                lane.busy += 1;
                in_flight += 1;
                report.sent += 1;
                deadlines.push_back((sent + timeout, l, id, lane.generations[slot]));
                match interval {
                    Some(step) => next_send += step,
                    None if in_flight >= args.window => break,
                    None => {}
                }
            }
        } else if in_flight == 0 {
            break;
        }
    }
    let elapsed = last_answer.max(stop_sending.min(Instant::now())) - started;
    report.seconds = elapsed.as_secs_f64();
    report.rate = report.answered as f64 / report.seconds.max(1e-9);
    latencies.sort_unstable();
    let at = |q: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        u64::from(latencies[index])
    };
    report.p50_us = at(0.5);
    report.p99_us = at(0.99);
    report.p999_us = at(0.999);
    report.max_us = latencies.last().map_or(0, |&l| u64::from(l));
    Ok(report)
}

impl Report {
    pub fn print(&self) {
        println!(
            "{}: {} sent, {} answered ({} accept/response, {} reject), {} retransmissions, \
             {} timeouts, {} invalid, {} held back by the window\n\
             {:.0} answers/s over {:.2} s; latency p50 {} us, p99 {} us, p99.9 {} us, max {} us",
            self.kind,
            self.sent,
            self.answered,
            self.accepts,
            self.rejects,
            self.retransmissions,
            self.timeouts,
            self.invalid,
            self.window_full,
            self.rate,
            self.seconds,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_us
        );
    }
}
