//! A NAS for the tests: builds, signs and sends RADIUS packets over UDP on
//! loopback and reads the replies, the way a BRAS would.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use liberad::radius::dictionary::Dictionary;
use liberad::radius::mschap::{self, vendor_attr};
use liberad::radius::packet::{self, Attributes, attr, code};

/// How long to wait for a reply that should come.
pub const REPLY_WAIT: Duration = Duration::from_secs(10);

static AUTHENTICATORS: AtomicU64 = AtomicU64::new(1);

/// A fresh Request Authenticator (unique within the test process).
pub fn authenticator() -> [u8; 16] {
    let n = AUTHENTICATORS.fetch_add(1, Ordering::Relaxed);
    let mut a = [0u8; 16];
    a[..8].copy_from_slice(&n.to_be_bytes());
    a[8..12].copy_from_slice(&std::process::id().to_be_bytes());
    a
}

/// A reply as the test reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub bytes: Vec<u8>,
    pub code: u8,
    pub attributes: Vec<(u8, Vec<u8>)>,
}

impl Reply {
    fn parse(bytes: Vec<u8>) -> Reply {
        let attributes = Attributes::over(&bytes)
            .map(|(t, v)| (t, v.to_vec()))
            .collect();
        Reply {
            code: bytes[0],
            attributes,
            bytes,
        }
    }

    /// The attributes as `Name = value`, through the test dictionaries.
    pub fn text(&self) -> Vec<String> {
        let dictionary = dictionary();
        self.attributes
            .iter()
            .filter(|(t, _)| *t != attr::MESSAGE_AUTHENTICATOR && *t != attr::PROXY_STATE)
            .flat_map(|(t, v)| dictionary.describe(*t, v))
            .collect()
    }

    /// The first attribute of a type.
    pub fn attribute(&self, typ: u8) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|(t, _)| *t == typ)
            .map(|(_, v)| v.as_slice())
    }

    pub fn session_timeout(&self) -> Option<u32> {
        self.attribute(attr::SESSION_TIMEOUT)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(u32::from_be_bytes)
    }
}

/// The built-in dictionary plus the shipped MikroTik one.
pub fn dictionary() -> Dictionary {
    let mut d = Dictionary::builtin();
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dictionaries/dictionary.mikrotik");
    d.load_file(&path).unwrap();
    d
}

/// An MS-CHAPv2 exchange: the reply, and what it should carry.
pub struct MsChapV2Login {
    pub reply: Reply,
    pub request_authenticator: [u8; 16],
    /// MS-CHAP2-Success: the ident, then `S=` and the authenticator response.
    pub success: String,
    pub send_key: [u8; 16],
    pub recv_key: [u8; 16],
}

impl MsChapV2Login {
    /// A Microsoft attribute of the reply, by vendor type.
    pub fn microsoft(&self, typ: u8) -> Option<&[u8]> {
        self.reply
            .attributes
            .iter()
            .filter(|(t, _)| *t == attr::VENDOR_SPECIFIC)
            .find_map(|(_, v)| mschap::vendor_data(v, typ))
    }

    /// An MPPE key of the reply, decrypted as the NAS does.
    pub fn key(&self, typ: u8, secret: &[u8]) -> Option<Vec<u8>> {
        mschap::decrypt_key(self.microsoft(typ)?, secret, &self.request_authenticator)
    }
}

/// A NAS talking to one liberad port.
pub struct Nas {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    pub secret: Vec<u8>,
    next_id: u8,
}

impl Nas {
    /// A NAS on 127.0.0.1 with the test secret.
    pub fn new(server: SocketAddr) -> Nas {
        Nas::bound("127.0.0.1:0", server, super::SECRET)
    }

    /// A NAS sending from `local` with `secret`.
    pub fn bound(local: &str, server: SocketAddr, secret: &str) -> Nas {
        let socket = UdpSocket::bind(local).expect("bind the test NAS");
        Nas {
            socket,
            server,
            secret: secret.as_bytes().to_vec(),
            next_id: 0,
        }
    }

    pub fn next_id(&mut self) -> u8 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// An Access-Request with Message-Authenticator, signed.
    pub fn access_request(&mut self, attributes: &[(u8, &[u8])]) -> Vec<u8> {
        let mut all: Vec<(u8, &[u8])> = vec![(attr::MESSAGE_AUTHENTICATOR, &[0; 16])];
        all.extend_from_slice(attributes);
        self.request(code::ACCESS_REQUEST, authenticator(), &all)
    }

    /// Any request, signed as its code requires.
    pub fn request(
        &mut self,
        request_code: u8,
        auth: [u8; 16],
        attributes: &[(u8, &[u8])],
    ) -> Vec<u8> {
        let id = self.next_id();
        let mut p = packet::encode(request_code, id, &auth, attributes).expect("encodable");
        packet::sign_request(&mut p, &self.secret);
        p
    }

    /// PAP login.
    pub fn pap(&mut self, user: &str, password: &str) -> Reply {
        let request = self.pap_request(user, password);
        self.exchange(&request).expect("an answer to PAP")
    }

    /// A PAP Access-Request, signed, not sent.
    pub fn pap_request(&mut self, user: &str, password: &str) -> Vec<u8> {
        self.pap_request_as(user, password, true, false)
    }

