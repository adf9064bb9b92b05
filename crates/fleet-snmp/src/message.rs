//! SNMP messages: v1/v2c community messages and v3 USM messages, encoded and decoded.

use super::ber::{BerError, Reader, Writer, tag};
use super::usm::{self, LocalizedKeys};
use super::value::{Value, VarBind};

/// PDU types (context-specific constructed tags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PduType {
    /// GetRequest
    Get = 0xa0,
    /// GetNextRequest
    GetNext = 0xa1,
    /// Response
    Response = 0xa2,
    /// SetRequest
    Set = 0xa3,
    /// SNMPv1 Trap (not decoded further)
    TrapV1 = 0xa4,
    /// GetBulkRequest
    GetBulk = 0xa5,
    /// InformRequest
    Inform = 0xa6,
    /// SNMPv2-Trap
    TrapV2 = 0xa7,
    /// Report
    Report = 0xa8,
}

impl PduType {
    fn from_tag(t: u8) -> Option<Self> {
        Some(match t {
            0xa0 => PduType::Get,
            0xa1 => PduType::GetNext,
            0xa2 => PduType::Response,
            0xa3 => PduType::Set,
            0xa4 => PduType::TrapV1,
            0xa5 => PduType::GetBulk,
            0xa6 => PduType::Inform,
            0xa7 => PduType::TrapV2,
            0xa8 => PduType::Report,
            _ => return None,
        })
    }
}

/// SNMP error-status values (RFC 3416).
pub mod error_status {
    /// noError
    pub const NO_ERROR: i32 = 0;
    /// tooBig
    pub const TOO_BIG: i32 = 1;
    /// noSuchName (v1)
    pub const NO_SUCH_NAME: i32 = 2;
    /// badValue (v1)
    pub const BAD_VALUE: i32 = 3;
    /// readOnly (v1)
    pub const READ_ONLY: i32 = 4;
    /// genErr
    pub const GEN_ERR: i32 = 5;
    /// noAccess
    pub const NO_ACCESS: i32 = 6;
    /// wrongType
    pub const WRONG_TYPE: i32 = 7;
    /// notWritable
    pub const NOT_WRITABLE: i32 = 17;

    /// Returns the RFC 3416 name of an error-status value.
    pub fn name(v: i32) -> &'static str {
        match v {
            0 => "noError",
            1 => "tooBig",
            2 => "noSuchName",
            3 => "badValue",
            4 => "readOnly",
            5 => "genErr",
            6 => "noAccess",
            7 => "wrongType",
            8 => "wrongLength",
            9 => "wrongEncoding",
            10 => "wrongValue",
            11 => "noCreation",
            12 => "inconsistentValue",
            13 => "resourceUnavailable",
            14 => "commitFailed",
            15 => "undoFailed",
            16 => "authorizationError",
            17 => "notWritable",
            18 => "inconsistentName",
            _ => "unknownError",
        }
    }
}

/// A protocol data unit. For GetBulk, `error_status` carries non-repeaters and
/// `error_index` max-repetitions, as on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pdu {
    /// PDU type.
    pub kind: PduType,
    /// request-id.
    pub request_id: i32,
    /// error-status (or non-repeaters).
    pub error_status: i32,
    /// error-index (or max-repetitions).
    pub error_index: i32,
    /// Variable bindings.
    pub varbinds: Vec<VarBind>,
}

impl Pdu {
    /// Encodes the PDU.
    pub fn encode(&self, w: &mut Writer) {
        let p = w.begin(self.kind as u8);
        w.integer(i64::from(self.request_id));
        w.integer(i64::from(self.error_status));
        w.integer(i64::from(self.error_index));
        let l = w.begin(tag::SEQUENCE);
        for vb in &self.varbinds {
            let s = w.begin(tag::SEQUENCE);
            w.oid(&vb.oid);
            vb.value.encode(w);
            w.end(s);
        }
        w.end(l);
        w.end(p);
    }

