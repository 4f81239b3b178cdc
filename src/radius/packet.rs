//! RADIUS on the wire: the checks every datagram passes before liberad
//! believes it, and the signatures on what liberad sends.
//!
//! [`check`] runs the receive checks in a fixed order and says which one
//! failed; nothing here allocates on the failure path, so a flood of bad
//! packets costs little. Signing follows RFC 2865 (authenticators), RFC 3579
//! and RFC 5176 (Message-Authenticator), with Message-Authenticator placed
//! first in replies against BlastRADIUS (CVE-2024-3596).

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// RADIUS header: code, identifier, length, authenticator.
pub const HEADER: usize = 20;
/// Largest RADIUS packet (RFC 2865 §3).
pub const MAX_PACKET: usize = 4096;
/// More attributes than this in one packet is an attack, not a request.
pub const MAX_ATTRIBUTES: usize = 200;

/// Packet codes.
pub mod code {
    pub const ACCESS_REQUEST: u8 = 1;
    pub const ACCESS_ACCEPT: u8 = 2;
    pub const ACCESS_REJECT: u8 = 3;
    pub const ACCOUNTING_REQUEST: u8 = 4;
    pub const ACCOUNTING_RESPONSE: u8 = 5;
    pub const STATUS_SERVER: u8 = 12;
    pub const DISCONNECT_REQUEST: u8 = 40;
    pub const DISCONNECT_ACK: u8 = 41;
    pub const DISCONNECT_NAK: u8 = 42;
    pub const COA_REQUEST: u8 = 43;
    pub const COA_ACK: u8 = 44;
    pub const COA_NAK: u8 = 45;
}

/// Attribute types liberad reads or writes itself.
pub mod attr {
    pub const USER_NAME: u8 = 1;
    pub const USER_PASSWORD: u8 = 2;
    pub const CHAP_PASSWORD: u8 = 3;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const NAS_PORT: u8 = 5;
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    pub const REPLY_MESSAGE: u8 = 18;
    pub const VENDOR_SPECIFIC: u8 = 26;
    pub const STATE: u8 = 24;
    pub const SESSION_TIMEOUT: u8 = 27;
    pub const CALLING_STATION_ID: u8 = 31;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const PROXY_STATE: u8 = 33;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_DELAY_TIME: u8 = 41;
    pub const ACCT_INPUT_OCTETS: u8 = 42;
    pub const ACCT_OUTPUT_OCTETS: u8 = 43;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const ACCT_SESSION_TIME: u8 = 46;
    pub const ACCT_TERMINATE_CAUSE: u8 = 49;
    pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
    pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
    pub const EVENT_TIMESTAMP: u8 = 55;
    pub const CHAP_CHALLENGE: u8 = 60;
    pub const EAP_MESSAGE: u8 = 79;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
    pub const NAS_PORT_ID: u8 = 87;
    pub const ERROR_CAUSE: u8 = 101;
}

/// Which listener a packet arrived on; each accepts its own codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    Auth,
    Acct,
}

impl Port {
    pub fn as_str(self) -> &'static str {
        match self {
            Port::Auth => "auth",
            Port::Acct => "acct",
        }
    }

    fn accepts(self, code: u8) -> bool {
        match self {
            Port::Auth => matches!(code, code::ACCESS_REQUEST | code::STATUS_SERVER),
            Port::Acct => matches!(code, code::ACCOUNTING_REQUEST | code::STATUS_SERVER),
        }
    }
}

/// Why a datagram was dropped without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The source address matches no configured NAS.
    UnknownClient,
    /// Shorter than a header, or a Length field out of range.
    BadLength,
    /// A code this port does not serve.
    UnknownCode,
    /// Attributes that do not exactly fill the packet, or shorter than 2.
    BadAttributes,
    /// More than [`MAX_ATTRIBUTES`] attributes.
    TooManyAttributes,
    /// A Message-Authenticator that is not 16 bytes, or more than one.
    BadMessageAuthenticatorLength,
    /// No Message-Authenticator where one is required.
    MissingMessageAuthenticator,
    /// A Message-Authenticator that does not verify (wrong secret, forgery).
    BadMessageAuthenticator,
    /// An Access-Request with Proxy-State and no Message-Authenticator, from
    /// a NAS entry with `limit_proxy_state` (BlastRADIUS).
    ProxyStateWithoutMessageAuthenticator,
    /// An Accounting-Request whose Request Authenticator does not verify.
    BadRequestAuthenticator,
    /// Well-formed, but liberad could not take more work at that moment.
    Overloaded,
    /// A request liberad could not answer (store failure): the NAS retries.
    NotAnswered,
}