    /// A PAP Access-Request, not sent: with Message-Authenticator where
    /// `signed` (pppd's RADIUS client never signs), with a Proxy-State
    /// where `proxied`.
    pub fn pap_request_as(
        &mut self,
        user: &str,
        password: &str,
        signed: bool,
        proxied: bool,
    ) -> Vec<u8> {
        let auth = authenticator();
        let hidden = packet::hide_password(password.as_bytes(), &auth, &self.secret);
        let mut attributes: Vec<(u8, &[u8])> = Vec::with_capacity(4);
        if signed {
            attributes.push((attr::MESSAGE_AUTHENTICATOR, &[0; 16]));
        }
        attributes.push((attr::USER_NAME, user.as_bytes()));
        attributes.push((attr::USER_PASSWORD, &hidden));
        if proxied {
            attributes.push((attr::PROXY_STATE, b"proxy-1"));
        }
        self.request(code::ACCESS_REQUEST, auth, &attributes)
    }

    /// An MS-CHAPv2 login, as a BRAS sends it after PPP's MS-CHAPv2 with
    /// the subscriber: what liberad answered, and what the answer must
    /// hold, derived here from the password.
    pub fn ms_chap_v2(&mut self, user: &str, password: &str) -> MsChapV2Login {
        let authenticator_challenge = authenticator();
        let peer_challenge = {
            let mut c = authenticator();
            c.reverse();
            c
        };
        let hash = mschap::nt_password_hash(password);
        let nt = mschap::nt_response(
            &authenticator_challenge,
            &peer_challenge,
            user.as_bytes(),
            &hash,
        );
        let mut response = vec![0x42, 0];
        response.extend_from_slice(&peer_challenge);
        response.extend_from_slice(&[0; 8]);
        response.extend_from_slice(&nt);
        let challenge_vsa =
            mschap::vendor_value(vendor_attr::MS_CHAP_CHALLENGE, &authenticator_challenge).unwrap();
        let response_vsa = mschap::vendor_value(vendor_attr::MS_CHAP2_RESPONSE, &response).unwrap();
        let request = self.access_request(&[
            (attr::USER_NAME, user.as_bytes()),
            (attr::VENDOR_SPECIFIC, &challenge_vsa),
            (attr::VENDOR_SPECIFIC, &response_vsa),
        ]);
        let reply = self.exchange(&request).expect("an answer to MS-CHAPv2");
        let master = mschap::master_key(&hash, &nt);
        MsChapV2Login {
            reply,
            request_authenticator: request[4..20].try_into().unwrap(),
            success: format!(
                "\x42{}",
                mschap::authenticator_response(
                    &hash,
                    &nt,
                    &peer_challenge,
                    &authenticator_challenge,
                    user.as_bytes()
                )
            ),
            send_key: mschap::server_start_key(&master, true),
            recv_key: mschap::server_start_key(&master, false),
        }
    }

    /// An Accounting-Request (with Acct-Status-Type and the given attributes).
    pub fn accounting(&mut self, status: u32, attributes: &[(u8, &[u8])]) -> Option<Reply> {
        let p = self.accounting_packet(status, attributes);
        self.exchange(&p)
    }

    /// An Accounting-Request, signed, not sent.
    pub fn accounting_packet(&mut self, status: u32, attributes: &[(u8, &[u8])]) -> Vec<u8> {
        let status = status.to_be_bytes();
        let mut all: Vec<(u8, &[u8])> = vec![(attr::ACCT_STATUS_TYPE, &status)];
        all.extend_from_slice(attributes);
        self.request(code::ACCOUNTING_REQUEST, [0; 16], &all)
    }

    /// Sends a request and retransmits it, byte for byte, every `every`
    /// as a NAS does, until its reply comes or `within` has passed. Late
    /// answers to earlier requests of this NAS are skipped; answers to
    /// this one's retransmissions may still follow it.
    pub fn exchange_retrying(
        &self,
        request: &[u8],
        every: Duration,
        within: Duration,
    ) -> Option<Reply> {
        let deadline = std::time::Instant::now() + within;
        let request_auth: [u8; 16] = request[4..20].try_into().unwrap();
        let mut buffer = [0u8; 4096];
        loop {
            self.send(request);
            let resend_at = std::time::Instant::now() + every;
            loop {
                let now = std::time::Instant::now();
                let wait = resend_at.min(deadline).saturating_duration_since(now);
                if wait.is_zero() {
                    break;
                }
                self.socket.set_read_timeout(Some(wait)).unwrap();
                let Ok((n, from)) = self.socket.recv_from(&mut buffer) else {
                    break;
                };
                assert_eq!(from, self.server, "a datagram from elsewhere");
                let bytes = buffer[..n].to_vec();
                if bytes[1] == request[1]
                    && packet::reply_valid(&bytes, &request_auth, &self.secret)
                {
                    return Some(Reply::parse(bytes));
                }
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Sends a packet and waits for the reply with its identifier, which
    /// must authenticate against the request.
    pub fn exchange(&self, request: &[u8]) -> Option<Reply> {
        self.send(request);
        self.receive(request, REPLY_WAIT)
    }

    pub fn send(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.server).expect("send");
    }

    /// Waits for the reply to `request`; any other datagram is a failure.
    pub fn receive(&self, request: &[u8], wait: Duration) -> Option<Reply> {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut buffer = [0u8; 4096];
        let (n, from) = self.socket.recv_from(&mut buffer).ok()?;
        assert_eq!(from, self.server, "a datagram from elsewhere");
        let bytes = buffer[..n].to_vec();
        assert_eq!(
            bytes[1], request[1],
            "a reply to another request: {bytes:?}"
        );
        let request_auth: [u8; 16] = request[4..20].try_into().unwrap();
        assert!(
            packet::reply_valid(&bytes, &request_auth, &self.secret),
            "the reply does not authenticate"
        );
        Some(Reply::parse(bytes))
    }
}
