//! Which attributes an operator may put in a reply: profile `reply` and
//! `coa` lists and a login's own reply attributes. Refused are those that
//! RFC 2865 §5.44 (and RFC 2869 §5.19) forbid in an Access-Accept, the
//! accounting ones, and those liberad writes itself: a second
//! Message-Authenticator or a copied Proxy-State makes a strict NAS discard
//! the whole reply. Checked on the wire form, so that a name from any
//! dictionary (or an alias) cannot slip past.

use super::dictionary::WireAttribute;
use super::mschap::{MICROSOFT, vendor_attr};
use super::packet::attr;

/// Where a list of attributes goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// An Access-Accept (a profile's `reply`, a login's attributes).
    AccessAccept,
    /// A CoA-Request (a profile's `coa`).
    CoaRequest,
}

/// Why `attribute` may not go into `placement`, or `None` when it may.
pub fn refusal(attribute: &WireAttribute, placement: Placement) -> Option<&'static str> {
    if attribute.typ == attr::VENDOR_SPECIFIC {
        return vendor_refusal(&attribute.value);
    }
    if let Some(why) = standard_refusal(attribute.typ) {
        return Some(why);
    }
    if placement == Placement::CoaRequest {
        return match attribute.typ {
            attr::USER_NAME
            | attr::ACCT_SESSION_ID
            | attr::FRAMED_IP_ADDRESS
            | attr::NAS_IP_ADDRESS
            | attr::NAS_IDENTIFIER => Some(
                "liberad identifies the session in every CoA-Request itself, from what the \
                 NAS reported",
            ),
            _ => None,
        };
    }
    None
}

fn standard_refusal(typ: u8) -> Option<&'static str> {
    Some(match typ {
        // RFC 2865 §5.44: 0 in Access-Accept.
        2 | 3 | 4 | 5 | 30 | 31 | 32 | 60 | 61 => {
            "RFC 2865 forbids it in an Access-Accept: it describes the request"
        }
        // RFC 2869 §5.19: request only.
        70 | 77 | 87 => "RFC 2869 forbids it in an Access-Accept: it describes the request",
        // RFC 2866 and 2869 accounting attributes.
        40..=53 | 55 => "an accounting attribute has no place in a reply",
        attr::STATE => "liberad sends no Access-Challenge, so there is no State to carry",
        attr::PROXY_STATE => "liberad copies Proxy-State from the request itself",
        attr::EAP_MESSAGE => "liberad does not speak EAP",
        attr::MESSAGE_AUTHENTICATOR => {
            "liberad puts Message-Authenticator first in every reply itself (BlastRADIUS)"
        }
        attr::ERROR_CAUSE => "Error-Cause belongs only in CoA and Disconnect answers",
        _ => return None,
    })
}

/// The Microsoft attributes of MS-CHAP and MPPE are liberad's to compute;
/// other vendors' attributes are the operator's.
fn vendor_refusal(value: &[u8]) -> Option<&'static str> {
    let vendor = value.get(..4)?;
    if u32::from_be_bytes(vendor.try_into().ok()?) != MICROSOFT {
        return None;
    }
    let typ = *value.get(4)?;
    matches!(
        typ,
        vendor_attr::MS_CHAP_RESPONSE
            | vendor_attr::MS_CHAP_ERROR
            | vendor_attr::MS_MPPE_ENCRYPTION_POLICY
            | vendor_attr::MS_MPPE_ENCRYPTION_TYPES
            | vendor_attr::MS_CHAP_CHALLENGE
            | vendor_attr::MS_CHAP_MPPE_KEYS
            | vendor_attr::MS_MPPE_SEND_KEY
            | vendor_attr::MS_MPPE_RECV_KEY
            | vendor_attr::MS_CHAP2_RESPONSE
            | vendor_attr::MS_CHAP2_SUCCESS
    )
    .then_some(
        "liberad computes the MS-CHAP and MPPE attributes itself (set the MPPE policy in \
         [radius])",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard(typ: u8) -> WireAttribute {
        WireAttribute {
            typ,
            value: vec![0; 4],
        }
    }

    fn microsoft(typ: u8) -> WireAttribute {
        WireAttribute {
            typ: attr::VENDOR_SPECIFIC,
            value: super::super::mschap::vendor_value(typ, &[0; 4]).unwrap(),
        }
    }

    #[test]
    fn what_a_reply_may_not_carry_is_refused() {
        for typ in [2, 3, 4, 24, 33, 44, 60, 79, 80, 101] {
            assert!(
                refusal(&standard(typ), Placement::AccessAccept).is_some(),
                "{typ}"
            );
            assert!(
                refusal(&standard(typ), Placement::CoaRequest).is_some(),
                "{typ}"
            );
        }
        // Framed-Pool, Session-Timeout, Reply-Message, Filter-Id, User-Name
        // in an Access-Accept are fine.
        for typ in [88, 27, 18, 11, 1] {
            assert_eq!(
                refusal(&standard(typ), Placement::AccessAccept),
                None,
                "{typ}"
            );
        }
        // The session's identification is liberad's in a CoA-Request.
        for typ in [1, 8, 32, 44] {
            assert!(
                refusal(&standard(typ), Placement::CoaRequest).is_some(),
                "{typ}"
            );
        }
        assert!(
            refusal(
                &microsoft(vendor_attr::MS_MPPE_SEND_KEY),
                Placement::AccessAccept
            )
            .is_some()
        );
        assert!(
            refusal(
                &microsoft(vendor_attr::MS_CHAP2_SUCCESS),
                Placement::AccessAccept
            )
            .is_some()
        );
        // Another vendor's attribute is the operator's (MikroTik 14988).
        let mikrotik = WireAttribute {
            typ: attr::VENDOR_SPECIFIC,
            value: vec![0, 0, 0x3a, 0x8c, 8, 6, b'1', b'0', b'M', 0],
        };
        assert_eq!(refusal(&mikrotik, Placement::AccessAccept), None);
    }
}
