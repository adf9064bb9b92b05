//! Discovery targets: single addresses, CIDR subnets, `a-b` ranges and host names, as
//! include and exclude lists (exclusion wins), parsed from the command line, the
//! configuration or CSV/TXT import files, and expanded with a size cap.

use ipnetwork::IpNetwork;
use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

/// One target entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Spec {
    /// One address.
    Ip(IpAddr),
    /// A subnet (network and broadcast addresses are skipped for IPv4 prefixes < 31).
    Cidr(IpNetwork),
    /// An inclusive range `first-last` of the same family.
    Range(IpAddr, IpAddr),
    /// A host name, resolved at each run.
    Fqdn(String),
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Spec::Ip(a) => write!(f, "{a}"),
            Spec::Cidr(n) => write!(f, "{n}"),
            Spec::Range(a, b) => write!(f, "{a}-{b}"),
            Spec::Fqdn(h) => write!(f, "{h}"),
        }
    }
}

fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && s.bytes().any(|b| b.is_ascii_alphabetic())
}

impl FromStr for Spec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.is_empty() {
            return Err("empty entry".into());
        }
        // The longest valid entry is a host name (253) or an IPv6 range (~90).
        if t.len() > 260 {
            return Err(format!(
                "a {}-character entry is not an address, subnet, range or host name",
                t.len()
            ));
        }
        if let Ok(ip) = t.parse::<IpAddr>() {
            return Ok(Spec::Ip(ip));
        }
        if t.contains('/') {
            let n: IpNetwork = t
                .parse()
                .map_err(|e| format!("{t:?} is not a valid subnet: {e}"))?;
            return Ok(Spec::Cidr(n));
        }
        if let Some((a, b)) = t.split_once('-') {
            if let (Ok(a), Ok(b)) = (a.trim().parse::<IpAddr>(), b.trim().parse::<IpAddr>()) {
                if a.is_ipv4() != b.is_ipv4() {
                    return Err(format!("{t:?}: range ends are of different families"));
                }
                if ip_to_u128(a) > ip_to_u128(b) {
                    return Err(format!("{t:?}: range starts after it ends"));
                }
                return Ok(Spec::Range(a, b));
            }
            // "10.0.0.1-20": the short form with the last octet only.
            if let (Ok(std::net::IpAddr::V4(a)), Ok(last)) =
                (a.trim().parse::<IpAddr>(), b.trim().parse::<u8>())
            {
                let o = a.octets();
                let b = std::net::Ipv4Addr::new(o[0], o[1], o[2], last);
                if last < o[3] {
                    return Err(format!("{t:?}: range starts after it ends"));
                }
                return Ok(Spec::Range(IpAddr::V4(a), IpAddr::V4(b)));
            }
        }
        if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(format!("{t:?} is not a valid IPv4 address"));
        }
        let host = t.strip_suffix('.').unwrap_or(t);
        if valid_hostname(host) {
            return Ok(Spec::Fqdn(host.to_ascii_lowercase()));
        }
        Err(format!(
            "{t:?} is not an address, subnet, range or host name"
        ))
    }
}

fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn u128_to_ip(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(std::net::Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(std::net::Ipv6Addr::from(v))
    }
}

impl Spec {
    /// Number of addresses this entry stands for (host names count 1), saturating at
    /// `u128::MAX` (`::/0` and `::-ffff:…` hold 2^128, one more than a `u128` can say).
    pub fn size(&self) -> u128 {
        match self {
            Spec::Ip(_) | Spec::Fqdn(_) => 1,
            Spec::Range(a, b) => ip_to_u128(*b)
                .saturating_sub(ip_to_u128(*a))
                .saturating_add(1),
            Spec::Cidr(n) => {
                let bits = u32::from(n.prefix());
                let total = if n.is_ipv4() { 32 - bits } else { 128 - bits };
                let all = 1u128.checked_shl(total).unwrap_or(u128::MAX);
                if n.is_ipv4() && total >= 2 {
                    all - 2
                } else {
                    all
                }
            }
        }
    }