    /// Decodes a PDU.
    ///
    /// # Errors
    /// Fails on malformed BER or an unknown PDU type.
    pub fn decode(r: &mut Reader<'_>) -> Result<Pdu, BerError> {
        let start = *r;
        let t = r.read()?;
        let kind = PduType::from_tag(t.tag).ok_or(BerError {
            offset: t.offset,
            reason: "unknown PDU type",
        })?;
        if kind == PduType::TrapV1 {
            return Err(BerError {
                offset: t.offset,
                reason: "SNMPv1 traps are not handled",
            });
        }
        let mut p = Reader::inside(&start, &t);
        let to_i32 = |v: i64, offset| {
            i32::try_from(v).map_err(|_| BerError {
                offset,
                reason: "PDU header integer out of range",
            })
        };
        let request_id = to_i32(p.integer("request-id")?, t.offset)?;
        let error_status = to_i32(p.integer("error-status")?, t.offset)?;
        let error_index = to_i32(p.integer("error-index")?, t.offset)?;
        let mut list = p.enter(tag::SEQUENCE, "varbind list")?;
        let mut varbinds = Vec::new();
        while !list.is_empty() {
            let mut vb = list.enter(tag::SEQUENCE, "varbind")?;
            let oid = vb.oid("varbind name")?;
            let value = Value::decode(&mut vb)?;
            varbinds.push(VarBind { oid, value });
        }
        Ok(Pdu {
            kind,
            request_id,
            error_status,
            error_index,
            varbinds,
        })
    }
}

/// Protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Version {
    /// SNMPv1
    #[serde(rename = "v1")]
    V1,
    /// SNMPv2c
    #[serde(rename = "v2c")]
    V2c,
    /// SNMPv3
    #[serde(rename = "v3")]
    V3,
}

impl Version {
    fn wire(self) -> i64 {
        match self {
            Version::V1 => 0,
            Version::V2c => 1,
            Version::V3 => 3,
        }
    }
}

/// Encodes a v1/v2c community message.
pub fn encode_community(version: Version, community: &[u8], pdu: &Pdu) -> Vec<u8> {
    let mut w = Writer::with_capacity(64 + pdu.varbinds.len() * 32);
    let s = w.begin(tag::SEQUENCE);
    w.integer(version.wire());
    w.octets(community);
    pdu.encode(&mut w);
    w.end(s);
    w.buf
}

/// A decoded v1/v2c message.
#[derive(Debug)]
pub struct CommunityMessage {
    /// Version (v1 or v2c).
    pub version: Version,
    /// Community string.
    pub community: Vec<u8>,
    /// The PDU.
    pub pdu: Pdu,
}

/// Reads the message version without decoding the rest.
///
/// # Errors
/// Fails on malformed BER or an unknown version number.
pub fn peek_version(bytes: &[u8]) -> Result<Version, BerError> {
    let mut r = Reader::new(bytes);
    let mut m = r.enter(tag::SEQUENCE, "message")?;
    match m.integer("version")? {
        0 => Ok(Version::V1),
        1 => Ok(Version::V2c),
        3 => Ok(Version::V3),
        _ => Err(BerError {
            offset: 0,
            reason: "unsupported SNMP version",
        }),
    }
}

/// Decodes a v1/v2c message.
///
/// # Errors
/// Fails on malformed BER, a v3 message or an unknown version.
pub fn decode_community(bytes: &[u8]) -> Result<CommunityMessage, BerError> {
    let mut r = Reader::new(bytes);
    let mut m = r.enter(tag::SEQUENCE, "message")?;
    let version = match m.integer("version")? {
        0 => Version::V1,
        1 => Version::V2c,
        _ => {
            return Err(BerError {
                offset: 0,
                reason: "not a community-based message",
            });
        }
    };
    let community = m.octets("community")?.to_vec();
    let pdu = Pdu::decode(&mut m)?;
    Ok(CommunityMessage {
        version,
        community,
        pdu,
    })
}

/// msgFlags bits.
pub mod flags {
    /// authFlag
    pub const AUTH: u8 = 0x01;
    /// privFlag
    pub const PRIV: u8 = 0x02;
    /// reportableFlag
    pub const REPORTABLE: u8 = 0x04;
}

/// USM security parameters as sent (the authoritative engine's identity and clock).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsmParams {
    /// msgAuthoritativeEngineID
    pub engine_id: Vec<u8>,
    /// msgAuthoritativeEngineBoots
    pub boots: u32,
    /// msgAuthoritativeEngineTime
    pub time: u32,
    /// msgUserName
    pub user: Vec<u8>,
}

/// A scoped PDU (context + PDU).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopedPdu {
    /// contextEngineID
    pub context_engine_id: Vec<u8>,
    /// contextName
    pub context_name: Vec<u8>,
    /// The PDU.
    pub pdu: Pdu,
}

