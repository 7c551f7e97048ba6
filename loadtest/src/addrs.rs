//! Many connections from one box: outgoing sockets spread over loopback source addresses.
//!
//! Every connection to the hub needs its own (source address, source port) pair, and ports
//! come from the ephemeral range (32768–60999 here: 28 232 of them, fewer with sockets still in
//! TIME_WAIT from earlier runs), so one source address carries at most that many connections
//! to one hub. Spreading over 127.0.0.2, 127.0.0.3, … (all of 127.0.0.0/8 is this machine on
//! Linux) multiplies that. Connection `i` uses address `i % N`. The sockets are bound to
//! `(addr, 0)` with `IP_BIND_ADDRESS_NO_PORT` (`ws.rs`), so that the kernel picks the port at
//! `connect`, as it does for an unbound socket.
//!
//! A side effect worth knowing: the hub counts its per-address connection cap
//! (`HUB_MAX_CONNS_PER_IP`) and its per-address request throttle (`HUB_LIMIT_READ_PER_IP`,
//! charged by every upgrade) per source address, so spreading also spreads those.

use std::net::{IpAddr, Ipv4Addr};

/// Connections one source address carries at most when the count is chosen automatically:
/// well under the 28 232 ports of the ephemeral range, leaving room for TIME_WAIT leftovers.
pub const CONNS_PER_ADDR: usize = 20_000;
/// Most source addresses accepted: 127.0.0.2 up to 127.0.255.255.
pub const MAX_SOURCE_ADDRS: usize = 65_534;
/// The first source address used (127.0.0.1 stays the kernel's default choice).
const FIRST: u32 = u32::from_be_bytes([127, 0, 0, 2]);

/// What `--source-addrs` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceAddrs {
    /// Enough addresses for [`CONNS_PER_ADDR`] each, when the hub is on 127.0.0.0/8.
    Auto,
    /// Exactly this many; 0 binds nothing (the kernel chooses, as without the option).
    Count(usize),
}

impl SourceAddrs {
    /// Parses `auto` or a count (clap's value parser).
    ///
    /// # Errors
    /// When the text is neither, or the count is above [`MAX_SOURCE_ADDRS`].
    pub fn parse(text: &str) -> Result<SourceAddrs, String> {
        if text.eq_ignore_ascii_case("auto") {
            return Ok(SourceAddrs::Auto);
        }
        let n: usize = text
            .parse()
            .map_err(|_| format!("`{text}` is neither `auto` nor a number of addresses"))?;
        if n > MAX_SOURCE_ADDRS {
            return Err(format!("at most {MAX_SOURCE_ADDRS} source addresses"));
        }
        Ok(SourceAddrs::Count(n))
    }

    /// How many addresses to bind for `connections` sockets to a hub at `target` (0 = none).
    /// `Auto` binds nothing when the hub is not on 127.0.0.0/8 (a remote hub sees one
    /// address whatever we do) or when one address is enough.
    pub fn resolve(self, connections: usize, target: IpAddr) -> usize {
        match self {
            SourceAddrs::Count(n) => n,
            SourceAddrs::Auto if !is_loopback_v4(target) => 0,
            SourceAddrs::Auto => match connections.div_ceil(CONNS_PER_ADDR) {
                0 | 1 => 0,
                n => n.min(MAX_SOURCE_ADDRS),
            },
        }
    }
}

/// True for 127.0.0.0/8 (IPv4-mapped forms included).
pub fn is_loopback_v4(ip: IpAddr) -> bool {
    matches!(ip.to_canonical(), IpAddr::V4(v4) if v4.is_loopback())
}

/// The source address of connection `conn` among `count` addresses; `None` when `count` is 0.
pub fn source_for(conn: usize, count: usize) -> Option<Ipv4Addr> {
    if count == 0 {
        return None;
    }
    // `count` is at most MAX_SOURCE_ADDRS, so the offset fits in a u32 and stays in 127/8.
    let offset = u32::try_from(conn % count).ok()?;
    Some(Ipv4Addr::from(FIRST + offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lo() -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    #[test]
    fn connections_go_round_robin_from_127_0_0_2() {
        assert_eq!(source_for(0, 3), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_for(1, 3), Some(Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(source_for(2, 3), Some(Ipv4Addr::new(127, 0, 0, 4)));
        assert_eq!(source_for(3, 3), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_for(5, 0), None);
        // Past the last octet the next byte carries, still inside 127/8.
        assert_eq!(source_for(254, 1000), Some(Ipv4Addr::new(127, 0, 1, 0)));
        assert_eq!(
            source_for(MAX_SOURCE_ADDRS - 1, MAX_SOURCE_ADDRS),
            Some(Ipv4Addr::new(127, 0, 255, 255))
        );
    }

    #[test]
    fn auto_uses_one_address_per_twenty_thousand_connections() {
        assert_eq!(SourceAddrs::Auto.resolve(2_000, lo()), 0);
        assert_eq!(SourceAddrs::Auto.resolve(20_000, lo()), 0);
        assert_eq!(SourceAddrs::Auto.resolve(20_001, lo()), 2);
        assert_eq!(SourceAddrs::Auto.resolve(100_000, lo()), 5);
        let other_loopback = IpAddr::V4(Ipv4Addr::new(127, 3, 0, 1));
        assert_eq!(SourceAddrs::Auto.resolve(50_000, other_loopback), 3);
    }

    #[test]
    fn auto_binds_nothing_for_a_hub_off_127_slash_8() {
        let remote = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(SourceAddrs::Auto.resolve(100_000, remote), 0);
        assert_eq!(
            SourceAddrs::Auto.resolve(100_000, IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
            0
        );
        assert_eq!(SourceAddrs::Count(4).resolve(10, lo()), 4);
    }

    #[test]
    fn the_option_reads_auto_or_a_count() {
        assert_eq!(SourceAddrs::parse("auto"), Ok(SourceAddrs::Auto));
        assert_eq!(SourceAddrs::parse("AUTO"), Ok(SourceAddrs::Auto));
        assert_eq!(SourceAddrs::parse("0"), Ok(SourceAddrs::Count(0)));
        assert_eq!(SourceAddrs::parse("7"), Ok(SourceAddrs::Count(7)));
        assert!(SourceAddrs::parse("-1").is_err());
        assert!(SourceAddrs::parse("many").is_err());
        assert!(SourceAddrs::parse("70000").is_err());
    }
}