    /// Tells whether `ip` is covered by this entry (host names never match addresses).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match self {
            Spec::Ip(a) => *a == ip,
            Spec::Cidr(n) => n.contains(ip),
            Spec::Range(a, b) => {
                a.is_ipv4() == ip.is_ipv4()
                    && (ip_to_u128(*a)..=ip_to_u128(*b)).contains(&ip_to_u128(ip))
            }
            Spec::Fqdn(_) => false,
        }
    }

    /// Appends the addresses of this entry (not host names) to `out`, at most `room`
    /// of them (the caller's cap, so a wrong size can never make it allocate without end).
    fn expand(&self, out: &mut Vec<IpAddr>, room: usize) {
        let (first, v4) = match self {
            Spec::Ip(a) => {
                if room > 0 {
                    out.push(*a);
                }
                return;
            }
            Spec::Fqdn(_) => return,
            Spec::Range(a, _) => (ip_to_u128(*a), a.is_ipv4()),
            Spec::Cidr(n) => {
                let skip_ends = n.is_ipv4() && n.prefix() < 31;
                let network = ip_to_u128(n.network());
                (network + u128::from(skip_ends), n.is_ipv4())
            }
        };
        let take = self.size().min(room as u128);
        // `first + i` stays within the entry, which ends at or below u128::MAX.
        out.extend((0..take).map(|i| u128_to_ip(first + i, v4)));
    }
}

/// A line of an import file that could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// Why.
    pub reason: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// Parses an import file's text (CSV or TXT, the same rules): a UTF-8 BOM and CRLF are
/// accepted, `#` starts a comment, cells are separated by `,` `;` or tabs, a first line
/// that is a header (no cell parses, e.g. `IP Address`) is skipped. Every bad cell is
/// reported as `file:line: reason`; good entries are kept.
pub fn parse_import(file: &str, text: &str) -> (Vec<Spec>, Vec<ImportError>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut specs = Vec::new();
    let mut errors = Vec::new();
    let mut seen_data = false;
    let mut unlisted = 0usize;
    let mut last_line = 0;
    for (i, raw) in text.lines().enumerate() {
        last_line = i + 1;
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line
            .split([',', ';', '\t'])
            .map(|c| c.trim().trim_matches('"').trim())
            .filter(|c| !c.is_empty())
            .collect();
        let parsed: Vec<Result<Spec, String>> = cells.iter().map(|c| c.parse::<Spec>()).collect();
        let address_like = parsed
            .iter()
            .any(|r| matches!(r, Ok(Spec::Ip(_) | Spec::Cidr(_) | Spec::Range(..))));
        if !seen_data && !address_like && parsed.iter().any(Result::is_err) {
            // A header such as "IP Address" or "address": skip it.
            seen_data = true;
            continue;
        }
        seen_data = true;
        for r in parsed {
            match r {
                Ok(s) => specs.push(s),
                // A file of garbage must not become millions of error records.
                Err(_) if errors.len() >= IMPORT_MAX_ERRORS => unlisted += 1,
                Err(reason) => errors.push(ImportError {
                    file: file.to_string(),
                    line: i + 1,
                    reason,
                }),
            }
        }
    }
    if unlisted > 0 {
        errors.push(ImportError {
            file: file.to_string(),
            line: last_line,
            reason: format!(
                "and {unlisted} more bad entries (only the first {IMPORT_MAX_ERRORS} are listed)"
            ),
        });
    }
    (specs, errors)
}

/// Bad entries of an import file listed one by one; the rest are counted.
pub const IMPORT_MAX_ERRORS: usize = 100;

/// Reads an import file.
///
/// # Errors
/// When the file cannot be read (its bad lines are returned, not errors).
pub fn read_import(path: &Path) -> std::io::Result<(Vec<Spec>, Vec<ImportError>)> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(IMPORT_MAX_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > IMPORT_MAX_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "larger than {} MiB; split it or use subnets and ranges",
                IMPORT_MAX_BYTES >> 20
            ),
        ));
    }
    let text = String::from_utf8_lossy(&bytes);
    Ok(parse_import(&path.display().to_string(), &text))
}

/// The largest import file read (a million addresses one per line is about 15 MiB).
pub const IMPORT_MAX_BYTES: u64 = 16 << 20;

/// Include and exclude lists.
#[derive(Clone, Debug, Default)]
pub struct TargetSet {
    /// What to sweep.
    pub include: Vec<Spec>,
    /// What never to touch (wins over include and over the local-network sweep).
    pub exclude: Vec<Spec>,
}

/// How an import merges into an existing list (the seed's "replace existing" option).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportMode {
    /// Append to the list.
    Add,
    /// Replace the list.
    Replace,
}

/// Why a target set cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// More addresses than the cap (protects against an accidental /8).
    #[error(
        "the targets cover {count} addresses, more than the cap of {cap}; narrow them (largest entry: {largest}) or raise the cap"
    )]
    TooMany {
        /// Addresses covered.
        count: u128,
        /// The cap.
        cap: u128,
        /// The biggest entry.
        largest: String,
    },
}