impl ScopedPdu {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + self.pdu.varbinds.len() * 32);
        let s = w.begin(tag::SEQUENCE);
        w.octets(&self.context_engine_id);
        w.octets(&self.context_name);
        self.pdu.encode(&mut w);
        w.end(s);
        w.buf
    }

    /// Decodes a scoped PDU; trailing bytes (cipher padding) are ignored.
    ///
    /// # Errors
    /// Fails on malformed BER.
    pub fn decode(bytes: &[u8]) -> Result<ScopedPdu, BerError> {
        let mut r = Reader::new(bytes);
        let mut s = r.enter(tag::SEQUENCE, "scopedPDU")?;
        let context_engine_id = s.octets("contextEngineID")?.to_vec();
        let context_name = s.octets("contextName")?.to_vec();
        if context_engine_id.len() > MAX_ID_OCTETS || context_name.len() > MAX_ID_OCTETS {
            return Err(BerError {
                offset: 0,
                reason: "contextEngineID or contextName longer than 32 octets",
            });
        }
        let pdu = Pdu::decode(&mut s)?;
        Ok(ScopedPdu {
            context_engine_id,
            context_name,
            pdu,
        })
    }
}

/// Everything needed to encode one v3 message.
pub struct V3Out<'a> {
    /// msgID
    pub msg_id: i32,
    /// msgMaxSize advertised by the sender.
    pub max_size: i32,
    /// Whether to set the reportable flag (requests yes, responses and reports no).
    pub reportable: bool,
    /// Security parameters (engine, clock, user).
    pub usm: &'a UsmParams,
    /// Keys for authentication/privacy; `None` sends noAuthNoPriv.
    pub keys: Option<&'a LocalizedKeys>,
    /// Whether to authenticate (needs keys with auth).
    pub auth: bool,
    /// Whether to encrypt (needs keys with privacy).
    pub privacy: bool,
    /// Salt for the privacy IV.
    pub salt: u64,
    /// The scoped PDU.
    pub scoped: &'a ScopedPdu,
}

/// Encodes a v3 message, encrypting and signing it as `out` asks.
pub fn encode_v3(out: &V3Out<'_>) -> Vec<u8> {
    let auth = out.keys.and_then(|k| k.auth.as_ref()).filter(|_| out.auth);
    let privacy = out
        .keys
        .and_then(|k| k.privacy.as_ref())
        .filter(|_| out.privacy && auth.is_some());
    let mut msg_flags = 0u8;
    if out.reportable {
        msg_flags |= flags::REPORTABLE;
    }
    if auth.is_some() {
        msg_flags |= flags::AUTH;
    }
    let scoped = out.scoped.encode();
    let (msg_data, priv_params) = match privacy {
        Some((proto, key)) => {
            msg_flags |= flags::PRIV;
            let (c, p) = usm::encrypt(*proto, key, out.usm.boots, out.usm.time, out.salt, &scoped);
            (c, p)
        }
        None => (scoped, Vec::new()),
    };
    let mac_len = auth.map_or(0, |(p, _)| p.mac_len());

    let mut w = Writer::with_capacity(msg_data.len() + 128);
    let s = w.begin(tag::SEQUENCE);
    w.integer(3);
    let g = w.begin(tag::SEQUENCE);
    w.integer(i64::from(out.msg_id));
    w.integer(i64::from(out.max_size));
    w.octets(&[msg_flags]);
    w.integer(3);
    w.end(g);
    // msgSecurityParameters is an OCTET STRING wrapping the USM SEQUENCE.
    let sp = w.begin(tag::OCTET_STRING);
    let us = w.begin(tag::SEQUENCE);
    w.octets(&out.usm.engine_id);
    w.integer(i64::from(out.usm.boots));
    w.integer(i64::from(out.usm.time));
    w.octets(&out.usm.user);
    w.octets(&vec![0u8; mac_len]);
    w.octets(&priv_params);
    w.end(us);
    w.end(sp);
    if privacy.is_some() {
        w.octets(&msg_data);
    } else {
        w.buf.extend_from_slice(&msg_data);
    }
    w.end(s);
    let mut bytes = w.buf;
    if let Some((proto, key)) = auth
        && let Ok(parsed) = parse_v3(&bytes)
    {
        let (off, len) = parsed.auth_params;
        let mac = proto.mac(key, &bytes);
        bytes[off..off + len].copy_from_slice(&mac[..len]);
    }
    bytes
}