impl DropReason {
    /// Every reason, in the order of the checks.
    pub const ALL: [DropReason; 12] = [
        DropReason::UnknownClient,
        DropReason::BadLength,
        DropReason::UnknownCode,
        DropReason::BadAttributes,
        DropReason::TooManyAttributes,
        DropReason::BadMessageAuthenticatorLength,
        DropReason::MissingMessageAuthenticator,
        DropReason::BadMessageAuthenticator,
        DropReason::ProxyStateWithoutMessageAuthenticator,
        DropReason::BadRequestAuthenticator,
        DropReason::Overloaded,
        DropReason::NotAnswered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownClient => "unknown_client",
            DropReason::BadLength => "bad_length",
            DropReason::UnknownCode => "unknown_code",
            DropReason::BadAttributes => "bad_attributes",
            DropReason::TooManyAttributes => "too_many_attributes",
            DropReason::BadMessageAuthenticatorLength => "bad_message_authenticator_length",
            DropReason::MissingMessageAuthenticator => "missing_message_authenticator",
            DropReason::BadMessageAuthenticator => "bad_message_authenticator",
            DropReason::ProxyStateWithoutMessageAuthenticator => {
                "proxy_state_without_message_authenticator"
            }
            DropReason::BadRequestAuthenticator => "bad_request_authenticator",
            DropReason::Overloaded => "overloaded",
            DropReason::NotAnswered => "not_answered",
        }
    }

    /// Position in [`DropReason::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        DropReason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }
}

/// A checked request kept beyond the receive buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRequest {
    bytes: Vec<u8>,
    code: u8,
    identifier: u8,
    authenticator: [u8; 16],
}

impl OwnedRequest {
    pub fn view(&self) -> Checked<'_> {
        Checked {
            bytes: &self.bytes,
            code: self.code,
            identifier: self.identifier,
            authenticator: self.authenticator,
        }
    }
}

/// A datagram that passed every receive check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked<'a> {
    /// The packet, exactly Length bytes (padding removed).
    pub bytes: &'a [u8],
    pub code: u8,
    pub identifier: u8,
    pub authenticator: [u8; 16],
}

impl<'a> Checked<'a> {
    /// Whether it carries Message-Authenticator (verified by the checks).
    pub fn signed(&self) -> bool {
        find_message_authenticator(self.bytes).is_some()
    }

    /// Copies the request out of the receive buffer.
    pub fn to_owned_request(&self) -> OwnedRequest {
        OwnedRequest {
            bytes: self.bytes.to_vec(),
            code: self.code,
            identifier: self.identifier,
            authenticator: self.authenticator,
        }
    }

    /// The attributes, in order.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            rest: self.bytes.get(HEADER..).unwrap_or_default(),
        }
    }

    /// The first attribute of a type.
    pub fn attribute(&self, typ: u8) -> Option<&'a [u8]> {
        self.attributes().find(|(t, _)| *t == typ).map(|(_, v)| v)
    }
}

/// Iterates over the attributes of a checked packet.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Attributes<'a> {
    /// The attributes of any packet, up to its Length field: for reading
    /// replies and other packets that did not go through [`check`].
    pub fn over(packet: &'a [u8]) -> Attributes<'a> {
        let length = packet
            .get(2..4)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
            .unwrap_or(0)
            .min(packet.len());
        Attributes {
            rest: packet.get(HEADER..length).unwrap_or_default(),
        }
    }
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&typ, tail) = self.rest.split_first()?;
        let (&length, _) = tail.split_first()?;
        let length = usize::from(length);
        if length < 2 || length > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let value = self.rest.get(2..length)?;
        self.rest = self.rest.get(length..).unwrap_or_default();
        Some((typ, value))
    }
}

/// What a NAS entry demands of its Access-Requests, beyond the RFCs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Demands {
    /// Message-Authenticator must be present.
    pub message_authenticator: bool,
    /// Proxy-State is taken only with Message-Authenticator.
    pub limit_proxy_state: bool,
}

impl Demands {
    /// Message-Authenticator required (and so Proxy-State signed).
    pub const SIGNED: Demands = Demands {
        message_authenticator: true,
        limit_proxy_state: true,
    };
}

