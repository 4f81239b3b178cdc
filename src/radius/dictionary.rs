//! RADIUS dictionaries in FreeRADIUS format, and the encoding of
//! `Name = value` attributes to and from the wire through them.
//!
//! The keywords read are `ATTRIBUTE`, `VALUE`, `VENDOR`, `BEGIN-VENDOR`,
//! `END-VENDOR` and `$INCLUDE`; `BEGIN-TLV`/`END-TLV` blocks and `FLAGS`
//! lines are accepted and their contents left unused. Attributes of types
//! liberad cannot encode (tlv, abinary, ...) are kept by name so that using
//! one says so instead of "unknown attribute". Any other line is an error
//! naming the file and line.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use chrono::DateTime;

use crate::model::ReplyAttribute;

/// The standard attribute that carries vendor attributes.
pub const VENDOR_SPECIFIC: u8 = 26;
/// How deep `$INCLUDE` may nest (a loop stops here).
const MAX_INCLUDE_DEPTH: usize = 16;
/// Largest attribute value on the wire.
const MAX_VALUE: usize = 253;

/// The value types liberad encodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueType {
    String,
    Octets,
    IpAddr,
    Ipv6Addr,
    Ipv6Prefix,
    Integer,
    Byte,
    Short,
    Integer64,
    Date,
    /// A type that the dictionary names but liberad does not encode.
    Unsupported(String),
}

impl ValueType {
    fn parse(name: &str) -> ValueType {
        // `octets[16]` and the like give a fixed size; the base type counts.
        let base = name.split('[').next().unwrap_or(name);
        match base.to_ascii_lowercase().as_str() {
            "string" | "text" => ValueType::String,
            "octets" => ValueType::Octets,
            "ipaddr" | "ipv4addr" => ValueType::IpAddr,
            "ipv6addr" => ValueType::Ipv6Addr,
            "ipv6prefix" => ValueType::Ipv6Prefix,
            "integer" | "uint32" => ValueType::Integer,
            "byte" | "uint8" => ValueType::Byte,
            "short" | "uint16" => ValueType::Short,
            "integer64" | "uint64" => ValueType::Integer64,
            "date" => ValueType::Date,
            _ => ValueType::Unsupported(name.to_owned()),
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ValueType::String => "string",
            ValueType::Octets => "octets",
            ValueType::IpAddr => "ipaddr",
            ValueType::Ipv6Addr => "ipv6addr",
            ValueType::Ipv6Prefix => "ipv6prefix",
            ValueType::Integer => "integer",
            ValueType::Byte => "byte",
            ValueType::Short => "short",
            ValueType::Integer64 => "integer64",
            ValueType::Date => "date",
            ValueType::Unsupported(name) => name,
        };
        f.write_str(name)
    }
}

/// A vendor and the layout of its attributes inside Vendor-Specific.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vendor {
    pub name: String,
    pub id: u32,
    /// Bytes of the vendor attribute's type: 1, 2 or 4.
    pub type_size: u8,
    /// Bytes of the vendor attribute's length: 0, 1 or 2.
    pub length_size: u8,
}

/// One attribute of a dictionary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributeDef {
    pub name: String,
    /// 0 for standard attributes.
    pub vendor: u32,
    pub number: u32,
    pub value_type: ValueType,
    /// RFC 2868 tag: integers carry it in their first byte.
    pub has_tag: bool,
    /// Set when the number cannot be encoded (a TLV child, a FreeRADIUS
    /// internal attribute): why.
    pub unusable: Option<String>,
}

/// A dictionary problem: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct DictionaryError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// A `Name = value` that cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("unknown attribute {0:?} (not in any loaded dictionary)")]
    UnknownAttribute(String),
    #[error("attribute {name}: {reason}")]
    Unusable { name: String, reason: String },
    #[error("attribute {name}: {value:?} is not a valid {value_type}")]
    BadValue {
        name: String,
        value: String,
        value_type: ValueType,
    },
    #[error("attribute {name}: the value is longer than an attribute can carry")]
    TooLong { name: String },
}