/// The encrypted or plain payload of a v3 message.
#[derive(Debug)]
pub enum MsgData<'a> {
    /// A plaintext scoped PDU (its full TLV bytes).
    Plain(&'a [u8]),
    /// An encrypted scoped PDU.
    Encrypted(&'a [u8]),
}

/// A parsed v3 message before authentication and decryption.
#[derive(Debug)]
pub struct ParsedV3<'a> {
    /// msgID
    pub msg_id: i32,
    /// msgMaxSize
    pub max_size: i32,
    /// msgFlags
    pub flags: u8,
    /// Security parameters.
    pub usm: UsmParams,
    /// (offset, length) of msgAuthenticationParameters in the message.
    pub auth_params: (usize, usize),
    /// msgPrivacyParameters.
    pub priv_params: &'a [u8],
    /// Payload.
    pub data: MsgData<'a>,
}

/// RFC 3411: an SnmpEngineID is 5 to 32 octets (empty in a discovery request); the
/// context fields are held to the same length.
const MAX_ID_OCTETS: usize = 32;

/// Parses the outer layers of a v3 message.
///
/// # Errors
/// Fails on malformed BER, another version or another security model.
pub fn parse_v3(bytes: &[u8]) -> Result<ParsedV3<'_>, BerError> {
    let mut r = Reader::new(bytes);
    let mut m = r.enter(tag::SEQUENCE, "message")?;
    if m.integer("msgVersion")? != 3 {
        return Err(BerError {
            offset: 0,
            reason: "not an SNMPv3 message",
        });
    }
    let mut g = m.enter(tag::SEQUENCE, "msgGlobalData")?;
    let msg_id = i32::try_from(g.integer("msgID")?).map_err(|_| BerError {
        offset: 0,
        reason: "msgID out of range",
    })?;
    let max_size = i32::try_from(g.integer("msgMaxSize")?).unwrap_or(i32::MAX);
    let flags = g.octets("msgFlags")?.first().copied().unwrap_or(0);
    let model = g.integer("msgSecurityModel")?;
    if model != 3 {
        return Err(BerError {
            offset: 0,
            reason: "security model is not USM",
        });
    }
    let sp = m.expect(tag::OCTET_STRING, "msgSecurityParameters")?;
    let mut spr = Reader::inside(&m, &sp);
    let mut u = spr.enter(tag::SEQUENCE, "UsmSecurityParameters")?;
    let engine_id = u.octets("msgAuthoritativeEngineID")?.to_vec();
    // A longer engine ID would be echoed into every later request.
    if engine_id.len() > MAX_ID_OCTETS {
        return Err(BerError {
            offset: 0,
            reason: "msgAuthoritativeEngineID longer than 32 octets",
        });
    }
    let boots = u.integer("msgAuthoritativeEngineBoots")?;
    let time = u.integer("msgAuthoritativeEngineTime")?;
    let user = u.octets("msgUserName")?.to_vec();
    let ap = u.expect(tag::OCTET_STRING, "msgAuthenticationParameters")?;
    let priv_params = u.octets("msgPrivacyParameters")?;
    let data = if flags & flags::PRIV != 0 {
        MsgData::Encrypted(m.octets("encryptedPDU")?)
    } else {
        let start = m.position();
        let t = m.expect(tag::SEQUENCE, "scopedPDU")?;
        MsgData::Plain(&bytes[start..t.offset + t.content.len()])
    };
    Ok(ParsedV3 {
        msg_id,
        max_size,
        flags,
        usm: UsmParams {
            engine_id,
            boots: u32::try_from(boots.clamp(0, i64::from(i32::MAX))).unwrap_or(0),
            time: u32::try_from(time.clamp(0, i64::from(i32::MAX))).unwrap_or(0),
            user,
        },
        auth_params: (ap.offset, ap.content.len()),
        priv_params,
        data,
    })
}