/// Runs the receive checks, in order; the first failure is the answer.
pub fn check<'a>(
    datagram: &'a [u8],
    port: Port,
    secret: &[u8],
    demands: Demands,
) -> Result<Checked<'a>, DropReason> {
    // 1. Header and Length; bytes beyond Length are padding.
    let header = datagram.get(..HEADER).ok_or(DropReason::BadLength)?;
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if !(HEADER..=MAX_PACKET).contains(&length) || length > datagram.len() {
        return Err(DropReason::BadLength);
    }
    let bytes = &datagram[..length];
    let code = header[0];
    // 2. A code for this port.
    if !port.accepts(code) {
        return Err(DropReason::UnknownCode);
    }
    // 3. Attributes exactly fill the packet; count them and find
    //    Message-Authenticator on the way.
    let mut offset = HEADER;
    let mut count = 0usize;
    let mut message_authenticator = None;
    let mut proxy_state = false;
    let mut authenticator_length_bad = false;
    while offset < length {
        let attribute_length =
            usize::from(*bytes.get(offset + 1).ok_or(DropReason::BadAttributes)?);
        if attribute_length < 2 || offset + attribute_length > length {
            return Err(DropReason::BadAttributes);
        }
        count += 1;
        if count > MAX_ATTRIBUTES {
            return Err(DropReason::TooManyAttributes);
        }
        if bytes[offset] == attr::MESSAGE_AUTHENTICATOR {
            if attribute_length != 18 || message_authenticator.is_some() {
                authenticator_length_bad = true;
            }
            message_authenticator = Some(offset);
        }
        proxy_state |= bytes[offset] == attr::PROXY_STATE;
        offset += attribute_length;
    }
    // 4. A Message-Authenticator of the right size.
    if authenticator_length_bad {
        return Err(DropReason::BadMessageAuthenticatorLength);
    }
    // 5. Present where required: always on Status-Server (RFC 5997).
    let required = code == code::STATUS_SERVER
        || (code == code::ACCESS_REQUEST && demands.message_authenticator);
    if required && message_authenticator.is_none() {
        return Err(DropReason::MissingMessageAuthenticator);
    }
    // 6. Proxy-State only where signed: the BlastRADIUS forgery hides its
    //    collision in a Proxy-State the server echoes.
    if code == code::ACCESS_REQUEST
        && demands.limit_proxy_state
        && proxy_state
        && message_authenticator.is_none()
    {
        return Err(DropReason::ProxyStateWithoutMessageAuthenticator);
    }
    let mut authenticator = [0u8; 16];
    authenticator.copy_from_slice(&header[4..HEADER]);
    // 7. Correct where present.
    if let Some(at) = message_authenticator {
        let zero_authenticator = code == code::ACCOUNTING_REQUEST;
        if !message_authenticator_valid(bytes, at, secret, zero_authenticator) {
            return Err(DropReason::BadMessageAuthenticator);
        }
    }
    // 8. The Request Authenticator of an Accounting-Request.
    if code == code::ACCOUNTING_REQUEST && !request_authenticator_valid(bytes, secret) {
        return Err(DropReason::BadRequestAuthenticator);
    }
    Ok(Checked {
        bytes,
        code,
        identifier: header[1],
        authenticator,
    })
}

type HmacMd5 = Hmac<Md5>;

/// HMAC-MD5 of a packet with its Message-Authenticator (at offset `at`)
/// counted as zeros, and the authenticator field as zeros when asked.
fn message_authenticator_of(
    packet: &[u8],
    at: usize,
    secret: &[u8],
    zero_authenticator: bool,
) -> Option<[u8; 16]> {
    // HMAC accepts keys of any length: this only fails on a broken build.
    let mut mac = HmacMd5::new_from_slice(secret).ok()?;
    mac.update(packet.get(..4)?);
    if zero_authenticator {
        mac.update(&[0u8; 16]);
    } else {
        mac.update(packet.get(4..HEADER)?);
    }
    mac.update(packet.get(HEADER..at + 2)?);
    mac.update(&[0u8; 16]);
    mac.update(packet.get(at + 18..)?);
    Some(mac.finalize().into_bytes().into())
}

fn message_authenticator_valid(
    packet: &[u8],
    at: usize,
    secret: &[u8],
    zero_authenticator: bool,
) -> bool {
    let (Some(expected), Some(given)) = (
        message_authenticator_of(packet, at, secret, zero_authenticator),
        packet.get(at + 2..at + 18),
    ) else {
        return false;
    };
    expected.ct_eq(given).into()
}

