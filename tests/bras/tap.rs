//! A tap on the BRAS's accounting: a UDP relay between pppd's RADIUS
//! plugin and liberad that passes every Accounting-Request and its answer
//! through unchanged and records what pppd sent (status, Acct-Session-Id,
//! User-Name, NAS-Port), so that the test can say what the BRAS reported
//! independently of what liberad made of it.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One Accounting-Request as pppd sent it.
#[derive(Clone, Debug)]
pub struct Record {
    /// Acct-Status-Type: 1 Start, 2 Stop, 3 Interim-Update.
    pub status: u32,
    pub session_id: String,
    pub user: String,
    pub nas_port: Option<u32>,
    pub session_time: Option<u32>,
}

pub const START: u32 = 1;
pub const STOP: u32 = 2;
pub const INTERIM: u32 = 3;

pub struct Tap {
    /// Where pppd sends its accounting.
    pub address: SocketAddr,
    records: Arc<Mutex<Vec<Record>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Tap {
    /// Relays accounting from a loopback port to `upstream` (liberad).
    pub fn start(upstream: SocketAddr) -> Tap {
        let down = UdpSocket::bind("127.0.0.1:0").expect("bind the accounting tap");
        let up = UdpSocket::bind("127.0.0.1:0").expect("bind the tap's upstream socket");
        up.connect(upstream).unwrap();
        for socket in [&down, &up] {
            socket.set_nonblocking(true).unwrap();
        }
        let address = down.local_addr().unwrap();
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (records, stop) = (records.clone(), stop.clone());
            std::thread::spawn(move || relay(&down, &up, &records, &stop))
        };
        Tap {
            address,
            records,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything recorded so far, oldest first.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Passes requests down → up and answers up → down, matching an answer to
/// its request by the RADIUS identifier (pppd takes them from a shared
/// sequence file, so that requests in flight at once differ).
fn relay(down: &UdpSocket, up: &UdpSocket, records: &Mutex<Vec<Record>>, stop: &AtomicBool) {
    let mut waiting: HashMap<u8, SocketAddr> = HashMap::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        if let Ok((n, from)) = down.recv_from(&mut buf) {
            idle = false;
            let packet = &buf[..n];
            if let Some(record) = parse(packet) {
                records.lock().unwrap().push(record);
            }
            if n >= 20 {
                waiting.insert(packet[1], from);
                let _ = up.send(packet);
            }
        }
        if let Ok(n) = up.recv(&mut buf) {
            idle = false;
            if n >= 20 {
                if let Some(to) = waiting.remove(&buf[1]) {
                    let _ = down.send_to(&buf[..n], to);
                }
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The attributes the test looks at, from an Accounting-Request (code 4).
fn parse(packet: &[u8]) -> Option<Record> {
    if packet.len() < 20 || packet[0] != 4 {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([packet[2], packet[3]])).min(packet.len());
    let mut record = Record {
        status: 0,
        session_id: String::new(),
        user: String::new(),
        nas_port: None,
        session_time: None,
    };
    let mut at = 20;
    while at + 2 <= length {
        let (kind, len) = (packet[at], usize::from(packet[at + 1]));
        if len < 2 || at + len > length {
            return None;
        }
        let value = &packet[at + 2..at + len];
        let number = <[u8; 4]>::try_from(value).ok().map(u32::from_be_bytes);
        match kind {
            1 => record.user = String::from_utf8_lossy(value).into_owned(),
            5 => record.nas_port = number,
            40 => record.status = number.unwrap_or(0),
            44 => record.session_id = String::from_utf8_lossy(value).into_owned(),
            46 => record.session_time = number,
            _ => {}
        }
        at += len;
    }
    Some(record)
}
