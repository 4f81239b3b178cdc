//! MS-CHAPv2 (RFC 2759) and its MPPE keys (RFC 3079), carried in RADIUS
//! as Microsoft vendor attributes (RFC 2548): verifying the peer's
//! NT-Response, the authenticator response that proves liberad knew the
//! password too, and the send and receive keys, salt-encrypted for the NAS.
//! Pure functions; the primitives (MD4, SHA-1, DES, MD5) are RustCrypto's.

use des::Des;
use des::cipher::{BlockEncrypt, KeyInit};
use md4::Md4;
use md5::Md5;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Microsoft's vendor id.
pub const MICROSOFT: u32 = 311;

/// Microsoft vendor attribute types (RFC 2548).
pub mod vendor_attr {
    pub const MS_CHAP_RESPONSE: u8 = 1;
    pub const MS_CHAP_ERROR: u8 = 2;
    pub const MS_MPPE_ENCRYPTION_POLICY: u8 = 7;
    pub const MS_MPPE_ENCRYPTION_TYPES: u8 = 8;
    pub const MS_CHAP_CHALLENGE: u8 = 11;
    pub const MS_CHAP_MPPE_KEYS: u8 = 12;
    pub const MS_MPPE_SEND_KEY: u8 = 16;
    pub const MS_MPPE_RECV_KEY: u8 = 17;
    pub const MS_CHAP2_RESPONSE: u8 = 25;
    pub const MS_CHAP2_SUCCESS: u8 = 26;
}

/// An NT password hash: MD4 of the password in UTF-16LE.
pub type NtHash = [u8; 16];

/// The peer's MS-CHAP2-Response (RFC 2548 §2.3.2) with the challenge the
/// NAS sent it (MS-CHAP-Challenge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V2Response<'a> {
    pub ident: u8,
    pub authenticator_challenge: &'a [u8; 16],
    pub peer_challenge: &'a [u8; 16],
    pub nt_response: &'a [u8; 24],
}

impl<'a> V2Response<'a> {
    /// Reads MS-CHAP2-Response (50 bytes: ident, flags, peer challenge,
    /// 8 reserved, NT-Response) and MS-CHAP-Challenge (16 bytes).
    pub fn parse(response: &'a [u8], challenge: &'a [u8]) -> Option<V2Response<'a>> {
        if response.len() != 50 {
            return None;
        }
        Some(V2Response {
            ident: response[0],
            authenticator_challenge: challenge.try_into().ok()?,
            peer_challenge: response[2..18].try_into().ok()?,
            nt_response: response[26..50].try_into().ok()?,
        })
    }
}

/// What a verified MS-CHAPv2 login gives back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V2Success {
    /// `S=` and 40 upper-case hex digits (RFC 2759 §8.7).
    pub authenticator_response: String,
    /// The server's MPPE send key (the peer's receive key).
    pub send_key: [u8; 16],
    /// The server's MPPE receive key (the peer's send key).
    pub recv_key: [u8; 16],
}

/// NtPasswordHash (RFC 2759 §8.3).
pub fn nt_password_hash(password: &str) -> NtHash {
    let mut md4 = Md4::new();
    for unit in password.encode_utf16() {
        md4.update(unit.to_le_bytes());
    }
    md4.finalize().into()
}

/// HashNtPasswordHash (RFC 2759 §8.4).
pub fn hash_nt_password_hash(hash: &NtHash) -> NtHash {
    Md4::digest(hash).into()
}

/// The user name the challenge hash covers: without a Windows domain
/// (`DOMAIN\user` → `user`), as peers compute it.
pub fn challenge_name(user_name: &[u8]) -> &[u8] {
    match user_name.iter().rposition(|&b| b == b'\\') {
        Some(at) => &user_name[at + 1..],
        None => user_name,
    }
}

/// ChallengeHash (RFC 2759 §8.2).
pub fn challenge_hash(peer: &[u8; 16], authenticator: &[u8; 16], user: &[u8]) -> [u8; 8] {
    let digest = Sha1::new()
        .chain_update(peer)
        .chain_update(authenticator)
        .chain_update(user)
        .finalize();
    leading(&digest.into())
}