/// An attribute ready for the wire: its type and its value (for a vendor
/// attribute, type 26 and the whole Vendor-Specific value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireAttribute {
    pub typ: u8,
    pub value: Vec<u8>,
}

impl WireAttribute {
    /// An attribute of a standard type, if the value fits.
    pub fn new(typ: u8, value: Vec<u8>) -> Option<WireAttribute> {
        (value.len() <= MAX_VALUE).then_some(WireAttribute { typ, value })
    }

    /// Appends the attribute, type-length-value, to a packet body.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(self.typ);
        // Lengths were checked when the attribute was built.
        out.push(u8::try_from(self.value.len() + 2).unwrap_or(u8::MAX));
        out.extend_from_slice(&self.value);
    }
}

/// A set of dictionaries merged together.
#[derive(Clone, Debug, Default)]
pub struct Dictionary {
    attributes: Vec<AttributeDef>,
    by_name: HashMap<String, usize>,
    by_code: HashMap<(u32, u32), usize>,
    vendors: HashMap<String, Vendor>,
    vendor_names: HashMap<u32, String>,
    /// `VALUE` names per attribute name (lowercase keys).
    values: HashMap<String, HashMap<String, u64>>,
}

/// Where the parser is inside a file.
struct Cursor<'a> {
    file: &'a Path,
    line: usize,
}

impl Cursor<'_> {
    fn error(&self, message: impl Into<String>) -> DictionaryError {
        DictionaryError {
            file: self.file.to_owned(),
            line: self.line,
            message: message.into(),
        }
    }
}

impl Dictionary {
    /// The built-in dictionary of the standard attributes liberad uses.
    pub fn builtin() -> Dictionary {
        let mut dictionary = Dictionary::default();
        let text = include_str!("dictionary.rfc");
        // The built-in text is part of the program and tested: it parses.
        if let Err(e) = dictionary.parse_text(text, Path::new("(built-in)"), 0) {
            tracing::error!(error = %e, "the built-in dictionary does not parse");
        }
        dictionary
    }

    /// Reads a dictionary file (and what it includes) into this one.
    pub fn load_file(&mut self, path: &Path) -> Result<(), DictionaryError> {
        self.load(path, 0, false)
    }