impl TargetSet {
    /// Merges `specs` into the include list.
    pub fn import_include(&mut self, specs: Vec<Spec>, mode: ImportMode) {
        if mode == ImportMode::Replace {
            self.include.clear();
        }
        self.include.extend(specs);
    }

    /// Merges `specs` into the exclude list.
    pub fn import_exclude(&mut self, specs: Vec<Spec>, mode: ImportMode) {
        if mode == ImportMode::Replace {
            self.exclude.clear();
        }
        self.exclude.extend(specs);
    }

    /// Tells whether `ip` is excluded.
    pub fn excluded(&self, ip: IpAddr) -> bool {
        self.exclude.iter().any(|s| s.contains(ip))
    }

    /// Expands the include list into distinct addresses in order, plus the host names to
    /// resolve; excluded addresses are returned separately (they appear in the report).
    ///
    /// # Errors
    /// When the include list covers more than `cap` addresses.
    pub fn expand(&self, cap: u128) -> Result<Expanded, ExpandError> {
        // Saturating: `::/0` alone is 2^128 addresses, and a wrapped sum would pass the cap.
        let count = self
            .include
            .iter()
            .fold(0u128, |n, s| n.saturating_add(s.size()));
        if count > cap {
            let largest = self
                .include
                .iter()
                .max_by_key(|s| s.size())
                .map(ToString::to_string)
                .unwrap_or_default();
            return Err(ExpandError::TooMany {
                count,
                cap,
                largest,
            });
        }
        let room = usize::try_from(count).unwrap_or(usize::MAX);
        let mut all = Vec::with_capacity(room.min(1 << 20));
        for s in &self.include {
            let left = room - all.len();
            s.expand(&mut all, left);
        }
        let mut seen = BTreeSet::new();
        let mut addresses = Vec::with_capacity(all.len());
        let mut excluded = Vec::new();
        for ip in all {
            if !seen.insert(ip) {
                continue;
            }
            if self.excluded(ip) {
                excluded.push(ip);
            } else {
                addresses.push(ip);
            }
        }
        let names = self
            .include
            .iter()
            .filter_map(|s| match s {
                Spec::Fqdn(h) => Some(h.clone()),
                _ => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Ok(Expanded {
            addresses,
            excluded,
            names,
        })
    }
}

/// An expanded target set.
#[derive(Clone, Debug, Default)]
pub struct Expanded {
    /// Addresses to probe.
    pub addresses: Vec<IpAddr>,
    /// Addresses covered by the include list but excluded.
    pub excluded: Vec<IpAddr>,
    /// Host names to resolve at run time.
    pub names: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `import` fuzz target: every bad cell became an error record, so a
    /// file of garbage became millions of them.
    #[test]
    fn an_import_of_garbage_lists_a_bounded_number_of_errors() {
        let text = format!("192.0.2.1\n{}", "not an address;also bad\n".repeat(1000));
        let (specs, errors) = parse_import("big.csv", &text);
        assert_eq!(specs.len(), 1);
        assert_eq!(errors.len(), IMPORT_MAX_ERRORS + 1);
        let last = errors.last().unwrap();
        assert!(last.reason.contains("and 1900 more"), "{}", last.reason);
    }

    #[test]
    fn parses_every_kind_of_entry() {
        let ok: &[(&str, Spec)] = &[
            ("10.0.0.5", Spec::Ip("10.0.0.5".parse().unwrap())),
            (" 2001:db8::1 ", Spec::Ip("2001:db8::1".parse().unwrap())),
            ("192.0.2.0/24", Spec::Cidr("192.0.2.0/24".parse().unwrap())),
            (
                "10.0.0.1-10.0.0.20",
                Spec::Range("10.0.0.1".parse().unwrap(), "10.0.0.20".parse().unwrap()),
            ),
            (
                "10.0.0.1-20",
                Spec::Range("10.0.0.1".parse().unwrap(), "10.0.0.20".parse().unwrap()),
            ),
            (
                "Printer-1.Example.COM.",
                Spec::Fqdn("printer-1.example.com".into()),
            ),
        ];
        for (s, want) in ok {
            assert_eq!(&s.parse::<Spec>().unwrap(), want, "{s}");
        }
    }

    #[test]
    fn rejects_every_malformed_kind_with_a_reason() {
        for bad in [
            "",
            "10.0.0.256",
            "10.0.0",
            "10.0.0.0/33",
            "10.0.0.20-10.0.0.1",
            "10.0.0.20-1",
            "10.0.0.1-2001:db8::1",
            "-printer",
            "printer_name",
            "a..b",
            "1.2.3.4/x",
        ] {
            let e = bad.parse::<Spec>().unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
    }

    #[test]
    fn sizes_and_expansion_skip_network_and_broadcast() {
        let s: Spec = "192.0.2.0/30".parse().unwrap();
        assert_eq!(s.size(), 2);
        let mut v = Vec::new();
        s.expand(&mut v, 10);
        assert_eq!(
            v,
            [
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "192.0.2.2".parse().unwrap()
            ]
        );
        let s: Spec = "192.0.2.7/32".parse().unwrap();
        assert_eq!(s.size(), 1);
        let s: Spec = "192.0.2.0/31".parse().unwrap();
        assert_eq!(s.size(), 2);
        assert_eq!("10.0.0.0/16".parse::<Spec>().unwrap().size(), 65_534);
    }

    #[test]
    fn exclusion_wins_and_duplicates_collapse() {
        let t = TargetSet {
            include: vec![
                "192.0.2.0/29".parse().unwrap(),
                "192.0.2.3".parse().unwrap(),
                "printer.example".parse().unwrap(),
            ],
            exclude: vec!["192.0.2.2-192.0.2.3".parse().unwrap()],
        };
        let e = t.expand(1000).unwrap();
        let got: Vec<String> = e.addresses.iter().map(ToString::to_string).collect();
        assert_eq!(got, ["192.0.2.1", "192.0.2.4", "192.0.2.5", "192.0.2.6"]);
        assert_eq!(e.excluded.len(), 2);
        assert_eq!(e.names, ["printer.example"]);
    }

    #[test]
    fn a_huge_target_list_is_refused_clearly() {
        let t = TargetSet {
            include: vec!["10.0.0.0/8".parse().unwrap()],
            exclude: vec![],
        };
        let e = t.expand(65_536).unwrap_err();
        assert!(e.to_string().contains("16777214 addresses"), "{e}");
        assert!(e.to_string().contains("10.0.0.0/8"));
    }

    #[test]
    fn the_whole_ipv6_space_does_not_wrap_past_the_cap() {
        // Issue 18: `::/0` (2^128) plus one address summed to 0 in a release build.
        for include in [
            vec!["::/0", "192.0.2.1"],
            vec!["::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "192.0.2.1"],
            vec!["::/1", "8000::/1", "::1"],
        ] {
            let t = TargetSet {
                include: include.iter().map(|s| s.parse().unwrap()).collect(),
                exclude: vec![],
            };
            let e = t.expand(65_536).unwrap_err();
            let ExpandError::TooMany { count, .. } = &e;
            assert_eq!(*count, u128::MAX, "{include:?}: {e}");
        }
        let range: Spec = "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
            .parse()
            .unwrap();
        assert_eq!(range.size(), u128::MAX);
        assert_eq!("::/0".parse::<Spec>().unwrap().size(), u128::MAX);
    }

    #[test]
    fn expansion_never_goes_past_its_room() {
        let mut v = Vec::new();
        "::/0".parse::<Spec>().unwrap().expand(&mut v, 3);
        assert_eq!(v.len(), 3);
        assert_eq!(v[2], "::2".parse::<IpAddr>().unwrap());
        let mut v = Vec::new();
        "192.0.2.9".parse::<Spec>().unwrap().expand(&mut v, 0);
        assert!(v.is_empty());
    }

    #[test]
    fn import_files_accept_bom_crlf_comments_cells_and_headers() {
        let text = "\u{feff}IP Address,Comment\r\n192.0.2.1 # first\r\n\r\n# a comment line\r\n192.0.2.0/30;printer.example\r\n\"10.1.1.1-5\"\tbad..name\r\n300.1.1.1\r\n";
        let (specs, errors) = parse_import("list.csv", text);
        let got: Vec<String> = specs.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "192.0.2.1",
                "192.0.2.0/30",
                "printer.example",
                "10.1.1.1-10.1.1.5"
            ]
        );
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("list.csv:6: "), "{lines:?}");
        assert!(lines[1].starts_with("list.csv:7: "), "{lines:?}");
    }

    #[test]
    fn replace_and_add_imports() {
        let mut t = TargetSet {
            include: vec!["192.0.2.1".parse().unwrap()],
            exclude: vec![],
        };
        t.import_include(vec!["192.0.2.2".parse().unwrap()], ImportMode::Add);
        assert_eq!(t.include.len(), 2);
        t.import_include(vec!["192.0.2.3".parse().unwrap()], ImportMode::Replace);
        assert_eq!(t.include, vec!["192.0.2.3".parse::<Spec>().unwrap()]);
        t.import_exclude(vec!["192.0.2.3".parse().unwrap()], ImportMode::Add);
        assert!(t.expand(10).unwrap().addresses.is_empty());
    }
}