/// ChallengeResponse (RFC 2759 §8.5): the challenge DES-encrypted with
/// each 7-byte third of the zero-padded hash.
pub fn challenge_response(challenge: &[u8; 8], hash: &NtHash) -> [u8; 24] {
    let mut key = [0u8; 21];
    key[..16].copy_from_slice(hash);
    let mut response = [0u8; 24];
    for (n, out) in response.chunks_exact_mut(8).enumerate() {
        let third: [u8; 7] = std::array::from_fn(|i| key[7 * n + i]);
        let cipher = Des::new(&des_key(&third).into());
        let mut block = (*challenge).into();
        cipher.encrypt_block(&mut block);
        out.copy_from_slice(&block);
    }
    response
}

/// Spreads 56 key bits over 8 bytes, one parity bit each (left clear:
/// DES ignores it).
/// The first `N` bytes of a SHA-1 digest (checked at compile time).
fn leading<const N: usize>(digest: &[u8; 20]) -> [u8; N] {
    const { assert!(N <= 20) };
    std::array::from_fn(|i| digest[i])
}

fn des_key(seven: &[u8; 7]) -> [u8; 8] {
    let bits = seven.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    std::array::from_fn(|i| {
        let shift = 49 - 7 * i;
        (((bits >> shift) & 0x7f) as u8) << 1
    })
}

/// GenerateNTResponse (RFC 2759 §8.1): what a peer sends.
pub fn nt_response(
    authenticator: &[u8; 16],
    peer: &[u8; 16],
    user: &[u8],
    hash: &NtHash,
) -> [u8; 24] {
    challenge_response(&challenge_hash(peer, authenticator, user), hash)
}

const MAGIC1: &[u8; 39] = b"Magic server to client signing constant";
const MAGIC2: &[u8; 41] = b"Pad to make it do more than one iteration";

/// GenerateAuthenticatorResponse (RFC 2759 §8.7).
pub fn authenticator_response(
    hash: &NtHash,
    nt_response: &[u8; 24],
    peer: &[u8; 16],
    authenticator: &[u8; 16],
    user: &[u8],
) -> String {
    let digest = Sha1::new()
        .chain_update(hash_nt_password_hash(hash))
        .chain_update(nt_response)
        .chain_update(MAGIC1)
        .finalize();
    let digest = Sha1::new()
        .chain_update(digest)
        .chain_update(challenge_hash(peer, authenticator, user))
        .chain_update(MAGIC2)
        .finalize();
    let mut text = String::with_capacity(42);
    text.push_str("S=");
    for byte in digest {
        text.push_str(&format!("{byte:02X}"));
    }
    text
}

const MASTER_MAGIC: &[u8; 27] = b"This is the MPPE Master Key";
const SEND_MAGIC_SERVER: &[u8; 84] =
    b"On the client side, this is the receive key; on the server side, it is the send key.";
const RECV_MAGIC_SERVER: &[u8; 84] =
    b"On the client side, this is the send key; on the server side, it is the receive key.";
const SHS_PAD1: [u8; 40] = [0x00; 40];
const SHS_PAD2: [u8; 40] = [0xf2; 40];

/// GetMasterKey (RFC 3079 §3.4).
pub fn master_key(hash: &NtHash, nt_response: &[u8; 24]) -> [u8; 16] {
    let digest = Sha1::new()
        .chain_update(hash_nt_password_hash(hash))
        .chain_update(nt_response)
        .chain_update(MASTER_MAGIC)
        .finalize();
    leading(&digest.into())
}

/// GetAsymmetricStartKey (RFC 3079 §3.4) for a 128-bit key, from the
/// server's side: `send` for its send key, else its receive key.
pub fn server_start_key(master: &[u8; 16], send: bool) -> [u8; 16] {
    let magic: &[u8] = if send {
        SEND_MAGIC_SERVER
    } else {
        RECV_MAGIC_SERVER
    };
    let digest = Sha1::new()
        .chain_update(master)
        .chain_update(SHS_PAD1)
        .chain_update(magic)
        .chain_update(SHS_PAD2)
        .finalize();
    leading(&digest.into())
}

/// Verifies a peer's NT-Response against the login's NT hash; on success,
/// what the Access-Accept carries.
pub fn verify_v2(response: &V2Response<'_>, user_name: &[u8], hash: &NtHash) -> Option<V2Success> {
    let user = challenge_name(user_name);
    let expected = nt_response(
        response.authenticator_challenge,
        response.peer_challenge,
        user,
        hash,
    );
    if !bool::from(expected.ct_eq(response.nt_response)) {
        return None;
    }
    let master = master_key(hash, response.nt_response);
    Some(V2Success {
        authenticator_response: authenticator_response(
            hash,
            response.nt_response,
            response.peer_challenge,
            response.authenticator_challenge,
            user,
        ),
        send_key: server_start_key(&master, true),
        recv_key: server_start_key(&master, false),
    })
}