/// RFC 2866 §3: MD5(Code + Identifier + Length + 16 zero octets +
/// Attributes + Secret).
fn request_authenticator_valid(packet: &[u8], secret: &[u8]) -> bool {
    let mut md5 = Md5::new();
    md5.update(&packet[..4]);
    md5.update([0u8; 16]);
    md5.update(&packet[HEADER..]);
    md5.update(secret);
    let expected: [u8; 16] = md5.finalize().into();
    expected.ct_eq(&packet[4..HEADER]).into()
}

fn find_message_authenticator(packet: &[u8]) -> Option<usize> {
    let mut offset = HEADER;
    while offset + 2 <= packet.len() {
        let length = usize::from(packet[offset + 1]);
        if length < 2 {
            return None;
        }
        if packet[offset] == attr::MESSAGE_AUTHENTICATOR && length == 18 {
            return Some(offset);
        }
        offset += length;
    }
    None
}

/// Signs a reply in place: fills its Message-Authenticator (if it has one)
/// and its Response Authenticator, both from the request's authenticator.
pub fn sign_reply(reply: &mut [u8], request_authenticator: &[u8; 16], secret: &[u8]) {
    if reply.len() < HEADER {
        return;
    }
    reply[4..HEADER].copy_from_slice(request_authenticator);
    if let Some(at) = find_message_authenticator(reply)
        && let Some(mac) = message_authenticator_of(reply, at, secret, false)
    {
        reply[at + 2..at + 18].copy_from_slice(&mac);
    }
    let mut md5 = Md5::new();
    md5.update(&reply[..]);
    md5.update(secret);
    let response: [u8; 16] = md5.finalize().into();
    reply[4..HEADER].copy_from_slice(&response);
}

/// Signs a request in place. Accounting, CoA and Disconnect requests get a
/// Request Authenticator computed over the packet (RFC 2866, RFC 5176);
/// Access-Request and Status-Server keep the random one the caller put in.
/// A Message-Authenticator, where present, is filled first.
pub fn sign_request(request: &mut [u8], secret: &[u8]) {
    if request.len() < HEADER {
        return;
    }
    let computed = matches!(
        request[0],
        code::ACCOUNTING_REQUEST | code::COA_REQUEST | code::DISCONNECT_REQUEST
    );
    if computed {
        request[4..HEADER].fill(0);
    }
    if let Some(at) = find_message_authenticator(request)
        && let Some(mac) = message_authenticator_of(request, at, secret, computed)
    {
        request[at + 2..at + 18].copy_from_slice(&mac);
    }
    if computed {
        let mut md5 = Md5::new();
        md5.update(&request[..]);
        md5.update(secret);
        let authenticator: [u8; 16] = md5.finalize().into();
        request[4..HEADER].copy_from_slice(&authenticator);
    }
}

/// Checks a reply against the request it answers: the Response
/// Authenticator, and the Message-Authenticator when present.
pub fn reply_valid(reply: &[u8], request_authenticator: &[u8; 16], secret: &[u8]) -> bool {
    if reply.len() < HEADER {
        return false;
    }
    let length = usize::from(u16::from_be_bytes([reply[2], reply[3]]));
    let Some(reply) = reply.get(..length).filter(|_| length >= HEADER) else {
        return false;
    };
    let mut md5 = Md5::new();
    md5.update(&reply[..4]);
    md5.update(request_authenticator);
    md5.update(&reply[HEADER..]);
    md5.update(secret);
    let expected: [u8; 16] = md5.finalize().into();
    if !bool::from(expected.ct_eq(&reply[4..HEADER])) {
        return false;
    }
    match find_message_authenticator(reply) {
        None => true,
        Some(at) => {
            let mut copy = reply.to_vec();
            copy[4..HEADER].copy_from_slice(request_authenticator);
            message_authenticator_valid(&copy, at, secret, false)
        }
    }
}

/// Builds a packet from a header and attributes (type, value), without
/// signing it, through the `radius` crate's encoder. Returns `None` if it
/// would exceed the RADIUS size limit or an attribute is too long.
pub fn encode(
    code: u8,
    identifier: u8,
    authenticator: &[u8; 16],
    attributes: &[(u8, &[u8])],
) -> Option<Vec<u8>> {
    // Checked here rather than trusted to the encoder, whose length
    // arithmetic is 16 bits wide.
    let mut length = HEADER;
    for (_, value) in attributes {
        if value.len() > 253 {
            return None;
        }
        length += value.len() + 2;
    }
    if length > MAX_PACKET {
        return None;
    }
    let mut packet = radius::core::packet::Packet::new_with_identifier(
        radius::core::code::Code::from(code),
        &[],
        identifier,
    );
    for (typ, value) in attributes {
        packet.add(radius::core::avp::AVP::from_bytes(*typ, value));
    }
    let mut bytes = packet.encode().ok()?;
    bytes.get_mut(4..HEADER)?.copy_from_slice(authenticator);
    Some(bytes)
}