    fn load(&mut self, path: &Path, depth: usize, optional: bool) -> Result<(), DictionaryError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(DictionaryError {
                    file: path.to_owned(),
                    line: 0,
                    message: format!("cannot read: {e}"),
                });
            }
        };
        self.parse_text(&text, path, depth)
    }

    /// Parses dictionary text; `file` names it in errors and anchors
    /// relative `$INCLUDE`s.
    pub fn parse_text(
        &mut self,
        text: &str,
        file: &Path,
        depth: usize,
    ) -> Result<(), DictionaryError> {
        let mut vendor: Option<Vendor> = None;
        let mut tlv_depth = 0usize;
        for (index, raw) in text.lines().enumerate() {
            let at = Cursor {
                file,
                line: index + 1,
            };
            let line = raw.split('#').next().unwrap_or("");
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(keyword) = fields.first() else {
                continue;
            };
            match *keyword {
                "$INCLUDE" | "$INCLUDE-" => {
                    let Some(name) = fields.get(1) else {
                        return Err(at.error("$INCLUDE needs a file name"));
                    };
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(at.error("$INCLUDE nested too deep (a loop?)"));
                    }
                    let target = match file.parent() {
                        Some(dir) if Path::new(name).is_relative() => dir.join(name),
                        _ => PathBuf::from(name),
                    };
                    let optional = *keyword == "$INCLUDE-";
                    self.load(&target, depth + 1, optional).map_err(|e| {
                        if e.line == 0 {
                            at.error(format!("$INCLUDE {}: {}", target.display(), e.message))
                        } else {
                            e
                        }
                    })?;
                }
                "VENDOR" => self.parse_vendor(&fields, &at)?,
                "BEGIN-VENDOR" => {
                    let Some(name) = fields.get(1) else {
                        return Err(at.error("BEGIN-VENDOR needs a vendor name"));
                    };
                    let Some(v) = self.vendors.get(&name.to_ascii_lowercase()) else {
                        return Err(at.error(format!("BEGIN-VENDOR of unknown vendor {name}")));
                    };
                    vendor = Some(v.clone());
                }
                "END-VENDOR" => vendor = None,
                "BEGIN-TLV" => tlv_depth += 1,
                "END-TLV" => tlv_depth = tlv_depth.saturating_sub(1),
                "FLAGS" => {}
                "ATTRIBUTE" => {
                    self.parse_attribute(&fields, vendor.as_ref(), tlv_depth > 0, &at)?;
                }
                "VALUE" => self.parse_value(&fields, &at)?,
                other => return Err(at.error(format!("unknown keyword {other:?}"))),
            }
        }
        Ok(())
    }

    fn parse_vendor(&mut self, fields: &[&str], at: &Cursor<'_>) -> Result<(), DictionaryError> {
        let (Some(name), Some(number)) = (fields.get(1), fields.get(2)) else {
            return Err(at.error("VENDOR needs a name and a number"));
        };
        let id = parse_number(number)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| at.error(format!("vendor number {number:?} is not a number")))?;
        let (mut type_size, mut length_size) = (1u8, 1u8);
        if let Some(format) = fields.get(3).and_then(|f| f.strip_prefix("format=")) {
            let mut parts = format.split(',');
            let t = parts.next().and_then(|p| p.parse::<u8>().ok());
            let l = parts.next().and_then(|p| p.parse::<u8>().ok());
            match (t, l) {
                (Some(t @ (1 | 2 | 4)), Some(l @ (0..=2))) => {
                    type_size = t;
                    length_size = l;
                }
                _ => return Err(at.error(format!("vendor format {format:?} is not t,l"))),
            }
        }
        let vendor = Vendor {
            name: (*name).to_owned(),
            id,
            type_size,
            length_size,
        };
        self.vendor_names.insert(id, vendor.name.clone());
        self.vendors.insert(name.to_ascii_lowercase(), vendor);
        Ok(())
    }

    fn parse_attribute(
        &mut self,
        fields: &[&str],
        vendor: Option<&Vendor>,
        in_tlv: bool,
        at: &Cursor<'_>,
    ) -> Result<(), DictionaryError> {
        let (Some(name), Some(number), Some(type_name)) =
            (fields.get(1), fields.get(2), fields.get(3))
        else {
            return Err(at.error("ATTRIBUTE needs a name, a number and a type"));
        };
        let mut vendor = vendor.cloned();
        let mut has_tag = false;
        if let Some(extra) = fields.get(4) {
            // Either flags (has_tag, encrypt=1, ...) or, in the old form, the
            // vendor's name.
            let flags = extra.contains('=')
                || extra
                    .split(',')
                    .all(|f| matches!(f, "has_tag" | "concat" | "array" | "virtual" | "secret"));
            if flags {
                has_tag = extra.split(',').any(|f| f == "has_tag");
            } else if let Some(v) = self.vendors.get(&extra.to_ascii_lowercase()) {
                vendor = Some(v.clone());
            } else {
                return Err(at.error(format!("unknown flag or vendor {extra:?}")));
            }
        }
        let value_type = ValueType::parse(type_name);
        let (number, mut unusable) = match parse_number(number) {
            Some(n) => (n, None),
            None if number.contains('.') => (
                0,
                Some("a TLV sub-attribute, which liberad does not encode".to_owned()),
            ),
            None => return Err(at.error(format!("attribute number {number:?} is not a number"))),
        };
        if in_tlv {
            unusable = Some("inside a TLV, which liberad does not encode".to_owned());
        }
        let limit: u64 = match &vendor {
            None => 255,
            Some(v) => match v.type_size {
                1 => 255,
                2 => 65_535,
                _ => u64::from(u32::MAX),
            },
        };
        if unusable.is_none() && (number == 0 || number > limit) {
            unusable = Some(format!(
                "number {number} does not fit a RADIUS attribute (an internal attribute?)"
            ));
        }
        if let ValueType::Unsupported(t) = &value_type {
            unusable.get_or_insert_with(|| format!("type {t} is not supported by liberad"));
        }
        let def = AttributeDef {
            name: (*name).to_owned(),
            vendor: vendor.as_ref().map(|v| v.id).unwrap_or(0),
            number: u32::try_from(number).unwrap_or(0),
            value_type,
            has_tag,
            unusable,
        };
        let index = self.attributes.len();
        let code = (def.vendor, def.number);
        let usable = def.unusable.is_none();
        self.by_name.insert(name.to_ascii_lowercase(), index);
        if usable {
            self.by_code.entry(code).or_insert(index);
        }
        self.attributes.push(def);
        Ok(())
    }

    fn parse_value(&mut self, fields: &[&str], at: &Cursor<'_>) -> Result<(), DictionaryError> {
        let (Some(attribute), Some(name), Some(number)) =
            (fields.get(1), fields.get(2), fields.get(3))
        else {
            return Err(at.error("VALUE needs an attribute, a name and a number"));
        };
        let number = parse_number(number)
            .ok_or_else(|| at.error(format!("value {number:?} is not a number")))?;
        self.values
            .entry(attribute.to_ascii_lowercase())
            .or_default()
            .insert(name.to_ascii_lowercase(), number);
        Ok(())
    }

    /// The attribute of that name (case does not matter).
    pub fn attribute(&self, name: &str) -> Option<&AttributeDef> {
        self.by_name
            .get(&name.to_ascii_lowercase())
            .and_then(|i| self.attributes.get(*i))
    }

    /// The attribute with that vendor and number.
    pub fn attribute_by_code(&self, vendor: u32, number: u32) -> Option<&AttributeDef> {
        self.by_code
            .get(&(vendor, number))
            .and_then(|i| self.attributes.get(*i))
    }

    pub fn vendor(&self, name: &str) -> Option<&Vendor> {
        self.vendors.get(&name.to_ascii_lowercase())
    }

    fn vendor_by_id(&self, id: u32) -> Option<&Vendor> {
        self.vendor_names
            .get(&id)
            .and_then(|name| self.vendor(name))
    }

    /// Puts `Name = value` on the wire.
    pub fn encode(&self, attribute: &ReplyAttribute) -> Result<WireAttribute, EncodeError> {
        let def = self
            .attribute(&attribute.name)
            .ok_or_else(|| EncodeError::UnknownAttribute(attribute.name.clone()))?;
        if let Some(reason) = &def.unusable {
            return Err(EncodeError::Unusable {
                name: def.name.clone(),
                reason: reason.clone(),
            });
        }
        let data = self.encode_value(def, &attribute.value)?;
        self.wrap(def, data)
    }

    /// The bytes of a value of the attribute's type.
    fn encode_value(&self, def: &AttributeDef, value: &str) -> Result<Vec<u8>, EncodeError> {
        let bad = || EncodeError::BadValue {
            name: def.name.clone(),
            value: value.to_owned(),
            value_type: def.value_type.clone(),
        };
        let named = || {
            self.values
                .get(&def.name.to_ascii_lowercase())
                .and_then(|names| names.get(&value.to_ascii_lowercase()))
                .copied()
        };
        let number = || named().or_else(|| parse_number(value));
        let bytes = match &def.value_type {
            ValueType::String => value.as_bytes().to_vec(),
            ValueType::Octets => match value
                .strip_prefix("0x")
                .or_else(|| value.strip_prefix("0X"))
            {
                Some(hex) => decode_hex(hex).ok_or_else(bad)?,
                None => value.as_bytes().to_vec(),
            },
            ValueType::IpAddr => value
                .parse::<Ipv4Addr>()
                .map_err(|_| bad())?
                .octets()
                .to_vec(),
            ValueType::Ipv6Addr => value
                .parse::<Ipv6Addr>()
                .map_err(|_| bad())?
                .octets()
                .to_vec(),
            ValueType::Ipv6Prefix => {
                let net = value.parse::<ipnet::Ipv6Net>().map_err(|_| bad())?;
                let length = net.prefix_len();
                let significant = usize::from(length).div_ceil(8);
                let mut out = vec![0, length];
                out.extend_from_slice(&net.network().octets()[..significant]);
                out
            }
            ValueType::Integer if def.has_tag => {
                let n = number().filter(|n| *n < (1 << 24)).ok_or_else(bad)?;
                let b = u32::try_from(n).map_err(|_| bad())?.to_be_bytes();
                vec![0, b[1], b[2], b[3]]
            }
            ValueType::Integer => u32::try_from(number().ok_or_else(bad)?)
                .map_err(|_| bad())?
                .to_be_bytes()
                .to_vec(),
            ValueType::Byte => vec![u8::try_from(number().ok_or_else(bad)?).map_err(|_| bad())?],
            ValueType::Short => u16::try_from(number().ok_or_else(bad)?)
                .map_err(|_| bad())?
                .to_be_bytes()
                .to_vec(),
            ValueType::Integer64 => number().ok_or_else(bad)?.to_be_bytes().to_vec(),
            ValueType::Date => {
                let seconds = match parse_number(value) {
                    Some(n) => n,
                    None => DateTime::parse_from_rfc3339(value)
                        .ok()
                        .and_then(|t| u64::try_from(t.timestamp()).ok())
                        .ok_or_else(bad)?,
                };
                u32::try_from(seconds)
                    .map_err(|_| bad())?
                    .to_be_bytes()
                    .to_vec()
            }
            ValueType::Unsupported(_) => return Err(bad()),
        };
        Ok(bytes)
    }

    /// Frames value bytes as a standard attribute or inside Vendor-Specific.
    fn wrap(&self, def: &AttributeDef, data: Vec<u8>) -> Result<WireAttribute, EncodeError> {
        let too_long = || EncodeError::TooLong {
            name: def.name.clone(),
        };
        if def.vendor == 0 {
            let typ = u8::try_from(def.number).map_err(|_| too_long())?;
            if data.len() > MAX_VALUE {
                return Err(too_long());
            }
            return Ok(WireAttribute { typ, value: data });
        }
        let vendor = self
            .vendor_by_id(def.vendor)
            .ok_or_else(|| EncodeError::Unusable {
                name: def.name.clone(),
                reason: format!("vendor {} is not defined", def.vendor),
            })?;
        let mut value = def.vendor.to_be_bytes().to_vec();
        let header = usize::from(vendor.type_size) + usize::from(vendor.length_size);
        match vendor.type_size {
            1 => value.push(u8::try_from(def.number).map_err(|_| too_long())?),
            2 => value.extend(
                u16::try_from(def.number)
                    .map_err(|_| too_long())?
                    .to_be_bytes(),
            ),
            _ => value.extend(def.number.to_be_bytes()),
        }
        let length = header + data.len();
        match vendor.length_size {
            0 => {}
            1 => value.push(u8::try_from(length).map_err(|_| too_long())?),
            _ => value.extend(u16::try_from(length).map_err(|_| too_long())?.to_be_bytes()),
        }
        value.extend_from_slice(&data);
        if value.len() > MAX_VALUE {
            return Err(too_long());
        }
        Ok(WireAttribute {
            typ: VENDOR_SPECIFIC,
            value,
        })
    }

    /// Reads a Vendor-Specific value back into its vendor attributes:
    /// `(vendor id, vendor type, data)` for each one it holds.
    pub fn split_vendor_specific<'v>(&self, value: &'v [u8]) -> Option<Vec<(u32, u32, &'v [u8])>> {
        let id = u32::from_be_bytes(value.get(..4)?.try_into().ok()?);
        let (type_size, length_size) = self
            .vendor_by_id(id)
            .map(|v| (usize::from(v.type_size), usize::from(v.length_size)))
            .unwrap_or((1, 1));
        let mut rest = value.get(4..)?;
        let mut out = Vec::new();
        while !rest.is_empty() {
            let number = read_be(rest.get(..type_size)?)?;
            let length = if length_size == 0 {
                rest.len()
            } else {
                usize::try_from(read_be(rest.get(type_size..type_size + length_size)?)?).ok()?
            };
            let header = type_size + length_size;
            if length < header || length > rest.len() {
                return None;
            }
            out.push((id, u32::try_from(number).ok()?, rest.get(header..length)?));
            rest = rest.get(length..)?;
        }
        Some(out)
    }

    /// Shows one wire attribute as `Name = value` (for logs and tests).
    /// Vendor-Specific attributes are opened up through the dictionary.
    pub fn describe(&self, typ: u8, value: &[u8]) -> Vec<String> {
        if typ == VENDOR_SPECIFIC
            && let Some(parts) = self.split_vendor_specific(value)
        {
            return parts
                .into_iter()
                .map(
                    |(vendor, number, data)| match self.attribute_by_code(vendor, number) {
                        Some(def) => format!("{} = {}", def.name, self.format_value(def, data)),
                        None => format!("Vendor-{vendor}-Attr-{number} = 0x{}", hex(data)),
                    },
                )
                .collect();
        }
        match self.attribute_by_code(0, u32::from(typ)) {
            Some(def) => vec![format!("{} = {}", def.name, self.format_value(def, value))],
            None => vec![format!("Attr-{typ} = 0x{}", hex(value))],
        }
    }

    fn format_value(&self, def: &AttributeDef, data: &[u8]) -> String {
        let number = || match data.len() {
            1 | 2 | 4 | 8 => read_be(data),
            _ => None,
        };
        let name_of = |n: u64| {
            self.values
                .get(&def.name.to_ascii_lowercase())
                .and_then(|names| names.iter().find(|(_, v)| **v == n))
                .map(|(name, _)| name.clone())
        };
        match &def.value_type {
            ValueType::String => {
                String::from_utf8(data.to_vec()).unwrap_or_else(|_| format!("0x{}", hex(data)))
            }
            ValueType::IpAddr => <[u8; 4]>::try_from(data)
                .map(|b| Ipv4Addr::from(b).to_string())
                .unwrap_or_else(|_| format!("0x{}", hex(data))),
            ValueType::Ipv6Addr => <[u8; 16]>::try_from(data)
                .map(|b| Ipv6Addr::from(b).to_string())
                .unwrap_or_else(|_| format!("0x{}", hex(data))),
            ValueType::Integer
            | ValueType::Byte
            | ValueType::Short
            | ValueType::Integer64
            | ValueType::Date => match number() {
                Some(n) => name_of(n).unwrap_or_else(|| n.to_string()),
                None => format!("0x{}", hex(data)),
            },
            ValueType::Octets | ValueType::Ipv6Prefix | ValueType::Unsupported(_) => {
                format!("0x{}", hex(data))
            }
        }
    }
}