/// Encrypts an MPPE key for MS-MPPE-Send-Key / Recv-Key (RFC 2548 §2.4.2):
/// the salt (its high bit set, unique within the reply), then the key's
/// length, the key and zero padding to 16-byte blocks, each block XORed
/// with MD5(secret, request authenticator and salt / previous block).
pub fn encrypt_key(
    key: &[u8],
    salt: u16,
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Vec<u8> {
    let salt = (salt | 0x8000).to_be_bytes();
    let mut plain = Vec::with_capacity(key.len() + 16);
    plain.push(u8::try_from(key.len()).unwrap_or(u8::MAX));
    plain.extend_from_slice(key);
    plain.resize(plain.len().div_ceil(16) * 16, 0);
    let mut out = Vec::with_capacity(2 + plain.len());
    out.extend_from_slice(&salt);
    let mut previous: Vec<u8> = [request_authenticator.as_slice(), &salt].concat();
    for block in plain.chunks_exact(16) {
        let pad = Md5::new()
            .chain_update(secret)
            .chain_update(&previous)
            .finalize();
        let cipher: Vec<u8> = block.iter().zip(pad).map(|(p, b)| p ^ b).collect();
        out.extend_from_slice(&cipher);
        previous = cipher;
    }
    out
}

/// The inverse of [`encrypt_key`], as a NAS does it; `None` when the value
/// is malformed.
pub fn decrypt_key(
    value: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Option<Vec<u8>> {
    if value.len() < 18 || (value.len() - 2) % 16 != 0 || value[0] & 0x80 == 0 {
        return None;
    }
    let (salt, cipher) = value.split_at(2);
    let mut plain = Vec::with_capacity(cipher.len());
    let mut previous: Vec<u8> = [request_authenticator.as_slice(), salt].concat();
    for block in cipher.chunks_exact(16) {
        let pad = Md5::new()
            .chain_update(secret)
            .chain_update(&previous)
            .finalize();
        plain.extend(block.iter().zip(pad).map(|(c, b)| c ^ b));
        previous = block.to_vec();
    }
    let length = usize::from(plain[0]);
    plain.get(1..1 + length).map(<[u8]>::to_vec)
}

/// A Microsoft Vendor-Specific value: vendor id, type, length, data.
pub fn vendor_value(typ: u8, data: &[u8]) -> Option<Vec<u8>> {
    let length = u8::try_from(data.len() + 2).ok()?;
    let mut value = Vec::with_capacity(6 + data.len());
    value.extend_from_slice(&MICROSOFT.to_be_bytes());
    value.push(typ);
    value.push(length);
    value.extend_from_slice(data);
    Some(value)
}

/// Finds a Microsoft vendor attribute's data in a Vendor-Specific value
/// holding one sub-attribute.
pub fn vendor_data(vsa: &[u8], typ: u8) -> Option<&[u8]> {
    if vsa.len() < 6 || vsa[..4] != MICROSOFT.to_be_bytes() || vsa[4] != typ {
        return None;
    }
    let length = usize::from(vsa[5]);
    (length >= 2 && length == vsa.len() - 4).then(|| &vsa[6..])
}

/// The hex form of bytes, upper case.
pub fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn array<const N: usize>(text: &str) -> [u8; N] {
        hex(text).try_into().unwrap()
    }

    // RFC 2759 §9.2.
    const AUTHENTICATOR: &str = "5B5D7C7D7B3F2F3E3C2C602132262628";
    const PEER: &str = "21402324255E262A28295F2B3A337C7E";
    const NT_RESPONSE: &str = "82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF";

    #[test]
    fn rfc2759_test_vectors() {
        let hash = nt_password_hash("clientPass");
        assert_eq!(hash, array("44EBBA8D5312B8D611474411F56989AE"));
        assert_eq!(
            hash_nt_password_hash(&hash),
            array("41C00C584BD2D91C4017A2A12FA59F3F")
        );
        let (authenticator, peer) = (array(AUTHENTICATOR), array(PEER));
        assert_eq!(
            challenge_hash(&peer, &authenticator, b"User"),
            array("D02E4386BCE91226")
        );
        let response = nt_response(&authenticator, &peer, b"User", &hash);
        assert_eq!(response, array(NT_RESPONSE));
        assert_eq!(
            authenticator_response(&hash, &response, &peer, &authenticator, b"User"),
            "S=407A5589115FD0D6209F510FE9C04566932CDA56"
        );
    }

    #[test]
    fn rfc3079_key_derivation_vectors() {
        let hash = nt_password_hash("clientPass");
        let master = master_key(&hash, &array(NT_RESPONSE));
        assert_eq!(master, array("FDECE3717A8C838CB388E527AE3CDD31"));
        // §3.5.3's SendStartKey128 is the server's send key.
        assert_eq!(
            server_start_key(&master, true),
            array("8B7CDC149B993A1BA118CB153F56DCCB")
        );
        assert_eq!(
            server_start_key(&master, false),
            array("D5F0E9521E3EA9589645E86051C82226")
        );
    }

    #[test]
    fn verification_accepts_the_right_response_only() {
        let hash = nt_password_hash("clientPass");
        let (authenticator, peer): ([u8; 16], [u8; 16]) = (array(AUTHENTICATOR), array(PEER));
        let mut value = vec![7u8, 0];
        value.extend_from_slice(&peer);
        value.extend_from_slice(&[0; 8]);
        value.extend_from_slice(&hex(NT_RESPONSE));
        let response = V2Response::parse(&value, &authenticator).unwrap();
        assert_eq!(response.ident, 7);
        // A Windows domain is not part of the challenge hash.
        let success = verify_v2(&response, b"EXAMPLE\\User", &hash).unwrap();
        assert_eq!(
            success.authenticator_response,
            "S=407A5589115FD0D6209F510FE9C04566932CDA56"
        );
        assert_eq!(success.send_key, array("8B7CDC149B993A1BA118CB153F56DCCB"));
        assert!(verify_v2(&response, b"User", &nt_password_hash("clientpass")).is_none());
        assert!(verify_v2(&response, b"Other", &hash).is_none());
        assert!(V2Response::parse(&value[..49], &authenticator).is_none());
        assert!(V2Response::parse(&value, &authenticator[..8]).is_none());
    }

    #[test]
    fn nt_hash_of_non_ascii_passwords_is_over_utf16() {
        // MD4 of the empty string.
        assert_eq!(
            nt_password_hash(""),
            array("31D6CFE0D16AE931B73C59D7E0C089C0")
        );
        // "ç" is one UTF-16 unit (0x00E7), not its two UTF-8 bytes.
        let expected: NtHash = Md4::digest([0xe7, 0x00]).into();
        assert_eq!(nt_password_hash("ç"), expected);
    }

    #[test]
    fn mppe_keys_round_trip_and_change_with_the_salt() {
        let key = array::<16>("8B7CDC149B993A1BA118CB153F56DCCB");
        let authenticator = [9u8; 16];
        let a = encrypt_key(&key, 1, b"secret", &authenticator);
        let b = encrypt_key(&key, 2, b"secret", &authenticator);
        assert_eq!(a.len(), 34);
        assert_eq!(a[0] & 0x80, 0x80);
        assert_ne!(a[2..], b[2..]);
        assert_eq!(decrypt_key(&a, b"secret", &authenticator).unwrap(), key);
        assert_eq!(decrypt_key(&b, b"secret", &authenticator).unwrap(), key);
        assert_ne!(
            decrypt_key(&a, b"other", &authenticator),
            Some(key.to_vec())
        );
        assert!(decrypt_key(&a[..20], b"secret", &authenticator).is_none());
    }

    #[test]
    fn vendor_values_round_trip() {
        let value = vendor_value(vendor_attr::MS_CHAP2_SUCCESS, b"\x07S=00").unwrap();
        assert_eq!(value[..6], [0, 0, 1, 55, 26, 7]);
        assert_eq!(
            vendor_data(&value, vendor_attr::MS_CHAP2_SUCCESS),
            Some(&b"\x07S=00"[..])
        );
        assert_eq!(vendor_data(&value, vendor_attr::MS_CHAP_ERROR), None);
        assert_eq!(
            vendor_data(&value[..7], vendor_attr::MS_CHAP2_SUCCESS),
            None
        );
        assert!(vendor_value(1, &[0; 254]).is_none());
    }
}