/// A signed reply to a checked request: Message-Authenticator first when
/// asked for, the request's Proxy-State attributes in order (RFC 2865
/// §5.33), then `extra`. `None` if it would not fit in a packet.
pub fn reply_packet(
    request: &Checked<'_>,
    reply_code: u8,
    secret: &[u8],
    message_authenticator: bool,
    extra: &[(u8, &[u8])],
) -> Option<Vec<u8>> {
    let zeros = [0u8; 16];
    let mut attributes: Vec<(u8, &[u8])> = Vec::with_capacity(extra.len() + 4);
    if message_authenticator {
        attributes.push((attr::MESSAGE_AUTHENTICATOR, &zeros));
    }
    attributes.extend(
        request
            .attributes()
            .filter(|(t, _)| *t == attr::PROXY_STATE),
    );
    attributes.extend_from_slice(extra);
    let mut bytes = encode(
        reply_code,
        request.identifier,
        &request.authenticator,
        &attributes,
    )?;
    sign_reply(&mut bytes, &request.authenticator, secret);
    Some(bytes)
}

/// Verifies a CHAP response: MD5(CHAP ident + password + challenge).
pub fn chap_valid(chap_password: &[u8], challenge: &[u8], password: &[u8]) -> bool {
    let Some((&ident, response)) = chap_password.split_first() else {
        return false;
    };
    if response.len() != 16 {
        return false;
    }
    let mut md5 = Md5::new();
    md5.update([ident]);
    md5.update(password);
    md5.update(challenge);
    let expected: [u8; 16] = md5.finalize().into();
    expected.ct_eq(response).into()
}

/// Hides a password for User-Password (RFC 2865 §5.2), for clients.
pub fn hide_password(password: &[u8], authenticator: &[u8; 16], secret: &[u8]) -> Vec<u8> {
    let padded_len = password.len().div_ceil(16).max(1) * 16;
    let mut plain = password.to_vec();
    plain.resize(padded_len, 0);
    let mut out = Vec::with_capacity(padded_len);
    let mut previous: Vec<u8> = authenticator.to_vec();
    for block in plain.chunks(16) {
        let mut md5 = Md5::new();
        md5.update(secret);
        md5.update(&previous);
        let key: [u8; 16] = md5.finalize().into();
        let cipher: Vec<u8> = block.iter().zip(key).map(|(p, k)| p ^ k).collect();
        out.extend_from_slice(&cipher);
        previous = cipher;
    }
    out
}