fn read_be(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 8 {
        return None;
    }
    Some(bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
}

/// A decimal or `0x` hexadecimal number.
fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(text: &str) -> ReplyAttribute {
        text.parse().unwrap()
    }

    fn dictionary_with(text: &str) -> Dictionary {
        let mut d = Dictionary::builtin();
        d.parse_text(text, Path::new("test.dict"), 0).unwrap();
        d
    }

    const MIKROTIK: &str = "VENDOR Mikrotik 14988\nBEGIN-VENDOR Mikrotik\n\
        ATTRIBUTE Mikrotik-Rate-Limit 8 string\nATTRIBUTE Mikrotik-Address-List 19 string\n\
        END-VENDOR Mikrotik\n";

    #[test]
    fn the_builtin_dictionary_knows_the_standard_attributes() {
        let d = Dictionary::builtin();
        let session = d.attribute("session-timeout").unwrap();
        assert_eq!((session.vendor, session.number), (0, 27));
        assert_eq!(session.value_type, ValueType::Integer);
        let ms = d.attribute("MS-CHAP2-Response").unwrap();
        assert_eq!((ms.vendor, ms.number), (311, 25));
        assert_eq!(d.attribute_by_code(0, 101).unwrap().name, "Error-Cause");
    }

    #[test]
    fn standard_values_encode_by_type() {
        let d = Dictionary::builtin();
        let cases: [(&str, u8, &[u8]); 8] = [
            ("Session-Timeout = 3600", 27, &[0, 0, 0x0e, 0x10]),
            ("Service-Type = Framed-User", 6, &[0, 0, 0, 2]),
            ("Framed-IP-Address = 10.0.0.1", 8, &[10, 0, 0, 1]),
            ("Framed-Pool = bloqueados", 88, b"bloqueados"),
            ("Class = 0x0102ff", 25, &[1, 2, 0xff]),
            ("Event-Timestamp = 1", 55, &[0, 0, 0, 1]),
            (
                "Framed-IPv6-Prefix = 2001:db8::/32",
                97,
                &[0, 32, 0x20, 0x01, 0x0d, 0xb8],
            ),
            (
                "NAS-IPv6-Address = ::1",
                95,
                &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            ),
        ];
        for (text, typ, value) in cases {
            let wire = d.encode(&attr(text)).unwrap();
            assert_eq!(
                wire,
                WireAttribute {
                    typ,
                    value: value.to_vec()
                },
                "{text}"
            );
        }
    }

    #[test]
    fn bad_values_and_unknown_names_are_refused() {
        let d = Dictionary::builtin();
        for text in [
            "Session-Timeout = soon",
            "Session-Timeout = 4294967296",
            "Framed-IP-Address = 10.0.0.256",
            "Framed-IPv6-Prefix = 2001:db8::",
            "Class = 0x123",
            "Event-Timestamp = yesterday",
        ] {
            assert!(
                matches!(d.encode(&attr(text)), Err(EncodeError::BadValue { .. })),
                "{text}"
            );
        }
        assert!(matches!(
            d.encode(&attr("Speed-Limit = 1")),
            Err(EncodeError::UnknownAttribute(_))
        ));
        let long = format!("Reply-Message = {}", "x".repeat(254));
        assert!(matches!(
            d.encode(&attr(&long)),
            Err(EncodeError::TooLong { .. })
        ));
    }

    #[test]
    fn vendor_attributes_encode_and_decode_through_the_dictionary() {
        let d = dictionary_with(MIKROTIK);
        let wire = d.encode(&attr("Mikrotik-Rate-Limit = 10M/10M")).unwrap();
        assert_eq!(wire.typ, VENDOR_SPECIFIC);
        let mut expected = vec![0, 0, 0x3a, 0x8c, 8, 9];
        expected.extend_from_slice(b"10M/10M");
        assert_eq!(wire.value, expected);
        assert_eq!(
            d.describe(wire.typ, &wire.value),
            vec!["Mikrotik-Rate-Limit = 10M/10M".to_owned()]
        );
        // Two vendor attributes packed in one Vendor-Specific.
        let mut packed = vec![0, 0, 0x3a, 0x8c, 8, 4, b'1', b'M', 19, 3, b'x'];
        assert_eq!(
            d.split_vendor_specific(&packed).unwrap(),
            vec![(14988, 8, &b"1M"[..]), (14988, 19, &b"x"[..])]
        );
        packed[5] = 40;
        assert_eq!(d.split_vendor_specific(&packed), None);
    }

    #[test]
    fn vendor_formats_other_than_one_one() {
        let d =
            dictionary_with("VENDOR Wide 4242 format=2,1\nATTRIBUTE Wide-Thing 300 integer Wide\n");
        let wire = d.encode(&attr("Wide-Thing = 7")).unwrap();
        assert_eq!(
            wire.value,
            vec![0, 0, 0x10, 0x92, 0x01, 0x2c, 7, 0, 0, 0, 7]
        );
        assert_eq!(
            d.describe(26, &wire.value),
            vec!["Wide-Thing = 7".to_owned()]
        );
    }

    #[test]
    fn tagged_integers_carry_the_tag_byte() {
        let d = dictionary_with(
            "VENDOR ERX 4874\nBEGIN-VENDOR ERX\nATTRIBUTE ERX-Service-Timeout 68 integer has_tag\nEND-VENDOR ERX\n",
        );
        let wire = d.encode(&attr("ERX-Service-Timeout = 300")).unwrap();
        assert_eq!(&wire.value[6..], &[0, 0, 1, 0x2c]);
    }

    #[test]
    fn parser_errors_name_the_file_and_line() {
        let mut d = Dictionary::default();
        for (text, line, needle) in [
            ("ATTRIBUTE A 1 string\nBOGUS x\n", 2, "unknown keyword"),
            ("ATTRIBUTE A one string\n", 1, "not a number"),
            ("ATTRIBUTE A 1\n", 1, "needs a name"),
            ("\n\nBEGIN-VENDOR Nobody\n", 3, "unknown vendor"),
            ("VENDOR V 1 format=3,9\n", 1, "format"),
            ("VALUE A x y\n", 1, "not a number"),
            ("ATTRIBUTE A 1 string bogus-flag\n", 1, "unknown flag"),
            ("$INCLUDE does-not-exist\n", 1, "cannot read"),
        ] {
            let e = d.parse_text(text, Path::new("dict.test"), 0).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(
                e.to_string().starts_with(&format!("dict.test:{line}:")),
                "{e}"
            );
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn includes_are_relative_to_the_including_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("dictionary"),
            "$INCLUDE dictionary.v\n$INCLUDE- dictionary.absent\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("dictionary.v"), MIKROTIK).unwrap();
        let mut d = Dictionary::builtin();
        d.load_file(&dir.path().join("dictionary")).unwrap();
        assert!(d.attribute("Mikrotik-Address-List").is_some());
        // An include loop stops at the depth limit with an error.
        std::fs::write(dir.path().join("loop"), "$INCLUDE loop\n").unwrap();
        assert!(d.load_file(&dir.path().join("loop")).is_err());
    }

    #[test]
    fn unsupported_types_are_known_but_refused_when_used() {
        let d = dictionary_with("ATTRIBUTE Odd 200 abinary\nATTRIBUTE Internal 1050 integer\n");
        let e = d.encode(&attr("Odd = x")).unwrap_err();
        assert!(e.to_string().contains("abinary"), "{e}");
        let e = d.encode(&attr("Internal = 1")).unwrap_err();
        assert!(e.to_string().contains("internal"), "{e}");
    }

    #[test]
    fn the_shipped_vendor_dictionaries_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dictionaries");
        let mut d = Dictionary::builtin();
        for name in ["mikrotik", "cisco", "huawei", "juniper", "accel-ppp"] {
            d.load_file(&dir.join(format!("dictionary.{name}")))
                .unwrap();
        }
        for (name, vendor) in [
            ("Mikrotik-Address-List", 14988),
            ("Cisco-AVPair", 9),
            ("Huawei-Input-Average-Rate", 2011),
            ("ERX-Ingress-Policy-Name", 4874),
            ("Accel-VRF-Name", 55999),
        ] {
            assert_eq!(d.attribute(name).map(|a| a.vendor), Some(vendor), "{name}");
        }
    }

    #[test]
    fn the_systems_freeradius_dictionaries_load_when_installed() {
        let system = Path::new("/usr/share/freeradius/dictionary");
        if !system.exists() {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "{} is missing: install freeradius-common",
                system.display()
            );
            eprintln!("skipped: {} is not installed", system.display());
            return;
        }
        let mut d = Dictionary::builtin();
        d.load_file(system).unwrap();
        assert_eq!(
            d.attribute("Mikrotik-Rate-Limit").map(|a| a.number),
            Some(8)
        );
        assert!(d.encode(&attr("Cisco-AVPair = ip:addr-pool=x")).is_ok());
    }
}
