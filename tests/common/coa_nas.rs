//! The CoA side of a NAS for the tests: a UDP socket on 127.0.0.1 that
//! decodes the CoA / Disconnect requests liberad sends and answers them as
//! told — ACK, NAK with an Error-Cause, a forged answer, or nothing.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use liberad::radius::packet::{self, Attributes, attr, code};

use super::nas::dictionary;

/// A request liberad sent.
#[derive(Clone, Debug)]
pub struct CoaRequest {
    pub from: SocketAddr,
    pub bytes: Vec<u8>,
}

impl CoaRequest {
    pub fn code(&self) -> u8 {
        self.bytes[0]
    }

    pub fn is_coa(&self) -> bool {
        self.code() == code::COA_REQUEST
    }

    pub fn is_disconnect(&self) -> bool {
        self.code() == code::DISCONNECT_REQUEST
    }

    /// Its attributes as `Name = value` (Message-Authenticator and
    /// Event-Timestamp left out: they change every time).
    pub fn text(&self) -> Vec<String> {
        let dictionary = dictionary();
        Attributes::over(&self.bytes)
            .filter(|(t, _)| *t != attr::MESSAGE_AUTHENTICATOR && *t != attr::EVENT_TIMESTAMP)
            .flat_map(|(t, v)| dictionary.describe(t, v))
            .collect()
    }

    pub fn has(&self, typ: u8) -> bool {
        Attributes::over(&self.bytes).any(|(t, _)| t == typ)
    }
}

/// How to answer.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Ack,
    Nak(Option<u32>),
    /// Signed with the wrong secret: liberad must ignore it.
    Forged,
}

pub struct CoaNas {
    socket: UdpSocket,
    secret: Vec<u8>,
}

impl CoaNas {
    pub fn bind() -> CoaNas {
        CoaNas {
            socket: UdpSocket::bind("127.0.0.1:0").expect("bind the CoA NAS"),
            secret: super::SECRET.as_bytes().to_vec(),
        }
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().unwrap().port()
    }

    /// The next request, waiting at most `wait`; its signatures are checked
    /// (Request Authenticator, Message-Authenticator).
    pub fn receive(&self, wait: Duration) -> Option<CoaRequest> {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut buffer = [0u8; 4096];
        let (n, from) = self.socket.recv_from(&mut buffer).ok()?;
        let bytes = buffer[..n].to_vec();
        let mut resigned = bytes.clone();
        packet::sign_request(&mut resigned, &self.secret);
        assert_eq!(
            resigned, bytes,
            "the request is not signed with the NAS's secret"
        );
        assert!(
            Attributes::over(&bytes).any(|(t, _)| t == attr::MESSAGE_AUTHENTICATOR),
            "no Message-Authenticator"
        );
        Some(CoaRequest { from, bytes })
    }

    /// The next request, which must come within the test deadline.
    pub fn expect(&self) -> CoaRequest {
        self.receive(super::DEADLINE)
            .expect("liberad sent no CoA / Disconnect request")
    }

    pub fn answer(&self, request: &CoaRequest, answer: Answer) {
        let ack = if request.is_coa() {
            code::COA_ACK
        } else {
            code::DISCONNECT_ACK
        };
        let nak = if request.is_coa() {
            code::COA_NAK
        } else {
            code::DISCONNECT_NAK
        };
        let authenticator: [u8; 16] = request.bytes[4..20].try_into().unwrap();
        let cause_bytes = match answer {
            Answer::Nak(Some(cause)) => Some(cause.to_be_bytes()),
            _ => None,
        };
        let attributes: Vec<(u8, &[u8])> = cause_bytes
            .as_ref()
            .map(|bytes| (attr::ERROR_CAUSE, &bytes[..]))
            .into_iter()
            .collect();
        let (reply_code, secret): (u8, &[u8]) = match answer {
            Answer::Ack => (ack, &self.secret),
            Answer::Nak(_) => (nak, &self.secret),
            Answer::Forged => (nak, b"not-the-secret"),
        };
        let mut reply =
            packet::encode(reply_code, request.bytes[1], &authenticator, &attributes).unwrap();
        packet::sign_reply(&mut reply, &authenticator, secret);
        self.socket.send_to(&reply, request.from).unwrap();
    }

    /// Receives the next request and answers it.
    pub fn serve(&self, answer: Answer) -> CoaRequest {
        let request = self.expect();
        self.answer(&request, answer);
        request
    }
}