/// Recovers a User-Password (RFC 2865 §5.2): `None` unless its length is a
/// multiple of 16 from 16 to 128.
pub fn reveal_password(hidden: &[u8], authenticator: &[u8; 16], secret: &[u8]) -> Option<Vec<u8>> {
    if hidden.is_empty() || hidden.len() > 128 || hidden.len() % 16 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(hidden.len());
    let mut previous: &[u8] = authenticator;
    for block in hidden.chunks(16) {
        let mut md5 = Md5::new();
        md5.update(secret);
        md5.update(previous);
        let key: [u8; 16] = md5.finalize().into();
        out.extend(block.iter().zip(key).map(|(c, k)| c ^ k));
        previous = block;
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const SECRET: &[u8] = b"xyzzy5461";
    /// RFC 2865 §7.1: Access-Request for nemo / arctangent.
    const RFC_REQUEST: &str = "010000380f403f9473978057bd83d5cb98f4227a01066e656d6f02120dbe708d\
                               93d413ce3196e43f782a0aee0406c0a80110050600000003";
    /// RFC 2865 §7.1: the Access-Accept that answers it.
    const RFC_ACCEPT: &str = "0200002686fe220e7624ba2a1005f6bf9b55e0b20606000000010f0600000000\
                              0e06c0a80103";

    fn authenticator_of(packet: &[u8]) -> [u8; 16] {
        packet[4..20].try_into().unwrap()
    }

    #[test]
    fn rfc_2865_example_request_is_accepted_and_its_password_revealed() {
        let request = from_hex(RFC_REQUEST);
        let checked = check(&request, Port::Auth, SECRET, Demands::default()).unwrap();
        assert_eq!(checked.code, code::ACCESS_REQUEST);
        assert_eq!(checked.attribute(attr::USER_NAME), Some(&b"nemo"[..]));
        let hidden = checked.attribute(attr::USER_PASSWORD).unwrap();
        let password = reveal_password(hidden, &checked.authenticator, SECRET).unwrap();
        assert_eq!(password, b"arctangent");
        assert_eq!(
            hide_password(b"arctangent", &checked.authenticator, SECRET),
            hidden
        );
        // Required Message-Authenticator: the RFC example has none.
        assert_eq!(
            check(&request, Port::Auth, SECRET, Demands::SIGNED),
            Err(DropReason::MissingMessageAuthenticator)
        );
    }

    #[test]
    fn rfc_2865_example_accept_is_signed_the_same() {
        let request = from_hex(RFC_REQUEST);
        let expected = from_hex(RFC_ACCEPT);
        let attributes: [(u8, &[u8]); 3] = [
            (6, &[0, 0, 0, 1]),
            (15, &[0, 0, 0, 0]),
            (14, &[192, 168, 1, 3]),
        ];
        let mut reply = encode(code::ACCESS_ACCEPT, 0, &[0; 16], &attributes).unwrap();
        sign_reply(&mut reply, &authenticator_of(&request), SECRET);
        assert_eq!(reply, expected);
        assert!(reply_valid(&reply, &authenticator_of(&request), SECRET));
        assert!(!reply_valid(&reply, &authenticator_of(&request), b"other"));
    }

    /// The RFC example with a Message-Authenticator, signed by Python's
    /// hmac module.
    const REQUEST_WITH_MA: &str = "0100004a0f403f9473978057bd83d5cb98f4227a01066e656d6f02120dbe708d\
        93d413ce3196e43f782a0aee0406c0a80110050600000003501263b78a6b9d2f149989fbf57ea21d194c";
    /// An Access-Accept with Message-Authenticator first, signed by Python.
    const REPLY_WITH_MA: &str = "02000038c13e8f5e21426df8a8fffcc5569ce9fc501204121386280130d5ef8e\
        d8072ba8058d0606000000010f06000000000e06c0a80103";

    #[test]
    fn message_authenticator_on_a_request() {
        let mut request = from_hex(REQUEST_WITH_MA);
        assert!(check(&request, Port::Auth, SECRET, Demands::SIGNED).is_ok());
        assert_eq!(
            check(&request, Port::Auth, b"wrong", Demands::SIGNED),
            Err(DropReason::BadMessageAuthenticator)
        );
        // Our signer gives the same bytes.
        let original = request.clone();
        let at = request.len() - 16;
        request[at..].fill(0);
        sign_request(&mut request, SECRET);
        assert_eq!(request, original);
        // One flipped bit anywhere is caught.
        request[25] ^= 1;
        assert_eq!(
            check(&request, Port::Auth, SECRET, Demands::SIGNED),
            Err(DropReason::BadMessageAuthenticator)
        );
    }

    #[test]
    fn message_authenticator_on_a_reply() {
        let request = from_hex(RFC_REQUEST);
        let attributes: [(u8, &[u8]); 4] = [
            (attr::MESSAGE_AUTHENTICATOR, &[0; 16]),
            (6, &[0, 0, 0, 1]),
            (15, &[0, 0, 0, 0]),
            (14, &[192, 168, 1, 3]),
        ];
        let mut reply = encode(code::ACCESS_ACCEPT, 0, &[0; 16], &attributes).unwrap();
        sign_reply(&mut reply, &authenticator_of(&request), SECRET);
        assert_eq!(reply, from_hex(REPLY_WITH_MA));
        assert!(reply_valid(&reply, &authenticator_of(&request), SECRET));
        let mut forged = reply.clone();
        forged[30] ^= 1;
        assert!(!reply_valid(&forged, &authenticator_of(&request), SECRET));
    }

    /// Accounting-Request Start for nemo, signed by Python's hashlib.
    const ACCOUNTING: &str =
        "04070025fc5cbafa9d8970522d365a03cca079d028060000000101066e656d6f2c05616263";

    #[test]
    fn accounting_request_authenticator() {
        let packet = from_hex(ACCOUNTING);
        let checked = check(&packet, Port::Acct, SECRET, Demands::SIGNED).unwrap();
        assert_eq!(checked.attribute(attr::ACCT_SESSION_ID), Some(&b"abc"[..]));
        assert_eq!(
            check(&packet, Port::Acct, b"wrong", Demands::SIGNED),
            Err(DropReason::BadRequestAuthenticator)
        );
        let mut resigned = packet.clone();
        sign_request(&mut resigned, SECRET);
        assert_eq!(resigned, packet);
        // With a Message-Authenticator too, both verify.
        let body: Vec<(u8, &[u8])> = checked.attributes().collect();
        let mut with_ma = body.clone();
        with_ma.push((attr::MESSAGE_AUTHENTICATOR, &[0; 16]));
        let mut p = encode(code::ACCOUNTING_REQUEST, 9, &[0; 16], &with_ma).unwrap();
        sign_request(&mut p, SECRET);
        assert!(check(&p, Port::Acct, SECRET, Demands::SIGNED).is_ok());
    }

    #[test]
    fn chap_vector() {
        // MD5(0x16 + "flopsy" + 00..0f), computed with Python's hashlib.
        let mut chap = vec![0x16];
        chap.extend(from_hex("38477cc303c4f93c39c23babc9f3a250"));
        let challenge: Vec<u8> = (0..16).collect();
        assert!(chap_valid(&chap, &challenge, b"flopsy"));
        assert!(!chap_valid(&chap, &challenge, b"flopsx"));
        assert!(!chap_valid(&chap[..10], &challenge, b"flopsy"));
        assert!(!chap_valid(&[], &challenge, b"flopsy"));
    }

    #[test]
    fn pap_passwords_of_every_length_round_trip() {
        let authenticator = [7u8; 16];
        for length in [1usize, 15, 16, 17, 31, 32, 127, 128] {
            let password: Vec<u8> = (0..length).map(|i| b'a' + (i % 26) as u8).collect();
            let hidden = hide_password(&password, &authenticator, SECRET);
            assert_eq!(hidden.len(), length.div_ceil(16) * 16, "{length}");
            assert_eq!(
                reveal_password(&hidden, &authenticator, SECRET).unwrap(),
                password,
                "{length}"
            );
        }
        assert_eq!(reveal_password(&[0; 15], &authenticator, SECRET), None);
        assert_eq!(reveal_password(&[0; 144], &authenticator, SECRET), None);
    }

    fn packet_with(attributes: &[(u8, &[u8])]) -> Vec<u8> {
        let mut p = encode(code::ACCESS_REQUEST, 1, &[3; 16], attributes).unwrap();
        sign_request(&mut p, SECRET);
        p
    }

    #[test]
    fn receive_checks_in_order() {
        let good = packet_with(&[
            (attr::USER_NAME, b"a"),
            (attr::MESSAGE_AUTHENTICATOR, &[0; 16]),
        ]);
        assert!(check(&good, Port::Auth, SECRET, Demands::SIGNED).is_ok());
        // Padding after Length is ignored.
        let mut padded = good.clone();
        padded.extend([0xee; 30]);
        assert_eq!(
            check(&padded, Port::Auth, SECRET, Demands::SIGNED)
                .unwrap()
                .bytes,
            &good[..]
        );

        assert_eq!(
            check(&good[..19], Port::Auth, SECRET, Demands::SIGNED),
            Err(DropReason::BadLength)
        );
        let mut long = good.clone();
        long[3] += 1;
        assert_eq!(
            check(&long, Port::Auth, SECRET, Demands::SIGNED),
            Err(DropReason::BadLength)
        );
        let mut short_length = good.clone();
        short_length[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            check(&short_length, Port::Auth, SECRET, Demands::SIGNED),
            Err(DropReason::BadLength)
        );
        let mut huge = good.clone();
        huge[2..4].copy_from_slice(&4097u16.to_be_bytes());
        huge.resize(5000, 0);
        assert_eq!(
            check(&huge, Port::Auth, SECRET, Demands::SIGNED),
            Err(DropReason::BadLength)
        );

        assert_eq!(
            check(&good, Port::Acct, SECRET, Demands::SIGNED),
            Err(DropReason::UnknownCode)
        );
        let mut coa = good.clone();
        coa[0] = code::COA_REQUEST;
        assert_eq!(
            check(&coa, Port::Auth, SECRET, Demands::SIGNED),
            Err(DropReason::UnknownCode)
        );

        for bad_length in [0u8, 1, 200] {
            let mut p = good.clone();
            p[21] = bad_length;
            assert_eq!(
                check(&p, Port::Auth, SECRET, Demands::SIGNED),
                Err(DropReason::BadAttributes),
                "{bad_length}"
            );
        }
        // A lone trailing byte that cannot be an attribute.
        let mut trailing = good.clone();
        trailing.push(1);
        let length = u16::try_from(trailing.len()).unwrap();
        trailing[2..4].copy_from_slice(&length.to_be_bytes());
        assert_eq!(
            check(&trailing, Port::Auth, SECRET, Demands::SIGNED),
            Err(DropReason::BadAttributes)
        );

        let many: Vec<(u8, &[u8])> = (0..201).map(|_| (attr::NAS_PORT_ID, &b""[..])).collect();
        let p = encode(code::ACCESS_REQUEST, 1, &[3; 16], &many).unwrap();
        assert_eq!(
            check(&p, Port::Auth, SECRET, Demands::default()),
            Err(DropReason::TooManyAttributes)
        );
        let exactly: Vec<(u8, &[u8])> = (0..200).map(|_| (attr::NAS_PORT_ID, &b""[..])).collect();
        let p = encode(code::ACCESS_REQUEST, 1, &[3; 16], &exactly).unwrap();
        assert!(check(&p, Port::Auth, SECRET, Demands::default()).is_ok());

        let p = packet_with(&[(attr::MESSAGE_AUTHENTICATOR, &[0; 15])]);
        assert_eq!(
            check(&p, Port::Auth, SECRET, Demands::SIGNED),
            Err(DropReason::BadMessageAuthenticatorLength)
        );
        let p = packet_with(&[
            (attr::MESSAGE_AUTHENTICATOR, &[0; 16]),
            (attr::MESSAGE_AUTHENTICATOR, &[0; 16]),
        ]);
        assert_eq!(
            check(&p, Port::Auth, SECRET, Demands::SIGNED),
            Err(DropReason::BadMessageAuthenticatorLength)
        );

        let p = packet_with(&[(attr::USER_NAME, b"a")]);
        assert_eq!(
            check(&p, Port::Auth, SECRET, Demands::SIGNED),
            Err(DropReason::MissingMessageAuthenticator)
        );
        assert!(check(&p, Port::Auth, SECRET, Demands::default()).is_ok());
        let mut status = p.clone();
        status[0] = code::STATUS_SERVER;
        assert_eq!(
            check(&status, Port::Auth, SECRET, Demands::default()),
            Err(DropReason::MissingMessageAuthenticator)
        );
        assert_eq!(
            check(&status, Port::Acct, SECRET, Demands::default()),
            Err(DropReason::MissingMessageAuthenticator)
        );
    }

    #[test]
    fn proxy_state_is_taken_only_with_message_authenticator_where_limited() {
        let limited = Demands {
            message_authenticator: false,
            limit_proxy_state: true,
        };
        let proxied = packet_with(&[(attr::USER_NAME, b"a"), (attr::PROXY_STATE, b"p")]);
        assert_eq!(
            check(&proxied, Port::Auth, SECRET, limited),
            Err(DropReason::ProxyStateWithoutMessageAuthenticator)
        );
        assert!(check(&proxied, Port::Auth, SECRET, Demands::default()).is_ok());
        let signed = packet_with(&[
            (attr::MESSAGE_AUTHENTICATOR, &[0; 16]),
            (attr::USER_NAME, b"a"),
            (attr::PROXY_STATE, b"p"),
        ]);
        let checked = check(&signed, Port::Auth, SECRET, limited).unwrap();
        assert!(checked.signed());
        let plain = packet_with(&[(attr::USER_NAME, b"a")]);
        let checked = check(&plain, Port::Auth, SECRET, limited).unwrap();
        assert!(!checked.signed());
    }

    #[test]
    fn attributes_iterate_in_order() {
        let p = packet_with(&[
            (attr::PROXY_STATE, b"one"),
            (attr::USER_NAME, b"u"),
            (attr::PROXY_STATE, b"two"),
        ]);
        let checked = check(&p, Port::Auth, SECRET, Demands::default()).unwrap();
        let states: Vec<&[u8]> = checked
            .attributes()
            .filter(|(t, _)| *t == attr::PROXY_STATE)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(states, vec![&b"one"[..], &b"two"[..]]);
    }

    #[test]
    fn oversized_packets_are_not_encoded() {
        let big = [0u8; 253];
        let many: Vec<(u8, &[u8])> = (0..20).map(|_| (attr::CLASS_FOR_TESTS, &big[..])).collect();
        assert!(encode(code::ACCESS_ACCEPT, 1, &[0; 16], &many).is_none());
    }

    mod attr {
        pub use super::super::attr::*;
        pub const CLASS_FOR_TESTS: u8 = 25;
    }
}