/// Checks the MAC of a received message with `key`.
pub fn verify_auth(
    bytes: &[u8],
    parsed: &ParsedV3<'_>,
    proto: usm::AuthProtocol,
    key: &[u8],
) -> bool {
    let (off, len) = parsed.auth_params;
    if len != proto.mac_len() {
        return false;
    }
    let mut copy = bytes.to_vec();
    copy[off..off + len].fill(0);
    let mac = proto.mac(key, &copy);
    // Constant-time comparison is not critical here (no oracle over the network), but cheap.
    mac.iter()
        .zip(&bytes[off..off + len])
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// Returns the request-id (v1/v2c) or msgID (v3) of a message, to route a reply
/// without decrypting it.
pub fn peek_correlation_id(bytes: &[u8]) -> Option<i32> {
    let mut r = Reader::new(bytes);
    let mut m = r.enter(tag::SEQUENCE, "message").ok()?;
    match m.integer("version").ok()? {
        0 | 1 => {
            m.octets("community").ok()?;
            let mut p = m.read().ok().map(|t| Reader::inside(&m, &t))?;
            i32::try_from(p.integer("request-id").ok()?).ok()
        }
        3 => {
            let mut g = m.enter(tag::SEQUENCE, "msgGlobalData").ok()?;
            i32::try_from(g.integer("msgID").ok()?).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usm::{AuthProtocol, KeyExtension, MasterKeys, PrivProtocol};

    fn pdu() -> Pdu {
        Pdu {
            kind: PduType::GetBulk,
            request_id: 4242,
            error_status: 0,
            error_index: 10,
            varbinds: vec![VarBind::null("1.3.6.1.2.1.43.11.1.1.9".parse().unwrap())],
        }
    }

    #[test]
    fn community_round_trip() {
        let bytes = encode_community(Version::V2c, b"public", &pdu());
        let m = decode_community(&bytes).unwrap();
        assert_eq!(m.version, Version::V2c);
        assert_eq!(m.community, b"public");
        assert_eq!(m.pdu, pdu());
        assert_eq!(peek_correlation_id(&bytes), Some(4242));
    }

    #[test]
    fn v3_auth_priv_round_trip_and_tamper_detection() {
        let keys = MasterKeys::derive(
            Some((AuthProtocol::Sha256, b"authpass123")),
            Some((PrivProtocol::Aes128, b"privpass123")),
            KeyExtension::Blumenthal,
        )
        .localize(b"\x80\x00\x00\x01engine");
        let usm = UsmParams {
            engine_id: b"\x80\x00\x00\x01engine".to_vec(),
            boots: 7,
            time: 99,
            user: b"printerV3".to_vec(),
        };
        let scoped = ScopedPdu {
            context_engine_id: usm.engine_id.clone(),
            context_name: b"ctx".to_vec(),
            pdu: pdu(),
        };
        let bytes = encode_v3(&V3Out {
            msg_id: 77,
            max_size: 65507,
            reportable: true,
            usm: &usm,
            keys: Some(&keys),
            auth: true,
            privacy: true,
            salt: 5,
            scoped: &scoped,
        });
        assert_eq!(peek_correlation_id(&bytes), Some(77));
        let parsed = parse_v3(&bytes).unwrap();
        assert_eq!(parsed.usm, usm);
        let (ap, ak) = keys.auth.clone().unwrap();
        assert!(verify_auth(&bytes, &parsed, ap, &ak));
        let MsgData::Encrypted(c) = parsed.data else {
            panic!("expected encrypted data")
        };
        let (pp, pk) = keys.privacy.clone().unwrap();
        let plain = usm::decrypt(pp, &pk, 7, 99, parsed.priv_params, c).unwrap();
        assert_eq!(ScopedPdu::decode(&plain).unwrap(), scoped);

        let mut tampered = bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let parsed = parse_v3(&tampered).unwrap();
        assert!(!verify_auth(&tampered, &parsed, ap, &ak));
    }

    /// A v3 message without authentication or privacy, carrying [`pdu`].
    fn plain_v3(usm: &UsmParams) -> (ScopedPdu, Vec<u8>) {
        let scoped = ScopedPdu {
            context_engine_id: vec![],
            context_name: vec![],
            pdu: pdu(),
        };
        let bytes = encode_v3(&V3Out {
            msg_id: 1,
            max_size: 1500,
            reportable: true,
            usm,
            keys: None,
            auth: false,
            privacy: false,
            salt: 0,
            scoped: &scoped,
        });
        (scoped, bytes)
    }

    #[test]
    fn v3_plain_scoped_pdu_is_located() {
        let (scoped, bytes) = plain_v3(&UsmParams::default());
        let parsed = parse_v3(&bytes).unwrap();
        let MsgData::Plain(p) = parsed.data else {
            panic!("expected plain data")
        };
        assert_eq!(ScopedPdu::decode(p).unwrap(), scoped);
    }

    #[test]
    fn an_engine_id_longer_than_32_octets_is_malformed() {
        // Issue 18: a 60 KB engine ID made the agent send an oversize request.
        for (len, ok) in [(32, true), (33, false), (60_000, false)] {
            let (_, bytes) = plain_v3(&UsmParams {
                engine_id: vec![0x80; len],
                ..UsmParams::default()
            });
            assert_eq!(parse_v3(&bytes).is_ok(), ok, "{len}");
        }
    }
}
